"""Hand-written WAT modules for ABI edge cases (docs/abi.md).

``module(desc, calls)`` builds a module whose ``stdb_describe`` returns ``desc`` (a dict,
as JSON) and whose ``stdb_call`` runs the WAT body ``calls[i]`` for reducer ``i``.  Inside a
body: ``$p``/``$n`` are the argument pointer and length, ``$tmp`` is scratch memory at
65536, strings placed with ``data`` are at 256+ (see ``strings``), and every import of ABI
v1 is available as ``$name``.  A body leaves an i64 on the stack (0 = success).
"""

from __future__ import annotations

import json

IMPORTS = """
  (import "stdb" "table_id" (func $table_id (param i32 i32) (result i32)))
  (import "stdb" "index_id" (func $index_id (param i32 i32 i32) (result i32)))
  (import "stdb" "insert" (func $insert (param i32 i32 i32) (result i32)))
  (import "stdb" "update" (func $update (param i32 i32 i32) (result i32)))
  (import "stdb" "delete" (func $delete (param i32 i32 i32 i32) (result i32)))
  (import "stdb" "seek" (func $seek (param i32 i32 i32 i32) (result i32)))
  (import "stdb" "find" (func $find (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "stdb" "range" (func $range (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "stdb" "scan" (func $scan (param i32) (result i32)))
  (import "stdb" "iter_next" (func $iter_next (param i32 i32 i32) (result i32)))
  (import "stdb" "iter_close" (func $iter_close (param i32) (result i32)))
  (import "stdb" "log" (func $log (param i32 i32 i32)))
  (import "stdb" "sender" (func $sender (param i32)))
  (import "stdb" "connection_id" (func $connection_id (param i32)))
  (import "stdb" "timestamp" (func $timestamp (result i64)))
  (import "stdb" "random_seed" (func $random_seed (result i64)))
  (import "stdb" "error_detail" (func $error_detail (param i32 i32) (result i32)))
"""


def _escape(data: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in data)


def strings(*items: str) -> tuple[str, dict[str, tuple[int, int]]]:
    """Data segments for ``items`` from address 256 and {item: (address, length)}."""
    out, where, at = [], {}, 256
    for s in items:
        raw = s.encode()
        out.append(f'  (data (i32.const {at}) "{_escape(raw)}")')
        where[s] = (at, len(raw))
        at += len(raw) + 1
    return "\n".join(out), where


def describe(tables: list[dict], reducers: list[dict], abi: int = 1) -> dict:
    return {"abi": abi, "tables": tables, "reducers": reducers}


def module(desc: dict | bytes, calls: list[str], *, data: str = "", extra: str = "", memory_pages: int = 2,
           version: int = 1, imports: str = IMPORTS) -> bytes:
    raw = desc if isinstance(desc, bytes) else json.dumps(desc).encode()
    dispatch = "\n".join(
        f"    (if (i32.eq (local.get $r) (i32.const {i})) (then {body} (return)))"
        for i, body in enumerate(calls))
    return f"""
(module
{imports}
  (memory (export "memory") {memory_pages})
  (data (i32.const 4096) "{_escape(raw)}")
{data}
  (global $bump (mut i32) (i32.const 98304))
  (global $tmp i32 (i32.const 65536))
  (func (export "stdb_abi_version") (result i32) i32.const {version})
  (func (export "stdb_describe") (result i64)
    (i64.or (i64.shl (i64.const 4096) (i64.const 32)) (i64.const {len(raw)})))
  (func (export "stdb_alloc") (param $n i32) (result i32) (local $at i32)
    (local.set $at (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (local.get $n)))
    (local.get $at))
  (func $err (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $len)) (i64.const 32)) (i64.extend_i32_u (local.get $ptr))))
{extra}
  (func (export "stdb_call") (param $r i32) (param $p i32) (param $n i32) (result i64)
    (local $t i32) (local $i i32) (local $x i64)
    (global.set $bump (i32.const 98304))
{dispatch}
    unreachable)
)
""".encode()
