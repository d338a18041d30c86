"""Durability benchmarks (issue 4), side by side in one run.

* durable commits/s through DurableStore (group commit, fsync per group) vs raw LMDB puts of
  the same record bytes in synced transactions of the same group sizes;
* latency of one durable commit (commit + wait_durable, one at a time);
* recovery: row operations replayed per second vs a raw LMDB cursor scan of the same log, and
  a floor for any replay: a C loop (bench/replay_floor.c) that checks every CRC, walks every
  row's framing and keeps the rows by primary key, in a hash table and in a plain array;
* the longest commit while automatic snapshots of a million-row table are written in the
  background vs the snapshot written in the committing thread.

    python -m bench.durability [--commits N] [--out bench/results]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import statistics
import subprocess
import tempfile
import time

import lmdb

import stdb
from bench.machine import machine, save_results
from stdb.storage import logformat as lf
from stdb.storage.commitlog import BATCH_BYTES, CommitLog, group_values, iter_records
from stdb.storage.durable import DurableStore, StoreConfig
from stdb.storage.lmdbenv import Env
from stdb.storage.recovery import recover

SCHEMA = stdb.TableSchema("account", [("id", "u64"), ("balance", "i64"), ("name", "string")],
                          primary_key="id")
TARGET_VS_FLOOR = 0.5     # issue 21: replay ≥ half the rate of the C floor that keeps a hash index
NOSNAP = StoreConfig(snapshot_every_txs=None, snapshot_every_bytes=None, map_size=1 << 30)


def _transfers(store: DurableStore, n: int, accounts: int, wait: bool = False) -> list[float]:
    lat = []
    for i in range(n):
        a, b = (i * 7919) % accounts, (i * 104729 + 1) % accounts
        if a == b:
            b = (b + 1) % accounts
        t0 = time.perf_counter()
        tx = store.begin()
        ra, rb = tx.get("account", a), tx.get("account", b)
        tx.update("account", (a, ra[1] - 1, ra[2]))
        tx.update("account", (b, rb[1] + 1, rb[2]))
        c = store.commit(tx, reducer="transfer", args=b"\x00" * 24)
        if wait:
            store.wait_durable(c.offset)
            lat.append(time.perf_counter() - t0)
    return lat


def _accounts(path: str, accounts: int, config: StoreConfig = NOSNAP) -> DurableStore:
    """A new durable store holding ``accounts`` accounts, all durable."""
    store = DurableStore.open(path, config=config)
    store.create_table(SCHEMA)
    tx = store.begin()
    for i in range(accounts):
        tx.insert("account", (i, 1000, f"acct{i:08d}"))
    store.commit(tx)
    store.flush()
    return store


def bench_commits(tmp: str, n: int, accounts: int) -> dict:
    """Full path (transaction + encode + log) and log-only path vs raw LMDB, same bytes."""
    path = os.path.join(tmp, "commits")
    store = _accounts(path, accounts)
    g0 = store.log.groups
    t0 = time.perf_counter()
    _transfers(store, n, accounts)
    store.flush()
    full_dt = time.perf_counter() - t0
    full_groups = store.log.groups - g0
    store.close()
    env = Env(path, readonly=True)
    records = [(bytes(lf.offset_key(o)), bytes(v)) for o, v in iter_records(env, 2)]
    env.close()

    # the log machinery alone: the same record bytes appended through CommitLog (group commit,
    # writer thread, each group fsync'd by LMDB at commit), as fast as the caller can hand them
    # over; best of 3
    log_dt = raw_dt = float("inf")
    log_groups = 1
    for rep in range(3):
        lenv = Env(os.path.join(tmp, f"logonly{rep}"), durable=True, map_size=1 << 30)  # as DurableStore
        log = CommitLog(lenv, durability="durable")
        # the callers' record builders exist before the clock starts, as the baseline's
        # (key, value) items do
        builders = [lambda off, v=v: v for _, v in records]
        t0 = time.perf_counter()
        for build in builders:
            log.append(build)
        log.flush()
        if time.perf_counter() - t0 < log_dt:
            log_dt = time.perf_counter() - t0
            log_groups = log.groups
        log.close()
        lenv.close()

    # raw LMDB: the same bytes in synced write transactions of the same group size, one put
    # per record under its offset, the fastest way LMDB offers (putmulti with MDB_APPEND);
    # and, for context, each group's records as values of <= BATCH_BYTES (the log's layout 2);
    # best of 3
    per_group = max(1, len(records) // max(1, log_groups))
    raw_grouped_dt = float("inf")
    for rep in range(3):
        renv = lmdb.open(os.path.join(tmp, f"raw{rep}"), map_size=1 << 30, sync=True, metasync=True)
        t1 = time.perf_counter()
        for i in range(0, len(records), per_group):
            with renv.begin(write=True) as txn:
                txn.cursor().putmulti(records[i:i + per_group], append=True)
        raw_dt = min(raw_dt, time.perf_counter() - t1)
        renv.close()
        renv = lmdb.open(os.path.join(tmp, f"rawg{rep}"), map_size=1 << 30, sync=True, metasync=True)
        t1 = time.perf_counter()
        for i in range(0, len(records), per_group):
            with renv.begin(write=True) as txn:
                first = lf.key_offset(records[i][0])
                txn.cursor().putmulti(group_values(first, [v for _, v in records[i:i + per_group]]),
                                      append=True)
        raw_grouped_dt = min(raw_grouped_dt, time.perf_counter() - t1)
        renv.close()
    raw_rate = len(records) / raw_dt
    return {"commits": n, "record_bytes_avg": sum(len(v) for _, v in records) / len(records),
            "full_commits_per_s": n / full_dt, "full_groups": full_groups,
            "log_commits_per_s": len(records) / log_dt, "log_groups": log_groups,
            "records_per_group": per_group, "raw_lmdb_puts_per_s": raw_rate,
            "log_ratio_vs_raw": (len(records) / log_dt) / raw_rate,
            "raw_lmdb_grouped_values_per_s": len(records) / raw_grouped_dt,
            "log_ratio_vs_raw_grouped": raw_grouped_dt / log_dt, "value_bytes_max": BATCH_BYTES,
            "full_ratio_vs_raw": (n / full_dt) / raw_rate}


def bench_latency(tmp: str, n: int, accounts: int) -> dict:
    store = _accounts(os.path.join(tmp, "lat"), accounts)
    lat = _transfers(store, n, accounts, wait=True)
    store.close()
    lat.sort()
    return {"commits": n, "median_us": statistics.median(lat) * 1e6,
            "p99_us": lat[int(len(lat) * 0.99)] * 1e6, "max_us": lat[-1] * 1e6}


def bench_snapshot_pause(tmp: str, rows: int, commits: int = 6000, every: int = 2000) -> dict:
    """The longest commit while automatic snapshots of a ``rows``-row table are taken (the
    tables copied at the commit, the snapshot written by a background thread), against the time
    the same snapshot takes written in the committing thread (``snapshot()``: what every
    automatic snapshot cost that thread before 2026-11-30).  The commit loop sleeps 1 ms every
    50 commits, as a server's thread waits for the network now and then."""
    store = _accounts(os.path.join(tmp, "snappause"), rows,
                      StoreConfig(snapshot_every_txs=every, snapshot_every_bytes=None))
    lat = []
    for i in range(commits):
        t0 = time.perf_counter()
        tx = store.begin()
        r = tx.get("account", i % rows)
        tx.update("account", (r[0], r[1] + 1, r[2]))
        store.commit(tx)
        lat.append(time.perf_counter() - t0)
        if i % 50 == 49:
            time.sleep(0.001)
    store.wait_snapshot()
    taken = len(store.stats()["snapshots"])
    t0 = time.perf_counter()
    store.snapshot()
    in_thread = time.perf_counter() - t0
    store.close()
    t0 = time.perf_counter()          # and recovery from that snapshot (no log tail after it)
    store = DurableStore.open(os.path.join(tmp, "snappause"), config=NOSNAP)
    reopen = time.perf_counter() - t0
    assert store.recovery.replayed == 0 and len(store.datastore.table("account")) == rows
    store.close()
    lat.sort()
    return {"rows": rows, "commits": commits, "snapshot_every_txs": every, "automatic_snapshots": taken,
            "commit_median_us": statistics.median(lat) * 1e6,
            "commit_p99_us": lat[int(len(lat) * 0.99)] * 1e6,
            "commit_max_ms": lat[-1] * 1e3, "snapshot_in_committing_thread_ms": in_thread * 1e3,
            "ratio": in_thread / lat[-1], "open_from_snapshot_s": reopen}


