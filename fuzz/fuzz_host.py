"""Fuzz target: the "stdb" imports in C (stdb/module/_host.pyx, ``NativeHost``) against their
pure-Python twin (stdb/module/host.py, ``ModuleHost``) — tests/test_host_differential.py's
comparison, driven by the fuzz input instead of hypothesis.

Input: a limits byte (rows per batch, largest row), then a program of imports, each an opcode
byte and its argument bytes (missing bytes read as 0).  The same program runs on a NativeHost
over native tables and on a ModuleHost over ``stdb._core.reference`` tables, both inside a
reducer call (``begin_call``) on three tables (``TABLES``: an auto-increment u64 key with a
non-unique btree index and a unique hash index; a table without primary key with a non-unique
hash index; an i64 key with btree indexes over an f64 and over (option<string>, i64)):

* table_id / index_id / insert / update / delete / seek / find / range / scan / iter_close /
  log / the call's context, with good and damaged rows and keys (cut, a byte flipped, grown,
  or raw input bytes), bad table and index ids, random range flags (unknown bits, bound widths
  past the index), small buffer caps: the same answer, the same bytes (an insert's row with its
  auto-increment value, a find's row or the size it needs) and, for every negative answer, the
  same ``error_detail`` text; ``find`` on a non-unique index may pick another of the rows with
  the key (storage order): each side's row (or the size it asks for) is one of them;
* iterators: ``iter_next`` in one batch with room for every row (the same number of rows) or
  drained with a small buffer grown on BUFFER_TOO_SMALL (as a module does); the rows an
  iterator returned over its life are compared as a multiset when it ends (storage orders
  differ), a bad or spent handle gives the same NO_SUCH_ITER text;
* the end of a call (an opcode, and the end of the input) drains every open iterator (same rows),
  commits or rolls back, compares the tables (rows and sequences; the native indexes check out)
  and may start the next call (a new transaction; handles start again) or leave the hosts with
  no call (every table import answers NO_TRANSACTION).

Nothing may raise: a fault of the native host (``InternalError``) is a finding.

    python -m fuzz.fuzz_host fuzz/corpus/host -max_total_time=60
"""

from __future__ import annotations

import logging
import struct
from typing import Any

from fuzz._harness import Reader, fuzz, instrument_module, instrumented

with instrumented(__name__ == "__main__"):
    from stdb._core import reference
    from stdb._core.codec import RowCodec
    from stdb._core.schema import Column, IndexDef, TableSchema
    from stdb.module._host import NativeHost
    from stdb.module.describe import ModuleSchema
    from stdb.module.host import ERR, Limits, ModuleHost
    from stdb.storage.datastore import Datastore

ITEM = TableSchema("item",
                   [Column("id", "u64", auto_inc=True), Column("kind", "u8"), Column("name", "string"),
                    Column("score", "option<f64>")],
                   primary_key="id", indexes=[IndexDef("by_kind", ("kind", "name")),
                                              IndexDef("by_name", "name", "hash", unique=True)])
TAG = TableSchema("tag", [Column("k", "i32"), Column("v", "array<u8>")],
                  indexes=[IndexDef("by_k", "k", "hash")])
PT = TableSchema("pt", [Column("x", "i64"), Column("f", "f64"), Column("s", "option<string>")],
                 primary_key="x", indexes=[IndexDef("by_f", "f"), IndexDef("by_s", ("s", "x"))])
TABLES = (ITEM, TAG, PT)
SCHEMA = ModuleSchema(TABLES, (), {})
CODECS = [RowCodec(t.name, list(t.column_names), [c.name for c in t.column_types]) for t in TABLES]
INDEXES = [list(t.all_indexes()) for t in TABLES]
TYPES = [{c.name: c.type.name for c in t.columns} for t in TABLES]

NAMES = ("a", "b", "c", "", "é", "a\x00", "x" * 150, "\U0001f642")
FLOATS = (0.0, -0.0, 1.5, float("nan"), float("inf"), -2.25, 1e300, 5e-324)
INTS = (0, 1, 2, 3, -1, 50, 2**31 - 1, -(2**31))
IDS = (0, 0, 1, 2, 3, 50, 2**64 - 1, 2**63)
TIDS = (0, 0, 0, 1, 1, 2, 2, 3, -1, 2**31 - 1)
IIDS = (0, 0, 1, 2, 3, -1)
CAPS = (0, 3, 4, 8, 12, 20, 64, 1 << 16)
TABLE_NAMES = (b"item", b"tag", b"pt", b"nope", b"item\xff", b"", b"ite", b"tag\x00")
INDEX_NAMES = (b"pk", b"by_kind", b"by_name", b"by_k", b"by_f", b"by_s", b"zz", b"p\xffk")
LIMITS = ((4, 200), (1, 200), (2, 40), (1024, 1 << 20), (3, 12), (4, 300), (1, 1 << 20), (2, 200))
BIG = 1 << 22             # an iter_next buffer every remaining row fits in
MAX_OPS = 48

