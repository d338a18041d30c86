"""Crash torture: kill -9 a committing process at random moments, recover, and check.

    python -m fuzz.torture --rounds 10000 --dir /tmp/torture     # the long run
    python -m fuzz.torture --rounds 50                           # what CI runs (tests/test_torture.py)

A child process opens a DurableStore (durable mode), and commits transactions as fast as
it can, snapshots included; whenever the durable offset advances it prints ``ACK <offset>``.
The parent SIGKILLs it after a random delay, reopens the database (recovery), and checks:

1. no acknowledged commit is lost: the recovered log reaches at least the last ACK;
2. nothing is half-applied: the recovered table equals a pure-Python oracle that applied
   exactly the recovered number of whole transactions;
3. the engine's invariants hold (indexes agree with rows, heap accounting).

Every transaction's operations are a deterministic function of (seed, offset, current
state), so the oracle regenerates them without talking to the child.
"""

from __future__ import annotations

import argparse
import bisect
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import stdb
from stdb.storage.durable import DurableStore, StoreConfig

SCHEMA = stdb.TableSchema(
    "acct",
    [stdb.Column("id", "u64"), stdb.Column("balance", "i64"), stdb.Column("note", "string")],
    primary_key="id",
    indexes=[stdb.IndexDef("by_balance", "balance")],
)


def tx_ops(seed: int, offset: int, ids: list[int]) -> list[tuple]:
    """The operations of the transaction that gets ``offset``, given the ids present (sorted;
    not modified)."""
    rng = random.Random(seed * 1_000_003 + offset)
    ops: list[tuple] = [("insert", offset * 8, rng.randrange(-1000, 1000), "n" * rng.randrange(0, 40))]
    gone: set[int] = set()
    # past 2,000 rows, more and likelier deletes keep the table (and each round's recovery) small
    big = len(ids) > 2000
    p_delete = 0.7 if big else 0.5
    for j in range(rng.randrange(2, 6) if big else rng.randrange(0, 4)):
        if not ids:
            break
        victim = ids[rng.randrange(len(ids))]
        if victim in gone:
            continue
        if rng.random() >= p_delete:
            ops.append(("update", victim, rng.randrange(-1000, 1000), "u" * rng.randrange(0, 60)))
        else:
            ops.append(("delete", victim))
            gone.add(victim)
        if rng.random() < 0.3:
            ops.append(("insert", offset * 8 + j + 1, rng.randrange(-1000, 1000), "x"))
    return ops


def apply_model(model: dict[int, tuple], ids: list[int], ops: list[tuple]) -> None:
    """Apply ``ops`` to the oracle: rows by id, and the sorted list of ids."""
    for op in ops:
        if op[0] == "delete":
            del model[op[1]]
            ids.pop(bisect.bisect_left(ids, op[1]))
        else:
            if op[0] == "insert":
                bisect.insort(ids, op[1])
            model[op[1]] = (op[1], op[2], op[3])


# ---------------------------------------------------------------- child

def child(path: str, seed: int) -> None:
    cfg = StoreConfig(durability="durable", snapshot_every_txs=150, keep_snapshots=2)
    store = DurableStore.open(path, config=cfg)
    if "acct" not in store.datastore.table_names:
        store.create_table(SCHEMA)
    table = store.datastore.table("acct")
    model = {r[0]: r for _, r in table.scan()}
    ids = sorted(model)
    acked = -1
    out = sys.stdout
    while True:
        offset = store.log.next_offset
        ops = tx_ops(seed, offset, ids)
        tx = store.begin()
        for op in ops:
            if op[0] == "insert":
                tx.insert("acct", op[1:])
            elif op[0] == "update":
                tx.update("acct", op[1:])
            else:
                tx.delete("acct", op[1])
        c = store.commit(tx)
        assert c.offset == offset
        apply_model(model, ids, ops)
        d = store.durable_offset
        if d > acked:
            acked = d
            out.write(f"ACK {d}\n")
            out.flush()


# ---------------------------------------------------------------- parent

@dataclass
class Stats:
    rounds: int = 0
    max_offset: int = -1
    acked: int = -1
    torn: int = 0
    snapshots_used: int = 0
    model: dict | None = None      # the oracle's state at max_offset, carried across rounds
    ids: list | None = None        # its ids, sorted


def check(path: str, seed: int, acked: int, stats: Stats) -> None:
    store = DurableStore.open(path, config=StoreConfig(snapshot_every_txs=None, snapshot_every_bytes=None))
    try:
        last = store.log.next_offset - 1
        if last < acked:
            raise AssertionError(f"acknowledged durable offset {acked} lost: recovered only to {last}")
        if store.recovery.torn:
            stats.torn += 1
        if store.recovery.snapshot_offset is not None:
            stats.snapshots_used += 1
        if last < stats.max_offset:
            raise AssertionError(f"recovered to offset {last}, but an earlier recovery reached "
                                 f"{stats.max_offset}: recovered commits went missing")
        model: dict[int, tuple] = dict(stats.model or {})
        ids: list[int] = list(stats.ids or [])
        for off in range(max(1, stats.max_offset + 1), last + 1):   # offset 0 creates the table
            apply_model(model, ids, tx_ops(seed, off, ids))
        if last >= 0:
            t = store.datastore.table("acct")
            got = {r[0]: r for _, r in t.scan()}
            if got != model:
                missing = set(model) - set(got)
                extra = set(got) - set(model)
                raise AssertionError(f"state after recovery to offset {last} differs from the oracle: "
                                     f"{len(missing)} rows missing, {len(extra)} extra, "
                                     f"{sum(1 for k in set(got) & set(model) if got[k] != model[k])} differ")
            t.check_invariants()
        stats.max_offset = last
        stats.model = model
        stats.ids = ids
    finally:
        store.close()


def run(rounds: int, path: str, seed: int, min_delay: float, max_delay: float,
        progress: bool = True) -> Stats:
    rng = random.Random(seed)
    stats = Stats()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for r in range(rounds):
        proc = subprocess.Popen([sys.executable, "-m", "fuzz.torture", "--child", "--dir", path,
                                 "--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        # wait for the child to get going (first ACK) so that kills land mid-work, then a random delay
        acked = stats.acked
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"torture child died before committing anything:\n{err}")
        time.sleep(rng.uniform(min_delay, max_delay))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        for ln in (line + out).decode().splitlines():
            if ln.startswith("ACK "):
                acked = max(acked, int(ln[4:]))
        stats.acked = acked
        check(path, seed, acked, stats)
        stats.rounds += 1
        if progress and (r + 1) % 10 == 0:
            print(f"round {r + 1}/{rounds}: recovered to offset {stats.max_offset}, "
                  f"last ack {stats.acked}, torn tails {stats.torn}, from snapshot {stats.snapshots_used}",
                  flush=True)
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fuzz.torture", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=50)
    p.add_argument("--dir", default=None, help="database directory (default: a new temporary one)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--min-delay", type=float, default=0.0)
    p.add_argument("--max-delay", type=float, default=0.3)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        child(a.dir, a.seed)
        return 0
    tmp = None
    path = a.dir
    if path is None:
        tmp = tempfile.mkdtemp(prefix="stdb-torture-")
        path = os.path.join(tmp, "db")
    t0 = time.time()
    try:
        s = run(a.rounds, path, a.seed, a.min_delay, a.max_delay)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"torture passed: {s.rounds} kills, recovered up to offset {s.max_offset}, last ack {s.acked}, "
          f"torn tails {s.torn}, recoveries from a snapshot {s.snapshots_used}, {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