def _floor_library(tmp: str) -> tuple[ctypes.CDLL | None, str]:
    """bench/replay_floor.c built with the system C compiler, or (None, why not)."""
    src = os.path.join(os.path.dirname(__file__), "replay_floor.c")
    lib = os.path.join(tmp, "replay_floor.so")
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if cc is None:
        return None, "no C compiler"
    flags = ["-msse4.2"] if os.uname().machine in ("x86_64", "AMD64") else []
    done = subprocess.run([cc, "-O2", *flags, "-shared", "-fPIC", "-o", lib, src],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return None, f"{cc} failed: {done.stderr.strip()[:200]}"
    dll = ctypes.CDLL(lib)
    dll.floor_reset.restype = ctypes.c_int
    dll.floor_reset.argtypes = [ctypes.c_uint64, ctypes.c_size_t, ctypes.c_int]
    dll.floor_value.restype = ctypes.c_int64
    dll.floor_value.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    dll.floor_count.restype = ctypes.c_uint64
    return dll, ""


def _floor_seconds(dll: ctypes.CDLL, env: Env, mode: int, rows: int, log_bytes: int, ops: int) -> float:
    """Best of 3 passes of the C floor over the log, each from its own LMDB cursor scan (the
    same copy out of the map as the raw scan); checked to apply ``ops`` row operations and
    leave ``rows`` rows."""
    cap = 1
    while cap < (rows * 2 if mode == 0 else rows):
        cap *= 2
    best = float("inf")
    for _ in range(3):
        if dll.floor_reset(cap, log_bytes, mode) != 0:
            raise MemoryError("replay floor: out of memory")
        done = 0
        t0 = time.perf_counter()
        with env.read() as txn:
            for _, v in txn.cursor(db=env.db(b"log")):
                b = bytes(v)
                n = dll.floor_value(b, len(b))
                if n < 0:
                    raise RuntimeError(f"replay floor: error {n} (bench/replay_floor.c)")
                done += n
        best = min(best, time.perf_counter() - t0)
        if done != ops or dll.floor_count() != rows:
            raise RuntimeError(f"replay floor: {done} row ops and {dll.floor_count()} rows, "
                               f"expected {ops} and {rows}")
    return best


def bench_recovery(tmp: str, rows: int) -> dict:
    path = os.path.join(tmp, "recovery")
    store = DurableStore.open(path, config=NOSNAP)
    store.create_table(SCHEMA)
    batch = 1000
    for start in range(0, rows, batch):
        tx = store.begin()
        for i in range(start, min(rows, start + batch)):
            tx.insert("account", (i, i, f"acct{i:08d}"))
        store.commit(tx)
    for start in range(0, rows, batch):      # and as many updates (delete + insert each)
        tx = store.begin()
        for i in range(start, min(rows, start + batch), 2):
            tx.update("account", (i, -i, f"acct{i:08d}"))
        store.commit(tx)
    store.close()
    env = Env(path, readonly=True)
    best = best_raw = float("inf")
    ops = 0
    for _ in range(3):
        t0 = time.perf_counter()
        res = recover(env, repair=False)
        best = min(best, time.perf_counter() - t0)
        ops = res.row_ops
        del res            # freed here, not inside the next run's timing
        t0 = time.perf_counter()
        nbytes = 0
        with env.read() as txn:
            for _, v in txn.cursor(db=env.db(b"log")):
                nbytes += len(bytes(v))      # touch every byte once (a copy out of the map)
        best_raw = min(best_raw, time.perf_counter() - t0)
    out = {"row_ops": ops, "seconds": best, "row_ops_per_s": ops / best, "log_bytes": nbytes,
           "raw_scan_seconds": best_raw, "raw_scan_row_ops_per_s": ops / best_raw,
           "ratio_vs_raw_scan": best_raw / best}
    dll, why = _floor_library(tmp)
    if dll is None:
        out["floor_unavailable"] = why
    else:
        for mode, name in ((0, "floor_hash"), (1, "floor_array")):
            sec = _floor_seconds(dll, env, mode, rows, nbytes, ops)
            out[f"{name}_seconds"] = sec
            out[f"{name}_ratio_vs_raw_scan"] = best_raw / sec
        # issue 21's target: the replay against the floor that keeps a hash index, as a rate
        out["ratio_vs_floor_hash"] = out["floor_hash_seconds"] / best
        out["target_vs_floor_hash"] = TARGET_VS_FLOOR
    env.close()
    return out


def _floor_rows(rec: dict) -> str:
    if "floor_unavailable" in rec:
        return f"| (floor) the C replay floor was not run: {rec['floor_unavailable']} | | | | |\n"
    mb = rec["log_bytes"] / 1e6
    return (f"| (floor) C loop: CRC + framing + rows kept in a hash table by primary key | "
            f"{mb / rec['floor_hash_seconds']:,.0f} MB/s | same raw scan | "
            f"{rec['floor_hash_ratio_vs_raw_scan']:.3f} | |\n"
            f"| recovery vs that floor (log MB/s) | {mb / rec['seconds']:,.0f} | "
            f"{mb / rec['floor_hash_seconds']:,.0f} | {rec['ratio_vs_floor_hash']:.2f} "
            f"| ≥ {TARGET_VS_FLOOR:g} |\n"
            f"| (floor) the same with no index at all (an array by key) | "
            f"{mb / rec['floor_array_seconds']:,.0f} MB/s | same raw scan | "
            f"{rec['floor_array_ratio_vs_raw_scan']:.3f} | |\n")


def bench_recovery_small(tmp: str, transfers: int, accounts: int = 10000) -> dict:
    """Recovery of a log of small transactions: ``transfers`` transfers (two updates, so four
    row operations each), the kind of log a game server writes.  Per-record costs dominate
    here, where bench_recovery's 1000-row transactions hide them."""
    path = os.path.join(tmp, "recovery-small")
    store = _accounts(path, accounts)
    _transfers(store, transfers, accounts)
    store.close()
    env = Env(path, readonly=True)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        res = recover(env, repair=False)
        best = min(best, time.perf_counter() - t0)
        replayed, row_ops = res.replayed, res.row_ops
        del res            # freed here, not inside the next run's timing
    env.close()
    return {"records": replayed, "row_ops": row_ops, "seconds": best,
            "records_per_s": replayed / best, "row_ops_per_s": row_ops / best}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.durability")
    p.add_argument("--commits", type=int, default=50000)
    p.add_argument("--rows", type=int, default=200000)
    p.add_argument("--snapshot-rows", type=int, default=1_000_000)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    a = p.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="stdb-bench-")
    try:
        print(f"durable commits: {a.commits} transfers ...", flush=True)
        commits = bench_commits(tmp, a.commits, 10000)
        print(f"durable commit latency: {min(2000, a.commits)} one at a time ...", flush=True)
        latency = bench_latency(tmp, min(2000, a.commits), 1000)
        print(f"recovery: {a.rows} inserts + {a.rows // 2} updates ...", flush=True)
        rec = bench_recovery(tmp, a.rows)
        print(f"recovery of small transactions: {a.commits} transfers ...", flush=True)
        small = bench_recovery_small(tmp, a.commits)
        print(f"automatic snapshots of {a.snapshot_rows} rows under commits ...", flush=True)
        pause = bench_snapshot_pause(tmp, a.snapshot_rows)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"machine": {**machine(), "lmdb": lmdb.version()},
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "durable_commits": commits, "durable_latency": latency, "recovery": rec,
              "recovery_small": small,
              "snapshot_pause": pause}
    c = commits
    table = (
        "| measure | stdb | baseline | ratio | target |\n|---|---|---|---|---|\n"
        f"| durable commits/s, commit log alone (same record bytes) | {c['log_commits_per_s']:,.0f} "
        f"({c['log_groups']} fsync'd groups) | raw LMDB, synced txns of {c['records_per_group']} puts: "
        f"{c['raw_lmdb_puts_per_s']:,.0f}/s | {c['log_ratio_vs_raw']:.2f} | ≥ 0.5 |\n"
        "| (context) the same, baseline storing each group as the log does "
        f"(values of ≤ {BATCH_BYTES / (1 << 20):g} MiB) | "
        f"{c['log_commits_per_s']:,.0f} | {c['raw_lmdb_grouped_values_per_s']:,.0f}/s | "
        f"{c['log_ratio_vs_raw_grouped']:.2f} | |\n"
        f"| durable commits/s, whole transfer transaction (Python tx + encode + log) | "
        f"{c['full_commits_per_s']:,.0f} | same raw LMDB | {c['full_ratio_vs_raw']:.2f} | |\n"
        f"| one durable commit (commit + wait_durable), median / p99 | "
        f"{latency['median_us']:.0f} / {latency['p99_us']:.0f} µs | | | |\n"
        f"| recovery, row-ops/s replayed (transactions of 1000 inserts / 500 updates) "
        f"| {rec['row_ops_per_s']:,.0f} | | | ≥ 1M |\n"
        f"| recovery, row-ops/s replayed ({small['records']:,} transfers: 4 row ops each) "
        f"| {small['row_ops_per_s']:,.0f} ({small['records_per_s']:,.0f} records/s) | | | ≥ 1M |\n"
        f"| recovery, log MB/s vs raw LMDB cursor scan | {rec['log_bytes'] / rec['seconds'] / 1e6:,.1f} | "
        f"{rec['log_bytes'] / rec['raw_scan_seconds'] / 1e6:,.0f} | {rec['ratio_vs_raw_scan']:.3f} "
        "| ≥ 0.25 |\n"
        + _floor_rows(rec) +
        f"| longest commit while automatic snapshots of {pause['rows']:,} rows are taken "
        f"({pause['automatic_snapshots']} in {pause['commits']:,} commits) | {pause['commit_max_ms']:.1f} ms "
        "| the snapshot written in the committing thread: "
        f"{pause['snapshot_in_committing_thread_ms']:,.0f} ms "
        f"| {pause['ratio']:.0f} | |\n"
        f"| open the database from that snapshot ({pause['rows']:,} rows) "
        f"| {pause['open_from_snapshot_s']:.2f} s | | | |")
    save_results(a.out, "durability", result, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
