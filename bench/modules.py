"""Module call costs: stdb's direct path into wasmtime vs wasmtime-py's high-level API.

Same engine, same WAT module, same run:

* reducer call: ``stdb_call`` of an empty reducer (direct: unchecked call from Cython;
  high-level: ``Func.__call__``);
* host call: a reducer that calls the ``timestamp`` import N times (direct: a raw C
  callback; high-level: a Python function defined with ``Linker.define_func``), per call;
* host call reading memory: ``table_id`` with a name in linear memory (the high-level host
  reads it through ``Caller``), per call;
* a whole ``Database.call`` (transaction + commit log) of a reducer that inserts one row;
* the transfer call of examples/transfer built from C and from Rust (sdk/rust), each in its own
  database, rounds interleaved (issue 25); skipped, saying why, without the Rust toolchain.

Target (issue 5): ≤ 2 µs per host call on the direct path.
``python -m bench.modules [--quick]`` writes bench/results/modules.{json,md}.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

import wasmtime

from bench.machine import best_of, machine, save_results
from stdb import Column, TableSchema
from stdb.module import _wasm
from stdb.module._host import NativeHost
from stdb.module.database import Database, Limits, engine
from stdb.module.describe import ModuleSchema

WAT = """
(module
  (import "stdb" "timestamp" (func $ts (result i64)))
  (import "stdb" "table_id" (func $tid (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "account")
  (func (export "stdb_abi_version") (result i32) i32.const 1)
  (func (export "stdb_describe") (result i64) i64.const 0)
  (func (export "stdb_alloc") (param i32) (result i32) i32.const 1024)
  (func (export "stdb_call") (param $r i32) (param $p i32) (param $n i32) (result i64)
    (local $i i32)
    (if (i32.eqz (local.get $r)) (then (return (i64.const 0))))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $i) (local.get $p)))
      (if (i32.eq (local.get $r) (i32.const 1))
        (then (drop (call $ts)))
        (else (drop (call $tid (i32.const 16) (i32.const 7)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (i64.const 0)))
"""
# reducer 0: return; reducer 1: call timestamp() $p times; reducer 2: call table_id("account") $p times


def _host() -> NativeHost:
    """The native host of a module with one table, "account" (table_id finds it, id 0)."""
    account = TableSchema("account", [Column("id", "u64")], primary_key="id")
    return NativeHost(ModuleSchema((account,), (), {}), Limits(), logging.getLogger("bench"))


def direct(calls: int, hosts: int) -> dict:
    module = wasmtime.Module(engine(), WAT)
    inst = _wasm.instantiate(engine(), module, _host(), memory_limit=1 << 24)
    fuel, ticks = 10**12, 10**6

    def empty():
        for _ in range(calls):
            inst.call_reducer(0, b"", fuel, ticks)

    def loop(r):
        return lambda: _direct_loop(inst, r, hosts)
    return {"reducer_call_us": best_of(empty, 5) / calls * 1e6,
            "host_call_us": best_of(loop(1), 5) / hosts * 1e6,
            "host_call_memory_us": best_of(loop(2), 5) / hosts * 1e6}


def _direct_loop(inst, r: int, n: int) -> None:
    # call_reducer with args_len 0 passes ptr 0; use the pointer argument as the count: the
    # WAT loops $p times, so call stdb_call(r, n, 0) through a tiny wrapper of the same path
    inst.call_raw(r, n, 0, 10**12, 10**6)


def high_level(calls: int, hosts: int) -> dict:
    store = wasmtime.Store(engine())
    store.set_fuel(10**15)
    store.set_epoch_deadline(10**9)
    linker = wasmtime.Linker(engine())
    i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()
    linker.define_func("stdb", "timestamp", wasmtime.FuncType([], [i64]), lambda: 1)

    def table_id(caller, ptr, n):
        mem = caller.get("memory")
        mem.read(caller, ptr, ptr + n)
        return 0
    linker.define_func("stdb", "table_id", wasmtime.FuncType([i32, i32], [i32]), table_id, access_caller=True)
    inst = linker.instantiate(store, wasmtime.Module(engine(), WAT))
    call = inst.exports(store)["stdb_call"]

    def empty():
        for _ in range(calls):
            call(store, 0, 0, 0)
    return {"reducer_call_us": best_of(empty, 5) / calls * 1e6,
            "host_call_us": best_of(lambda: call(store, 1, hosts, 0), 5) / hosts * 1e6,
            "host_call_memory_us": best_of(lambda: call(store, 2, hosts, 0), 5) / hosts * 1e6}


def database_call(n: int) -> dict:
    from tests.test_module import kv_module  # the WAT kv module of the tests
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(os.path.join(tmp, "db"), limits=Limits())
        try:
            db.publish(kv_module())
            t0 = time.perf_counter()
            for i in range(n):
                db.call("put", (i, i))
            dt = time.perf_counter() - t0
        finally:
            db.close()
    return {"database_call_us": dt / n * 1e6, "calls": n}


def transfer_c_vs_rust(n: int, rounds: int = 3, accounts: int = 1000) -> dict:
    """µs per ``Database.call("transfer", ...)`` of the C and the Rust build of examples/transfer
    (best round of each; the rounds alternate between them)."""
    from stdb.errors import ModuleError
    from stdb.module.build import build_module
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        wasm = {}
        for lang, ext in (("c", "c"), ("rust", "rs")):
            try:
                out = build_module(os.path.join(root, "examples", "transfer", f"transfer.{ext}"),
                                   os.path.join(tmp, f"transfer-{lang}.wasm"))
            except ModuleError as e:
                hint = f" ({e.hint})" if e.hint else ""
                return {"skipped": f"the {lang} build failed: {e.detail}{hint}"}
            with open(out, "rb") as f:
                wasm[lang] = f.read()
        dbs = {lang: Database(os.path.join(tmp, lang), limits=Limits()) for lang in wasm}
        try:
            for lang, db in dbs.items():
                db.publish(wasm[lang])
                for i in range(accounts):
                    db.call("create_account", (i, 1_000_000))
            best = {lang: float("inf") for lang in dbs}
            for r in range(rounds):
                for lang, db in dbs.items():
                    t0 = time.perf_counter()
                    for i in range(n):
                        db.call("transfer", ((i * 7 + r) % accounts, (i * 13 + 1 + r) % accounts, 1))
                    best[lang] = min(best[lang], (time.perf_counter() - t0) / n * 1e6)
            balances = {lang: db.sql("SELECT SUM(balance) FROM account").rows for lang, db in dbs.items()}
        finally:
            for db in dbs.values():
                db.close()
    assert balances["c"] == balances["rust"], balances      # the same calls, the same money
    return {"c_us": best["c"], "rust_us": best["rust"], "calls": n, "rounds": rounds,
            "wasm_bytes": {lang: len(w) for lang, w in wasm.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations (CI smoke run)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args(argv)
    calls, hosts, dbn = (2000, 20000, 1000) if args.quick else (50_000, 500_000, 20_000)
    d = direct(calls, hosts)
    h = high_level(calls // 10, hosts // 10)
    db = database_call(dbn)
    tr = transfer_c_vs_rust(dbn // 4)
    res = {"machine": machine(), "direct": d, "high_level": h, "database": db, "transfer_c_rust": tr,
           "target_host_call_us": 2.0}
    rows = [("reducer call (empty)", "reducer_call_us", ""),
            ("host call (timestamp)", "host_call_us", "≤ 2 µs"),
            ("host call reading memory (table_id)", "host_call_memory_us", "≤ 2 µs")]
    md = ["| measure, µs per call | stdb direct | wasmtime-py high-level | speed-up | target |",
          "|---|---|---|---|---|"]
    for label, key, target in rows:
        md.append(f"| {label} | {d[key]:.2f} | {h[key]:.2f} | {h[key] / d[key]:.1f}× | {target} |")
    md.append("| Database.call: insert one row, commit to the log (no fsync wait) | "
              f"{db['database_call_us']:.1f} "
              "| | | |")
    if "skipped" in tr:
        md.append(f"| transfer call, C vs Rust module | not measured: {tr['skipped']} | | | |")
    else:
        md.append(f"| transfer call (`Database.call`), C module vs Rust module | C {tr['c_us']:.2f} | "
                  f"Rust {tr['rust_us']:.2f} | Rust ÷ C {tr['rust_us'] / tr['c_us']:.2f} | |")
    save_results(args.out, "modules", res, "\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
