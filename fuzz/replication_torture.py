"""Failover torture: kill leaders (and NATS servers) of a replicated cluster under confirmed load.

    python -m fuzz.replication_torture --rounds 300 --dir /tmp/rtorture   # the long run
    python -m fuzz.replication_torture --rounds 3                          # what CI runs (a test)

Three nats-servers (JetStream, one cluster) and three stdb nodes started with ``--follow``
(fuzz/cluster.py) serve a bank: each of ``--clients`` confirmed clients (quorum mode) moves 1
from its own account 2i to 2i + 1 in a loop, following the leader across failovers.  Each
round lets the load run a moment, then does one of:

* SIGKILL the leader (most rounds), wait for another node to lead, start the killed one again
  (it follows, rewinding what the stream never took);
* SIGTERM the leader (a graceful stop hands the lease on at once), start it again;
* SIGKILL one NATS server, let the load run on the other two, start it again.

After every round, on the current leader: every transfer a client saw acknowledged is there
(``acked[i] <= balance(2i + 1) <= acked[i] + unknown[i]``, the unknown ones being calls whose
connection died before the answer) and the money is conserved.  At the end every node holds the
leader's exact state.  Failover times (kill to a new leader reporting itself leading) are
printed: median and max.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import random
import signal
import statistics
import tempfile
import time
from functools import partial

import trio

import stdb
from fuzz.cluster import (
    Bank,
    NatsCluster,
    Nodes,
    database_caught_up,
    leader_name,
    publish_bank,
    rows,
    wait_for,
)
from stdb.client import connect

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(rounds: int, root: str, seed: int, clients: int = 4, lease_ttl: float = 2.0,
        verbose: bool = True) -> dict:
    rng = random.Random(seed)
    wasm = pathlib.Path(stdb.build_module(str(ROOT / "examples/transfer/transfer.c"),
                                          os.path.join(root, "transfer.wasm"))).read_bytes()
    creds = os.path.join(root, "creds")
    stats: dict = {"rounds": 0, "leader_kills": 0, "graceful": 0, "nats_kills": 0, "failover_s": []}
    with NatsCluster(root) as nats, Nodes(root, nats.url, lease_ttl=lease_ttl) as nodes:
        nodes.start("a")
        wait_for(lambda: leader_name(nats.url, nodes), what="a leader")
        nodes.start("b")
        nodes.start("c")
        bank = Bank(nats.url, nodes, creds, clients)

        async def progress(n: int) -> None:
            before = sum(bank.acked)
            with trio.fail_after(120):
                while sum(bank.acked) < before + n:
                    await trio.sleep(0.02)

        async def await_leader(not_: str | None = None) -> str:
            found = partial(leader_name, nats.url, nodes, not_)
            name = await trio.to_thread.run_sync(partial(wait_for, found, 120, "a leader"))
            assert name is not None
            return name

        async def check() -> None:
            lead = await await_leader()
            acked = list(bank.acked)            # before the rows: what was acknowledged must be there
            bank.check(dict(await rows(nodes.nodes[lead].url, "bank", creds)), acked)

        async def main() -> None:
            await publish_bank(nodes.nodes["a"].url, creds, wasm, 2 * clients)
            async with trio.open_nursery() as n:
                for i in range(clients):
                    n.start_soon(bank.client, i)
                await progress(50)
                for r in range(rounds):
                    await trio.sleep(rng.uniform(0.2, 1.5))
                    what = rng.random()
                    if what < 0.15:
                        i = rng.randrange(nats.size)
                        nats.kill(i)
                        stats["nats_kills"] += 1
                        await progress(20)
                        nats.restart(i)
                    else:
                        old = await await_leader()
                        graceful = what < 0.3
                        nodes.kill(old, signal.SIGTERM if graceful else signal.SIGKILL)
                        stats["graceful" if graceful else "leader_kills"] += 1
                        t0 = time.monotonic()
                        await await_leader(not_=old)
                        stats["failover_s"].append(time.monotonic() - t0)
                        await progress(20)
                        nodes.start(old)
                    await progress(20)
                    await check()
                    stats["rounds"] = r + 1
                    if verbose:
                        last = stats["failover_s"][-1] if stats["failover_s"] else 0.0
                        print(f"round {r + 1}/{rounds}: acked {sum(bank.acked)}, unknown "
                              f"{sum(bank.unknown)}, last failover {last:.2f} s", flush=True)
                bank.stop = True
            lead = await await_leader()
            async with connect(nodes.nodes[lead].url, "bank", credentials=creds) as w:
                last = (await w.call("create_account", 10**6, 1)).offset
            final = await rows(nodes.nodes[lead].url, "bank", creds)
            bank.check(dict(final))
            for name in nodes.nodes:
                await trio.to_thread.run_sync(lambda name=name: wait_for(
                    lambda: database_caught_up(nats.url, name, "bank", last), timeout=120,
                    what=f"node {name} to catch up"))
                got = await rows(nodes.nodes[name].url, "bank", creds)
                assert got == final, f"node {name} differs from the leader {lead}"
        trio.run(main)
        stats["acked"] = sum(bank.acked)
        stats["unknown"] = sum(bank.unknown)
    f = stats["failover_s"]
    stats["failover_median_s"] = statistics.median(f) if f else None
    stats["failover_max_s"] = max(f) if f else None
    return stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--dir", default=None,
                    help="where the cluster's files go (default: a temporary directory)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    root = args.dir or tempfile.mkdtemp(prefix="stdb-rtorture-")
    os.makedirs(root, exist_ok=True)
    print(f"replication torture: {args.rounds} rounds, seed {seed}, files in {root}", flush=True)
    stats = run(args.rounds, root, seed, args.clients)
    f = stats.pop("failover_s")
    print(f"OK: {stats}; failovers {len(f)}")


if __name__ == "__main__":
    main()