# opcodes (the byte modulo their number)
(INSERT, UPDATE, DELETE, SEEK, FIND, RANGE, SCAN, NEXT, CLOSE, TABLE_ID, INDEX_ID, LOG, CONTEXT,
 END) = range(14)
NOPS = 14


def _value(r: Reader, type_name: str) -> Any:
    """A value of a column type, from one byte (two for an array)."""
    if type_name == "u64":
        return r.pick(IDS)
    if type_name == "u8":
        return r.byte() % 5
    if type_name in ("i32", "i64"):
        return r.pick(INTS)
    if type_name == "string":
        return r.pick(NAMES)
    if type_name == "f64":
        return r.pick(FLOATS)
    if type_name == "option<f64>":
        b = r.byte()
        return None if b % 3 == 0 else FLOATS[b % len(FLOATS)]
    if type_name == "option<string>":
        b = r.byte()
        return None if b % 3 == 0 else NAMES[b % len(NAMES)]
    if type_name == "array<u8>":
        b = r.byte()
        return [(b * (i + 7)) & 0xFF for i in range(b % 4)]
    raise AssertionError(type_name)


def damaged(r: Reader, data: bytes) -> bytes:
    """``data`` as it is (most often), cut, with a byte changed, grown, or raw input bytes."""
    how = r.byte()
    if how < 160:
        return data
    if how < 180:
        return data[:r.byte() % len(data)] if data else data
    if how < 205:
        if not data:
            return bytes([r.byte()])
        i = r.byte() % len(data)
        return data[:i] + bytes([r.byte()]) + data[i + 1:]
    if how < 225:
        return data + bytes([r.byte()]) * (r.byte() % 8 + 1)
    if how < 240:
        return data + b"\xff" * 300
    return r.take(r.byte() % 32)


def _tid_of(tid: int) -> int:
    """The table whose rows and keys to make for ``tid`` (a bad id gets table 0's)."""
    return tid if 0 <= tid < len(TABLES) else 0


def _row(r: Reader, tid: int) -> bytes:
    t = _tid_of(tid)
    row = tuple(_value(r, c.type.name) for c in TABLES[t].columns)
    return damaged(r, CODECS[t].encode(row))


def key_codec(tid: int, iid: int, k: int | None = None) -> RowCodec:
    """The key codec of the first ``k`` columns (all: None) of index ``iid`` of table ``tid``
    (for ids that name nothing: table 0's primary key)."""
    t = _tid_of(tid)
    idx = INDEXES[t][iid] if 0 <= iid < len(INDEXES[t]) else INDEXES[t][0]
    cols = list(idx.columns)[:k] if k else list(idx.columns)
    return RowCodec("k", cols, [TYPES[t][c] for c in cols])


def _key(r: Reader, tid: int, iid: int, k: int | None = None) -> bytes:
    codec = key_codec(tid, iid, k)
    return codec.encode(tuple(_value(r, str(ty)) for ty in codec.types))


def frames(data: bytes | None) -> list[bytes]:
    rows, pos = [], 0
    while data and pos < len(data):
        (n,) = struct.unpack_from("<I", data, pos)
        rows.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    assert pos == len(data or b""), data
    return rows


def canon(rows: list[bytes]) -> list[bytes]:
    return sorted(rows)


