"""Storage-engine benchmarks (issue 3): memory per row and operation rates, stdb vs Python
dicts vs SQLite (in memory), same data, same run.

    python -m bench.engine [--rows 1000000] [--quick] [--out bench/results]

Table: account(id u64 primary key, balance i64, name 12-char string), plus a btree index on
balance for the range scans.  Memory is measured in a fresh subprocess per contender.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.machine import machine, save_results

SEED = 20261124
BAL_MAX = 1_000_000


def _rows(n: int) -> list[tuple[int, int, str]]:
    rng = random.Random(SEED)
    return [(i, rng.randrange(BAL_MAX), f"name{i:08d}") for i in range(1, n + 1)]


def _schema(with_balance_index: bool):
    import stdb
    return stdb.TableSchema(
        "account", [stdb.Column("id", "u64"), stdb.Column("balance", "i64"), stdb.Column("name", "string")],
        primary_key="id",
        indexes=[stdb.IndexDef("by_balance", "balance")] if with_balance_index else [])


# ---------------------------------------------------------------- memory (run in a child)

def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(kind: str, n: int) -> dict[str, Any]:
    import gc
    import tracemalloc

    from stdb._core.table import Table  # imported first: `import stdb` loads wasmtime too
    rng = random.Random(SEED)
    gc.collect()
    tracemalloc.start()
    rss0 = _rss()
    t0 = tracemalloc.get_traced_memory()[0]
    out: dict[str, Any] = {"kind": kind, "rows": n}
    if kind == "stdb":
        t = Table(_schema(False))
        for i in range(1, n + 1):
            t.insert((i, rng.randrange(BAL_MAX), f"name{i:08d}"))
        gc.collect()
        out["table_memory_bytes"] = t.memory_bytes()
        out["stats"] = t.stats()
        keep = t
    else:
        d = {}
        for i in range(1, n + 1):
            d[i] = {"id": i, "balance": rng.randrange(BAL_MAX), "name": f"name{i:08d}"}
        gc.collect()
        keep = d
    out["traced_bytes"] = tracemalloc.get_traced_memory()[0] - t0
    out["rss_bytes"] = _rss() - rss0
    del keep
    return out


def measure_memory(n: int) -> dict[str, Any]:
    res = {}
    for kind in ("stdb", "dict"):
        print(f"  memory: {kind}, {n:,} rows (fresh process) ...", flush=True)
        p = subprocess.run([sys.executable, "-m", "bench.engine", "--memory-child", kind, "--rows", str(n)],
                           capture_output=True, text=True, timeout=1800,
                           cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if p.returncode != 0:
            raise RuntimeError(f"memory child {kind} failed:\n{p.stderr}")
        res[kind] = json.loads(p.stdout.strip().splitlines()[-1])
    s, d = res["stdb"], res["dict"]
    res["stdb_bytes_per_row"] = s["traced_bytes"] / n
    res["stdb_table_bytes_per_row"] = s["table_memory_bytes"] / n
    res["stdb_rss_bytes_per_row"] = s["rss_bytes"] / n
    res["dict_bytes_per_row"] = d["traced_bytes"] / n
    res["dict_rss_bytes_per_row"] = d["rss_bytes"] / n
    res["ratio_stdb_to_dict"] = s["traced_bytes"] / d["traced_bytes"]
    return res


# ---------------------------------------------------------------- rates

def best_of(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    best = float("inf")
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def measure_rates(n: int) -> dict[str, Any]:
    import stdb  # noqa: F401
    from stdb._core.table import Table

    rows = _rows(n)
    rng = random.Random(SEED + 1)
    seek_ids = [rng.randrange(1, n + 1) for _ in range(100_000)]
    width = max(1, BAL_MAX * 100 // n)                        # ~100 rows per range
    ranges = [(lo, lo + width - 1) for lo in (rng.randrange(BAL_MAX - width) for _ in range(1000))]
    threshold = BAL_MAX * 9 // 10                              # ~10% of rows pass the filter
    r: dict[str, Any] = {"rows": n, "seeks": len(seek_ids), "ranges": len(ranges), "range_width": width,
                         "filter": f"balance > {threshold}"}

    # --- insert
    print("  insert ...", flush=True)
    def ins_stdb():
        t = Table(_schema(True))
        for row in rows:
            t.insert(row)
        return t
    dt, table = best_of(ins_stdb, 1)
    r["insert_stdb_rows_per_s"] = n / dt

    def ins_dict():
        d = {}
        for i, b, nm in rows:
            d[i] = {"id": i, "balance": b, "name": nm}
        return d
    dt, d = best_of(ins_dict, 1)
    r["insert_dict_rows_per_s"] = n / dt

    def ins_sqlite():
        db = sqlite3.connect(":memory:")
        db.execute("CREATE TABLE account "
                   "(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, name TEXT NOT NULL)")
        db.execute("CREATE INDEX by_balance ON account(balance)")
        with db:
            db.executemany("INSERT INTO account VALUES (?, ?, ?)", rows)
        return db
    dt, db = best_of(ins_sqlite, 1)
    r["insert_sqlite_rows_per_s"] = n / dt

    # --- point seek by primary key, returning the row
    print("  point seeks ...", flush=True)
    seek, get = table.seek, table.get
    dt, got = best_of(lambda: [get(seek("pk", k)[0]) for k in seek_ids])
    r["seek_stdb_per_s"] = len(seek_ids) / dt
    dt, got_d = best_of(lambda: [d[k] for k in seek_ids])
    r["seek_dict_per_s"] = len(seek_ids) / dt
    stmt = "SELECT id, balance, name FROM account WHERE id = ?"
    dt, got_s = best_of(lambda: [db.execute(stmt, (k,)).fetchone() for k in seek_ids])
    r["seek_sqlite_per_s"] = len(seek_ids) / dt
    assert got[:50] == got_s[:50] and [tuple(x.values()) for x in got_d[:50]] == got_s[:50]

    # --- range scans on balance, returning rows in order
    print("  range scans ...", flush=True)
    rng_ = table.range
    dt, res_t = best_of(lambda: [[get(x) for x in rng_("by_balance", lo, hi)] for lo, hi in ranges])
    total = sum(map(len, res_t))
    r["range_rows_returned"] = total
    r["range_stdb_rows_per_s"] = total / dt
    r["range_stdb_ranges_per_s"] = len(ranges) / dt
    by_bal = sorted((row[1], row[0]) for row in rows)
    keys = [b for b, _ in by_bal]

    def dict_ranges():
        out = []
        for lo, hi in ranges:
            i, j = bisect.bisect_left(keys, lo), bisect.bisect_right(keys, hi)
            out.append([d[k] for _, k in by_bal[i:j]])
        return out
    dt, res_d = best_of(dict_ranges)
    r["range_dict_rows_per_s"] = total / dt
    stmt = "SELECT id, balance, name FROM account WHERE balance BETWEEN ? AND ? ORDER BY balance"
    dt, res_s = best_of(lambda: [db.execute(stmt, rg).fetchall() for rg in ranges])
    r["range_sqlite_rows_per_s"] = total / dt
    r["range_sqlite_ranges_per_s"] = len(ranges) / dt
    assert sum(map(len, res_s)) == total == sum(map(len, res_d))

    # --- filtered full scan
    print("  filtered scans ...", flush=True)
    dt, cnt = best_of(lambda: len(table.scan_where("balance", ">", threshold)))
    r["filter_matches"] = cnt
    r["filter_count_stdb_rows_scanned_per_s"] = n / dt
    dt, _ = best_of(lambda: table.rows(table.scan_where("balance", ">", threshold)))
    r["filter_rows_stdb_rows_scanned_per_s"] = n / dt
    dt, cnt_d = best_of(lambda: sum(1 for v in d.values() if v["balance"] > threshold))
    r["filter_count_dict_rows_scanned_per_s"] = n / dt
    dt, _ = best_of(lambda: [v for v in d.values() if v["balance"] > threshold])
    r["filter_rows_dict_rows_scanned_per_s"] = n / dt
    # NOT INDEXED: SQLite must scan the table, like the others (with the index it would not)
    dt, (cnt_s,) = best_of(lambda: db.execute(
        "SELECT count(*) FROM account NOT INDEXED WHERE balance > ?", (threshold,)).fetchone())
    r["filter_count_sqlite_rows_scanned_per_s"] = n / dt
    dt, _ = best_of(lambda: db.execute(
        "SELECT id, balance, name FROM account NOT INDEXED WHERE balance > ?", (threshold,)).fetchall())
    r["filter_rows_sqlite_rows_scanned_per_s"] = n / dt
    assert cnt == cnt_d == cnt_s
    for k in ("insert", "seek", "range", "filter_count", "filter_rows"):
        unit = {"insert": "rows_per_s", "seek": "per_s", "range": "rows_per_s"}.get(k, "rows_scanned_per_s")
        r[f"{k}_ratio_vs_sqlite"] = r[f"{k}_stdb_{unit}"] / r[f"{k}_sqlite_{unit}"]
        r[f"{k}_ratio_vs_dict"] = r[f"{k}_stdb_{unit}"] / r[f"{k}_dict_{unit}"]
    return r


def markdown(mem: dict[str, Any], rates: dict[str, Any], m: dict[str, Any]) -> str:
    n = rates["rows"]
    per_range = rates["range_rows_returned"] // rates["ranges"]
    measures = [  # (label, rates key prefix, unit suffix, target)
        ("insert, rows/s", "insert", "rows_per_s", ""),
        ("point seek by pk (row returned), /s", "seek", "per_s", ""),
        (f"range scan ~{per_range} rows (rows returned), rows/s", "range", "rows_per_s", ""),
        (f"filtered full scan `{rates['filter']}`, count, rows scanned/s", "filter_count",
         "rows_scanned_per_s", "≥ 5"),
        ("filtered full scan, matching rows returned, rows scanned/s", "filter_rows",
         "rows_scanned_per_s", ""),
    ]
    lines = [
        f"Engine benchmark, {n:,} rows (id u64 pk, balance i64, name 12-char string); "
        f"{m['cores']} cores, {m['cpu']}, Python {m['python']}, SQLite {m['sqlite']}, stdb {m['stdb']} "
        f"({m['git_commit']}), {m['date']}",
        "",
        "| measure | stdb | Python dicts | SQLite (memory) | stdb / SQLite | target |",
        "|---|---|---|---|---|---|",
        f"| memory, bytes/row (tracemalloc; RSS) | {mem['stdb_bytes_per_row']:.1f}; "
        f"{mem['stdb_rss_bytes_per_row']:.1f} | {mem['dict_bytes_per_row']:.1f}; "
        f"{mem['dict_rss_bytes_per_row']:.1f} | | stdb/dict = {mem['ratio_stdb_to_dict']:.3f} "
        "| ≤ 64; ≤ 1/6 |",
    ]
    for label, key, unit, target in measures:
        vals = [rates[f"{key}_{who}_{unit}"] for who in ("stdb", "dict", "sqlite")]
        lines.append(f"| {label} | " + " | ".join(f"{v:,.0f}" for v in vals)
                     + f" | {rates[f'{key}_ratio_vs_sqlite']:.2f} | {target} |")
    return "\n".join(lines)


def run(rows: int, out_dir: str) -> dict[str, Any]:
    m = machine()
    print(f"engine benchmark: {rows:,} rows", flush=True)
    mem = measure_memory(rows)
    rates = measure_rates(rows)
    result = {"machine": m, "memory": mem, "rates": rates}
    save_results(out_dir, "engine", result, markdown(mem, rates, m))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--quick", action="store_true", help="50k rows: a smoke run")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    p.add_argument("--memory-child", choices=("stdb", "dict"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.memory_child:
        print(json.dumps(memory_child(a.memory_child, a.rows)))
        return 0
    run(50_000 if a.quick else a.rows, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
