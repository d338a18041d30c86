"""Server crash torture: SIGKILL a server under reducer load from several clients, restart, check.

    python -m fuzz.server_torture --rounds 10000 --dir /tmp/storture   # the long run
    python -m fuzz.server_torture --rounds 8                           # what CI runs

``stdb start`` runs on a data directory (first publishing examples/transfer/transfer.c and
opening accounts).  Each round runs C clients in **confirmed mode**, each calling
``transfer(from, to, amount)`` in a closed loop with an amount no other call uses, and SIGKILLs
the server after a random delay.  After the restart it checks, against a model that knows
every call the clients made:

1. no acknowledged commit is lost: every transfer a client saw ``committed`` (confirmed mode:
   only once durable) is in the state;
2. nothing foreign or half-applied: the balances equal the model's balances after exactly the
   acknowledged transfers plus some subset of the calls that were in flight at the kill (at
   most one per client), each applied whole — and the money is conserved.

The in-flight calls found applied join the model, and the next round loads the restarted
server.  Every ``--graceful-every`` rounds (10) the server is also stopped with SIGTERM and
started again, and nothing may change.
"""

from __future__ import annotations

import argparse
import itertools
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from stdb.client import connect
from stdb.errors import StdbError
from stdb.progress import progress_bar

ROOT = pathlib.Path(__file__).resolve().parents[1]
ACCOUNTS = 16
START_BALANCE = 10**15


@dataclass
class Stats:
    rounds: int = 0
    acked: int = 0
    in_flight_applied: int = 0
    in_flight_lost: int = 0
    kills_while_loaded: int = 0
    graceful_restarts: int = 0
    balances: dict[int, int] = field(default_factory=dict)


def start_server(data: str, log_path: str, snapshot_every: int = 0) -> tuple[subprocess.Popen, int]:
    """``stdb start`` on a port the system picks; returns the process and the port it wrote
    to its ``--port-file`` once listening.  (Choosing a free port here and passing it on would
    race with anything else picking ports: two torture runs side by side did, and one checked
    the other's server.)"""
    port_file = os.path.join(os.path.dirname(log_path), "port")
    if os.path.exists(port_file):
        os.remove(port_file)
    log = open(log_path, "ab")
    snaps = ["--snapshot-every", str(snapshot_every), "--compact-log"] if snapshot_every else []
    proc = subprocess.Popen([sys.executable, "-m", "stdb", "start", "--data", data, "--listen", "127.0.0.1:0",
                             "--port-file", port_file, "--log-level", "warning", *snaps],
                            stdout=log, stderr=log,
                            env=dict(os.environ, STDB_CONFIG_DIR=os.path.join(data, "..", "cfg")))
    log.close()
    end = time.monotonic() + 120
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}; see {log_path}")
        try:
            with open(port_file) as f:
                return proc, int(f.read())
        except FileNotFoundError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("the server did not listen within 120 s")


async def _setup(url: str, wasm: bytes) -> None:
    async with connect(url, "bank") as c:
        await c.publish(wasm)
        for i in range(1, ACCOUNTS + 1):
            (await c.call("create_account", i, START_BALANCE)).raise_for_status()


async def _balances(url: str) -> dict[int, int]:
    async with connect(url, "bank") as c:
        return {int(r[0]): int(r[1]) for r in (await c.query("SELECT id, balance FROM account")).rows}


async def _load(url: str, clients: int, rng: random.Random, amounts: itertools.count,
                acked: list, in_flight: dict, kill_after: float, kill: Callable[[], None]) -> None:
    """Clients call transfer until the server dies; ``kill`` is called after ``kill_after`` s."""
    async def client(k: int) -> None:
        try:
            async with connect(url, "bank", confirmed=True, connect_timeout=10) as c:
                while True:
                    a, b = rng.sample(range(1, ACCOUNTS + 1), 2)
                    call = (a, b, next(amounts))
                    in_flight[k] = call
                    out = await c.call("transfer", *call)
                    del in_flight[k]
                    if out.status != "committed":
                        raise AssertionError(f"transfer {call} answered {out.status}: {out.message}")
                    acked.append(call)
        except StdbError:
            return                    # the server is gone (ConnectionLost): the round is over

    async with trio.open_nursery() as n:
        for k in range(clients):
            n.start_soon(client, k)
        await trio.sleep(kill_after)
        kill()


