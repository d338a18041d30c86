"""Offline commit-log tool: inspect, verify, dump, replay, stats.

    stdb log inspect DBDIR                  # also: python -m tools.logtool inspect DBDIR
    stdb log verify DBDIR                   # exit 1 on any damage
    stdb log dump DBDIR [--from N] [--to N] [--table T] [--reducer R]
    stdb log replay DBDIR --to N --out NEWDIR
    stdb log stats DBDIR

DBDIR is one database's directory (a server keeps them in ``<data>/databases/<name>``).

It opens the database read-only and never changes it (``replay`` writes only NEWDIR).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections import Counter, defaultdict
from typing import Any

from stdb.errors import StdbError, StorageError
from stdb.progress import progress_bar
from stdb.storage import logformat as lf
from stdb.storage.commitlog import check_layout, iter_records, log_bounds
from stdb.storage.lmdbenv import Env
from stdb.storage.recovery import recover, scan_log
from stdb.storage.snapshot import list_snapshots, verify_snapshot


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def _schemas_for(env: Env, start: int) -> dict[str, Any]:
    """Table schemas in force at offset ``start``: from the newest snapshot at or before it,
    then create/drop records up to it."""
    from stdb._core.codec import RowCodec
    from stdb._core.schema import schema_from_dict

    codecs: dict[str, Any] = {}
    base = -1
    for s in list_snapshots(env):
        if s.offset < start and s.tables:
            for t in s.tables:
                sch = schema_from_dict(t["schema"])
                codecs[sch.name] = RowCodec(sch.name, sch.column_names, sch.column_types)
            base = s.offset
            break
    for off, value in iter_records(env, base + 1):
        if off >= start:
            break
        try:
            rec = lf.decode_record(off, value)
        except StorageError:
            continue
        _track(codecs, rec)
    return codecs


def _track(codecs: dict[str, Any], rec: lf.LogRecord) -> None:
    from stdb._core.codec import RowCodec

    if rec.kind in (lf.KIND_CREATE_TABLE, lf.KIND_ALTER_TABLE) and rec.schema is not None:
        codecs[rec.schema.name] = RowCodec(rec.schema.name, rec.schema.column_names, rec.schema.column_types)
    elif rec.kind == lf.KIND_DROP_TABLE:
        codecs.pop(rec.table, None)


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return {"hex": v.hex()} if len(v) == 32 else {"b64": base64.b64encode(v).decode()}
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return repr(v)
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


# ---------------------------------------------------------------- commands

def cmd_inspect(env: Env, args: argparse.Namespace) -> int:
    b = log_bounds(env)
    snaps = list_snapshots(env)
    out: dict[str, Any] = {"path": env.path, "map_size": env.map_size(), "log_layout": check_layout(env)}
    if b is None:
        out["log"] = None
    else:
        first_ts = last_ts = None
        n = size = 0
        tables: Counter[str] = Counter()
        kinds: Counter[str] = Counter()
        damaged = []
        for off, value in iter_records(env, b[0]):
            n += 1
            size += len(value)
            try:
                rec = lf.decode_record(off, value)
            except StorageError:
                damaged.append(off)
                continue
            kinds[rec.kind_name] += 1
            first_ts = rec.timestamp if first_ts is None else first_ts
            last_ts = rec.timestamp
            for ch in rec.changes:
                tables[ch.table] += len(ch.deletes) + len(ch.inserts)
        out["log"] = {"first_offset": b[0], "last_offset": b[1], "records": n, "bytes": size,
                      "kinds": dict(kinds), "time_span_us": [first_ts, last_ts],
                      "time_span": [_iso(first_ts), _iso(last_ts)],
                      "row_ops_per_table": dict(tables), "damaged_offsets": damaged}
    out["snapshots"] = [{"offset": s.offset, "created": _iso(s.created_us), "rows": s.rows,
                         "bytes": s.bytes, "tables": [t["schema"]["name"] for t in s.tables]} for s in snaps]
    print(json.dumps(out, indent=2))
    return 0


def cmd_verify(env: Env, args: argparse.Namespace) -> int:
    problems: list[str] = []
    b = log_bounds(env)
    checked = 0
    if b is not None:
        expected = b[0]
        total = b[1] - b[0] + 1
        with progress_bar(total, "verifying log") as tick:
            for off, value in iter_records(env, b[0]):
                if off > expected:
                    problems.append(f"log: offsets jump from {expected - 1} to {off} "
                                    f"({off - expected} records missing)")
                elif off < expected:
                    problems.append(f"log: offset {off} is stored twice (it follows {expected - 1})")
                expected = off + 1
                try:
                    lf.decode_record(off, value)
                except StorageError as e:
                    problems.append(f"log: {e.detail}")
                checked += 1
                if checked % 1000 == 0:
                    tick(checked)
        scan = scan_log(env, b[0])
        if scan.first_bad is not None:
            where = "in the middle of the log" if scan.mid_log_damage else "at the tail (a torn write)"
            problems.append(f"log: damage {where} starting at offset {scan.first_bad}")
    snaps = list_snapshots(env)
    for s in snaps:
        try:
            verify_snapshot(env, s.offset)
        except StorageError as e:
            problems.append(f"snapshot: {e.detail}")
    for p in problems:
        print("DAMAGED", p)
    print(f"checked {checked} log records and {len(snaps)} snapshots: "
          f"{'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


def cmd_dump(env: Env, args: argparse.Namespace) -> int:
    start = args.from_offset or 0
    codecs = _schemas_for(env, start)
    for off, value in iter_records(env, start):
        if args.to_offset is not None and off > args.to_offset:
            break
        try:
            rec = lf.decode_record(off, value)
        except StorageError as e:
            print(json.dumps({"offset": off, "error": e.detail}))
            continue
        _track(codecs, rec)
        if args.reducer is not None and rec.reducer != args.reducer:
            continue
        if args.table is not None and not any(ch.table == args.table for ch in rec.changes) and \
                not (rec.schema is not None and rec.schema.name == args.table) and rec.table != args.table:
            continue
        item: dict[str, Any] = {"offset": off, "kind": rec.kind_name, "timestamp": rec.timestamp}
        if rec.kind == lf.KIND_TX:
            item["caller"] = rec.caller.hex() if rec.caller else None
            item["reducer"] = rec.reducer or None
            item["args"] = base64.b64encode(rec.args).decode() if rec.args else None
            tables = {}
            for ch in rec.changes:
                if args.table is not None and ch.table != args.table:
                    continue
                codec = codecs.get(ch.table)
                dec = (lambda raw, c=codec: [_jsonable(v) for v in c.decode(raw)]) if codec else \
                    (lambda raw: {"b64": base64.b64encode(raw).decode()})
                tables[ch.table] = {"deletes": [dec(r) for r in ch.deletes],
                                    "inserts": [dec(r) for r in ch.inserts]}
            item["tables"] = tables
        elif rec.kind in (lf.KIND_CREATE_TABLE, lf.KIND_ALTER_TABLE) and rec.schema is not None:
            from stdb._core.schema import schema_to_dict
            item["schema"] = schema_to_dict(rec.schema)
        else:
            item["table"] = rec.table
        print(json.dumps(item))
    return 0


def cmd_replay(env: Env, args: argparse.Namespace) -> int:
    """Rebuild the state as of offset --to and write it as a new database in --out: a
    snapshot at that same offset, so the new database carries on from offset --to + 1."""
    import os

    from stdb.storage.snapshot import write_snapshot

    if os.path.exists(os.path.join(args.out, "data.mdb")):
        raise StorageError(f"{args.out!r} already holds a database", hint="give a new directory")
    b = log_bounds(env)
    total = 0 if b is None else max(0, min(b[1], args.to) - b[0] + 1)
    t0 = time.perf_counter()
    with progress_bar(total, f"replaying to offset {args.to}") as tick:
        res = recover(env, repair=False, to_offset=args.to, progress=lambda d, t: tick(d))
    dt = time.perf_counter() - t0
    last = res.next_offset - 1
    if last < args.to:
        _err(f"note: the log ends at offset {last}; the state is as of offset {last}")
    out = Env(args.out)
    try:
        if last >= 0:
            ds = res.datastore
            write_snapshot(out, last, [ds.table(n) for n in ds.table_names])
            out.sync()
    finally:
        out.close()
    print(json.dumps({"replayed_to": last, "records": res.replayed, "row_ops": res.row_ops,
                      "seconds": round(dt, 3), "out": args.out,
                      "tables": {n: len(res.datastore.table(n)) for n in res.datastore.table_names}}))
    return 0


def cmd_stats(env: Env, args: argparse.Namespace) -> int:
    rows: dict[str, dict[str, int]] = defaultdict(lambda: {"inserts": 0, "deletes": 0, "bytes": 0})
    reducers: Counter[str] = Counter()
    n = 0
    first_ts = last_ts = None
    for off, value in iter_records(env, 0):
        try:
            rec = lf.decode_record(off, value)
        except StorageError:
            continue
        n += 1
        first_ts = rec.timestamp if first_ts is None else first_ts
        last_ts = rec.timestamp
        if rec.reducer:
            reducers[rec.reducer] += 1
        for ch in rec.changes:
            r = rows[ch.table]
            r["inserts"] += len(ch.inserts)
            r["deletes"] += len(ch.deletes)
            r["bytes"] += sum(map(len, ch.inserts)) + sum(map(len, ch.deletes))
    span = (last_ts - first_ts) / 1e6 if first_ts is not None and last_ts is not None else 0.0
    print(json.dumps({"records": n, "time_span_s": span,
                      "tx_per_s": round(n / span, 1) if span > 0 else None,
                      "tables": rows, "reducers": dict(reducers)}, indent=2))
    return 0


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(us / 1e6)) + f".{us % 1_000_000:06d}Z"


def main(argv: list[str] | None = None, prog: str = "stdb log") -> int:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("inspect", "verify", "stats"):
        sp = sub.add_parser(name)
        sp.add_argument("db")
    sp = sub.add_parser("dump")
    sp.add_argument("db")
    sp.add_argument("--from", dest="from_offset", type=int, default=0)
    sp.add_argument("--to", dest="to_offset", type=int, default=None)
    sp.add_argument("--table")
    sp.add_argument("--reducer")
    sp = sub.add_parser("replay")
    sp.add_argument("db")
    sp.add_argument("--to", type=int, required=True)
    sp.add_argument("--out", required=True)
    args = p.parse_args(argv)
    try:
        env = Env(args.db, readonly=True)
    except StdbError as e:
        _err(f"error: {e}")
        return 2
    try:
        return {"inspect": cmd_inspect, "verify": cmd_verify, "dump": cmd_dump, "replay": cmd_replay,
                "stats": cmd_stats}[args.cmd](env, args)
    except StdbError as e:
        _err(f"error: {e}")
        return 1
    finally:
        env.close()


if __name__ == "__main__":
    sys.exit(main(prog="python -m stdb.logtool"))