class Pair:
    """The two hosts, their datastores and the call in progress."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.stores = [Datastore(), Datastore(reference.Table)]
        for d in self.stores:
            for schema in TABLES:
                d.create_table(schema)
        log = logging.getLogger("stdb.fuzz.host")
        log.disabled = True
        self.hosts: list[Any] = [NativeHost(SCHEMA, limits, log), ModuleHost(SCHEMA, limits, log)]
        self.txs: list[Any] = [None, None]
        self.iters: dict[int, list[list[bytes]]] = {}      # handle -> rows each side returned so far
        self.calls = 0
        # rows come in each table's own order (compared sorted), so after a drain that grew its
        # buffer the two sides' last "the next row needs..." may name different rows
        self.errors_differ = False

    def begin(self, r: Reader) -> None:
        self.calls += 1
        b = r.byte()
        sender, conn = bytes([b]) * 32, bytes([b ^ 0x5A]) * 16
        ts = self.calls << (b % 56)       # µs since the epoch: never negative, within int64
        seed = None if b % 2 else b * 7919 - 3
        reducer = NAMES[b % len(NAMES)] or "r"
        self.txs = [d.begin() for d in self.stores]
        for h, tx in zip(self.hosts, self.txs, strict=True):
            h.begin_call(tx, reducer, sender, conn, ts, seed)
        self.iters = {}

    def end(self, commit: bool, again: Reader | None) -> None:
        """Drain what is open, end the call, commit or roll back, compare; ``again``: begin the
        next call (else no call is in progress)."""
        for handle in list(self.iters):
            self.next(handle, BIG, drain=True)
        for h in self.hosts:
            h.end_call()
        for tx in self.txs:
            if tx is not None and tx.is_open:
                tx.commit() if commit else tx.rollback()
        self.txs = [None, None]
        same_state(self.stores)
        if again is not None:
            self.begin(again)

    def same(self, name: str, *args: Any) -> Any:
        """Import ``name`` on both: the same answer and, when it is negative, the same detail."""
        got = [getattr(h, name)(*args) for h in self.hosts]
        assert got[0] == got[1], (name, args, got, [h.last_error for h in self.hosts])
        code = got[0][0] if isinstance(got[0], tuple) else got[0]
        if code is not None and code < 0:
            errs = [h.last_error for h in self.hosts]
            assert errs[0] == errs[1], (name, args, errs)
            self.errors_differ = False
        return got[0]

    def next(self, handle: int, cap: int, drain: bool) -> None:
        """``iter_next`` on both: one batch (``cap`` BIG) or until the end, a buffer of ``cap``
        grown whenever a row does not fit.  The rows are compared when the iterator ends."""
        acc = self.iters.get(handle)
        if acc is None:
            self.same("iter_next", handle, cap)     # a bad or spent handle: NO_SUCH_ITER
            return
        codes = []
        for side, h in enumerate(self.hosts):
            c, answers = cap, []
            while True:
                n, data = h.iter_next(handle, c)
                answers.append(n)
                if n == ERR["BUFFER_TOO_SMALL"]:
                    self.errors_differ = True
                    need = struct.unpack("<I", data)[0] if c >= 4 else BIG
                    assert c < need <= BIG, (c, need)
                    c = need
                    continue
                assert n >= 0, (n, h.last_error)
                rows = frames(data)
                assert n == len(data or b"") and len(rows) <= self.limits.max_rows_per_batch
                acc[side] += rows
                if n == 0 or not drain:
                    break
            codes.append((answers[-1] == 0, len(rows)))     # drained: (True, 0)
        assert codes[0] == codes[1], (handle, cap, codes)
        if codes[0][0]:                                     # it ended (and is closed)
            assert canon(acc[0]) == canon(acc[1]), (handle, acc)
            del self.iters[handle]

    def opened(self, handle: int) -> None:
        if handle > 0:
            assert handle not in self.iters
            self.iters[handle] = [[], []]

    def find(self, tid: int, iid: int, key: bytes, cap: int) -> None:
        t = _tid_of(tid)
        unique = 0 <= iid < len(INDEXES[t]) and (INDEXES[t][iid].unique or INDEXES[t][iid].name == "pk")
        if not (0 <= tid < len(TABLES) and 0 <= iid < len(INDEXES[t])) or unique or self.txs[1] is None:
            self.same("find", tid, iid, key, cap)
            return
        # a non-unique index: "the first row" with the key is in storage order; each side's
        # answer must be one of the rows with the key, found or not found alike
        got = [h.find(tid, iid, key, cap) for h in self.hosts]
        errs = [h.last_error for h in self.hosts]
        if got[0] == got[1]:
            if got[0][0] < 0 and (got[0][0] != ERR["BUFFER_TOO_SMALL"] or cap >= 4):
                assert errs[0] == errs[1], (tid, iid, key, cap, errs)
            return
        assert all(n > 0 or n == ERR["BUFFER_TOO_SMALL"] for n, _ in got), (tid, iid, key, cap, got, errs)
        keyv = key_codec(tid, iid).decode(key)
        table = self.txs[1].table(TABLES[t].name)
        rows = [CODECS[t].encode(table.get(rid)) for rid in table.seek(INDEXES[t][iid].name, keyv)]
        assert rows, (tid, iid, key, got)
        for n, data in got:
            if n > 0:
                assert data in rows and n == len(data) <= cap, (data, rows)
            else:
                assert any(len(row) > cap for row in rows), (got, rows, cap)
                if cap >= 4:
                    assert struct.unpack("<I", data)[0] in {len(row) for row in rows}, (got, rows)


def same_state(stores: list[Datastore]) -> None:
    for schema, codec in zip(TABLES, CODECS, strict=True):
        a, b = (d.table(schema.name) for d in stores)
        rows = [canon([codec.encode(r) for _, r in t.scan()]) for t in (a, b)]
        assert rows[0] == rows[1], schema.name
        assert a.sequence_state() == b.sequence_state(), schema.name
        a.check_invariants()


def _range_args(r: Reader) -> tuple[int, int, bytes, bytes, int]:
    tid, iid = r.pick(((0, 1), (0, 1), (2, 1), (2, 2), (2, 2), (0, 0), (1, 0), (2, 0), (0, 2), (2, 3)))
    fb, kb = r.byte(), r.byte()
    klo, khi = kb & 3, (kb >> 2) & 3
    flags = (fb & 0x0F) | (klo << 8) | (khi << 16)
    if fb & 0x10 and fb & 0x20:
        flags |= r.pick((1 << 4, 1 << 7, 1 << 24, 1 << 30, 5 << 8))     # unknown bits, wide bounds
    t = _tid_of(tid)
    width = len(INDEXES[t][iid].columns) if iid < len(INDEXES[t]) else 1
    lo = _key(r, tid, iid, min(max(klo, 1), width))
    hi = _key(r, tid, iid, min(max(khi, 1), width))
    if fb & 0x40:
        lo = damaged(r, lo)
    if fb & 0x80:
        hi = damaged(r, hi)
    return tid, iid, lo, hi, flags


def _handle(r: Reader, pair: Pair) -> int:
    b = r.byte()
    if b < 200 and pair.iters:
        return sorted(pair.iters)[b % len(pair.iters)]
    return (0, 1, 2, 99, -1, 2**31 - 1, pair.hosts[1]._next_iter - 1, 3)[b % 8]


def _op(r: Reader, pair: Pair, op: int) -> None:
    if op in (INSERT, UPDATE):
        tid = r.pick(TIDS)
        pair.same("insert" if op == INSERT else "update", tid, _row(r, tid))
    elif op in (DELETE, SEEK, FIND):
        tid, iid = r.pick(TIDS), r.pick(IIDS)
        key = damaged(r, _key(r, tid, iid))
        if op == DELETE:
            pair.same("delete", tid, iid, key)
        elif op == SEEK:
            pair.opened(pair.same("seek", tid, iid, key))
        else:
            pair.find(tid, iid, key, r.pick(CAPS))
    elif op == RANGE:
        pair.opened(pair.same("range", *_range_args(r)))
    elif op == SCAN:
        pair.opened(pair.same("scan", r.pick(TIDS)))
    elif op == NEXT:
        handle = _handle(r, pair)
        b = r.byte()
        pair.next(handle, BIG if b % 2 else CAPS[(b >> 1) % len(CAPS)], drain=bool(b % 2 == 0))
    elif op == CLOSE:
        handle = _handle(r, pair)
        pair.same("iter_close", handle)
        pair.iters.pop(handle, None)
    elif op == TABLE_ID:
        pair.same("table_id", r.pick(TABLE_NAMES))
    elif op == INDEX_ID:
        pair.same("index_id", r.pick(TIDS), r.pick(INDEX_NAMES))
    elif op == LOG:
        level = r.pick((0, 1, 2, 3, 4, 5, -1, 255))
        message = r.take(r.byte() % 24)
        for h in pair.hosts:
            h.log(level, message)
        assert pair.hosts[0].recent_logs[-1] == pair.hosts[1].recent_logs[-1]
    elif op == CONTEXT:
        a, b = ((h.sender, h.connection_id, h.timestamp, h.random_seed,
                 None if pair.errors_differ else h.last_error) for h in pair.hosts)
        assert a == b, (a, b)


def TestOneInput(data: bytes) -> None:
    r = Reader(data)
    rows, size = LIMITS[r.byte() % len(LIMITS)]
    pair = Pair(Limits(max_rows_per_batch=rows, max_row_bytes=size))
    pair.begin(r)
    try:
        for _ in range(MAX_OPS):
            if r.done:
                break
            op = r.byte() % NOPS
            if op == END:
                b = r.byte()
                in_call = pair.txs[0] is not None
                if in_call:
                    pair.end(commit=bool(b & 1), again=r if b & 2 == 0 else None)
                else:
                    pair.begin(r)
            else:
                _op(r, pair, op)
        pair.end(commit=True, again=None)
    finally:
        for tx in pair.txs:
            if tx is not None and tx.is_open:
                tx.rollback()


instrument_module(globals(), __name__ == "__main__")


def main() -> None:
    fuzz(TestOneInput)


if __name__ == "__main__":
    main()