def _apply(bal: dict[int, int], calls: list[tuple[int, int, int]]) -> dict[int, int]:
    out = dict(bal)
    for a, b, amt in calls:
        out[a] -= amt
        out[b] += amt
    return out


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM (a graceful shutdown), SIGKILL if it has not ended within 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(rounds: int, work_dir: str, *, clients: int = 4, seed: int = 1, min_delay: float = 0.05,
        max_delay: float = 0.6, graceful_every: int = 10, progress: bool = True,
        snapshot_every: int = 200) -> Stats:
    """``rounds`` kills.  The server restarted after a kill (recovery) is the one checked and
    then loaded and killed in the next round; every ``graceful_every`` rounds it is also
    stopped with SIGTERM and started again, and the balances must be unchanged.  The server
    takes a snapshot every ``snapshot_every`` commit-log records and compacts its log (0: the
    server's defaults), so kills land while snapshots are written in the background too."""
    from stdb.module.build import build_module

    rng = random.Random(seed)
    os.makedirs(work_dir, exist_ok=True)
    data = os.path.join(work_dir, "data")
    log_path = os.path.join(work_dir, "server.log")
    wasm = pathlib.Path(build_module(str(ROOT / "examples/transfer/transfer.c"),
                                     os.path.join(work_dir, "transfer.wasm"))).read_bytes()
    stats = Stats()
    model = {i: START_BALANCE for i in range(1, ACCOUNTS + 1)}
    amounts = itertools.count(1 + rng.randrange(1000))
    proc, port = start_server(data, log_path, snapshot_every)
    try:
        trio.run(_setup, f"ws://127.0.0.1:{port}", wasm)
        with progress_bar(rounds, "server torture", enabled=progress) as update:
            for r in range(rounds):
                if r and graceful_every and r % graceful_every == 0:
                    _stop(proc)                        # a graceful restart keeps everything
                    proc, port = start_server(data, log_path, snapshot_every)
                    got = trio.run(_balances, f"ws://127.0.0.1:{port}")
                    if got != model:
                        raise AssertionError(f"round {r}: after a graceful restart the balances differ "
                                             f"from the model: {got} vs {model}")
                    stats.graceful_restarts += 1
                acked: list = []
                in_flight: dict = {}
                delay = rng.uniform(min_delay, max_delay)

                def kill(proc: subprocess.Popen = proc) -> None:
                    proc.send_signal(signal.SIGKILL)
                url = f"ws://127.0.0.1:{port}"
                trio.run(_load, url, clients, rng, amounts, acked, in_flight, delay, kill)
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                stats.kills_while_loaded += bool(acked or in_flight)
                # restart (recovery) and find which in-flight calls made it; each is whole or absent
                proc, port = start_server(data, log_path, snapshot_every)
                got = trio.run(_balances, f"ws://127.0.0.1:{port}")
                base = _apply(model, acked)
                pending = list(in_flight.values())
                match = None
                for n in range(len(pending) + 1):
                    for subset in itertools.combinations(pending, n):
                        if _apply(base, list(subset)) == got:
                            match = subset
                            break
                    if match is not None:
                        break
                if match is None:
                    raise AssertionError(
                        f"round {r}: the recovered balances are not the {len(acked)} acknowledged transfers "
                        f"plus any subset of the {len(pending)} in flight (an acknowledged commit lost, or "
                        f"a transfer half-applied): got {got}, expected from acknowledged {base}")
                if sum(got.values()) != START_BALANCE * ACCOUNTS:
                    raise AssertionError(f"round {r}: money not conserved: {sum(got.values())}")
                model = got
                stats.rounds += 1
                stats.acked += len(acked)
                stats.in_flight_applied += len(match)
                stats.in_flight_lost += len(pending) - len(match)
                update(stats.rounds)
    finally:
        _stop(proc)
    stats.balances = model
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fuzz.server_torture", description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", default=None, help="work directory (default: a temporary one, removed after)")
    ap.add_argument("--max-delay", type=float, default=0.6)
    ap.add_argument("--snapshot-every", type=int, default=200,
                    help="the server's --snapshot-every, with --compact-log (0: the server's defaults)")
    ap.add_argument("--graceful-every", type=int, default=10,
                    help="every N rounds also stop the server with SIGTERM and check that nothing "
                         "changed (0: never)")
    a = ap.parse_args(argv)
    work = a.dir or tempfile.mkdtemp(prefix="stdb-storture-")
    t0 = time.monotonic()
    try:
        s = run(a.rounds, work, clients=a.clients, seed=a.seed, max_delay=a.max_delay,
                graceful_every=a.graceful_every, snapshot_every=a.snapshot_every)
    except AssertionError as e:
        print(f"FAILED: {e}\n(work directory kept: {work})", file=sys.stderr)
        return 1
    print(f"{s.rounds} rounds in {time.monotonic() - t0:.0f} s: {s.acked:,} acknowledged transfers all "
          f"present; in flight at the kill: {s.in_flight_applied} applied whole, {s.in_flight_lost} absent; "
          f"{s.kills_while_loaded} kills under load; {s.graceful_restarts} graceful restarts unchanged")
    if a.dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
