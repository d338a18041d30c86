"""The pure-Python reference twin of ``stdb._core.table.Table``.

Same API, same checks, same errors, same results — written as plainly as possible so that
it can serve as the oracle for the Cython engine (tests/test_table.py runs every test on
both; tests/test_stateful.py compares them on random operation sequences).  It keeps rows
in a dict and answers every index question by scanning: slow, and obviously right.

Key order follows docs/row-format.md: None before any value; -0.0 equals 0.0; every NaN is
one value above +inf; strings by their UTF-8 bytes; arrays lexicographically.  Row ids are
not comparable with the Cython table's, and ``scan`` order may differ.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

from stdb._core.codec import ColumnType, RowCodec
from stdb._core.schema import TableSchema
from stdb.errors import ConstraintError, DataError, InternalError, SchemaError

__all__ = ["Table", "Matcher"]

Row = tuple
_OPS = ("==", "!=", "<", "<=", ">", ">=")
_INT_MAX = {"i8": 2**7 - 1, "i16": 2**15 - 1, "i32": 2**31 - 1, "i64": 2**63 - 1,
            "u8": 2**8 - 1, "u16": 2**16 - 1, "u32": 2**32 - 1, "u64": 2**64 - 1}


def sort_key(t: ColumnType, v: Any) -> Any:
    """A Python value whose ordering and equality are the index order of ``v``."""
    name = t.name
    if t.inner is not None and name.startswith("option<"):
        return (0,) if v is None else (1, sort_key(t.inner, v))
    if t.inner is not None:  # array<T>
        return tuple(sort_key(t.inner, x) for x in v)
    if name in ("f32", "f64"):
        return (1, 0.0) if math.isnan(v) else (0, v + 0.0)   # -0.0 + 0.0 == 0.0
    if name == "string":
        return v.encode("utf-8")
    if name == "bool":
        return int(v)
    return v


class Table:
    def __init__(self, schema: TableSchema) -> None:
        self.schema = schema
        self.name = schema.name
        self.codec = RowCodec(schema.name, schema.column_names, schema.column_types)
        self._rows: dict[int, Row] = {}
        self._next_id = 0
        self._defs = list(schema.all_indexes())
        self._by_name = {d.name: d for d in self._defs}
        self._cols = {d.name: [schema.column_index(c) for c in d.columns] for d in self._defs}
        # unique index name -> {key: rowid}
        self._uniq: dict[str, dict[tuple, int]] = {d.name: {} for d in self._defs if d.unique}
        self._seq_cols = [i for i, c in enumerate(schema.columns) if c.auto_inc]
        self._seq_next = [1] * len(self._seq_cols)

    # ---- keys

    def _key(self, index: str, row: Row) -> tuple:
        return tuple(sort_key(self.codec.types[c], row[c]) for c in self._cols[index])

    def _index(self, name: str):
        if name not in self._by_name:
            raise SchemaError(f"table '{self.name}' has no index '{name}'")
        return self._by_name[name]

    def _probe(self, index: str, key: Any, allow_prefix: bool) -> tuple:
        d = self._index(index)
        cols = self._cols[index]
        if not isinstance(key, tuple):
            key = (key,)
        if not key or len(key) > len(cols) or (not allow_prefix and len(key) != len(cols)):
            raise DataError(f"table '{self.name}', index '{index}': a key has "
                            f"{'1 to ' if allow_prefix else ''}{len(cols)} values, got {len(key)}")
        out = []
        for j, v in enumerate(key):
            t = self.codec.types[cols[j]]
            try:
                out.append(sort_key(t, t.check(v)))
            except DataError as e:
                raise DataError(f"table '{self.name}', index '{index}', column '{d.columns[j]}': "
                                f"{e.detail}") from None
        return tuple(out)

    def _check_unique(self, row: Row, exclude: int | None) -> None:
        for name, keys in self._uniq.items():
            owner = keys.get(self._key(name, row))
            if owner is not None and owner != exclude:
                d = self._by_name[name]
                what = "primary key" if name == "pk" else f"unique index '{name}'"
                key = ", ".join(repr(row[c]) for c in self._cols[name])
                key = key if len(key) <= 80 else key[:77] + "..."
                raise ConstraintError(f"table '{self.name}': {what} ({', '.join(d.columns)}) already "
                                      f"has a row with key ({key})")

    def _fill_sequences(self, row: Row, assign: bool) -> tuple[Row, list[int]]:
        vals = list(row)
        nxt = list(self._seq_next)
        for k, c in enumerate(self._seq_cols):
            if assign and vals[c] == 0:
                top = _INT_MAX[self.codec.types[c].name]
                if nxt[k] > top:
                    raise DataError(f"table '{self.name}', column '{self.schema.columns[c].name}': "
                                    f"auto-increment sequence is exhausted at {top}")
                vals[c] = nxt[k]
                nxt[k] += 1
            elif vals[c] >= nxt[k]:
                nxt[k] = vals[c] + 1
        return tuple(vals), nxt

    # ---- reads

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, rowid: int) -> Row:
        if rowid not in self._rows:
            raise InternalError(f"table '{self.name}': no row at id {rowid}")
        return self._rows[rowid]

    def contains(self, rowid: int) -> bool:
        return rowid in self._rows

    def scan(self) -> Iterator[tuple[int, Row]]:
        return iter(list(self._rows.items()))

    def frozen(self) -> TableCopy:
        return TableCopy(self)

    def framed_chunks(self, limit: int) -> tuple[list[bytes], int]:
        return framed_chunks(self.codec, (r for _, r in self.scan()), limit)

    def load_framed(self, data: bytes | memoryview) -> int:
        """Insert the rows of a snapshot chunk exactly as given (like ``load``)."""
        mv = memoryview(data)
        pos = n = 0
        while pos < len(mv):
            if len(mv) - pos < 4:
                raise DataError(f"table '{self.name}': a snapshot chunk ends inside a row length")
            ln = int.from_bytes(mv[pos:pos + 4], "little")
            if ln > len(mv) - pos - 4:
                raise DataError(f"table '{self.name}': a snapshot chunk ends inside a row")
            self._insert(self.codec.decode(mv[pos + 4:pos + 4 + ln]), assign=False)
            pos += 4 + ln
            n += 1
        return n

    def rowids(self) -> list[int]:
        return list(self._rows)

    def rows(self, rowids: Sequence[int]) -> list[Row]:
        return [self.get(r) for r in rowids]

    def seek(self, index: str, key: Any) -> list[int]:
        d = self._index(index)
        k = self._probe(index, key, d.kind == "btree")
        if d.unique and len(k) == len(d.columns):
            rid = self._uniq[index].get(k)
            return [] if rid is None else [rid]
        hits = [(self._key(index, row), rid) for rid, row in self._rows.items()
                if self._key(index, row)[:len(k)] == k]
        return [rid for _, rid in sorted(hits)]

    def range(self, index: str, lo: Any = None, hi: Any = None, lo_inclusive: bool = True,
              hi_inclusive: bool = True, limit: int = -1) -> list[int]:
        d = self._index(index)
        if d.kind != "btree":
            raise SchemaError(f"table '{self.name}': index '{index}' is a hash index; "
                              "range scans need a btree index")
        lk = None if lo is None else self._probe(index, lo, True)
        hk = None if hi is None else self._probe(index, hi, True)
        out = []
        for rid, row in sorted(self._rows.items(), key=lambda it: (self._key(index, it[1]), it[0])):
            key = self._key(index, row)
            if lk is not None:
                p = key[:len(lk)]
                if p < lk or (p == lk and not lo_inclusive):
                    continue
            if hk is not None:
                p = key[:len(hk)]
                if p > hk or (p == hk and not hi_inclusive):
                    continue
            out.append(rid)
        return out if limit < 0 else out[:limit]

    def seek_count(self, index: str, key: Any, limit: int = -1) -> int:
        n = len(self.seek(index, key))
        return n if limit < 0 else min(n, limit)

    def range_count(self, index: str, lo: Any = None, hi: Any = None, lo_inclusive: bool = True,
                    hi_inclusive: bool = True, limit: int = -1) -> int:
        return len(self.range(index, lo, hi, lo_inclusive, hi_inclusive, limit))

    def key_runs(self, index: str, sample: int = 4096) -> tuple[int, int]:
        self._index(index)
        keys = sorted(self._key(index, row) for row in self._rows.values())[:max(sample, 0)]
        return len(keys), len(set(keys))

    def scan_where(self, column: str, op: str, value: Any) -> list[int]:
        col = self.schema.column_index(column)
        if op not in _OPS:
            raise DataError(f"unknown comparison {op!r}")
        try:
            value = self.codec.types[col].check(value)
        except DataError as e:
            raise DataError(f"table '{self.name}', column '{column}': {e.detail}") from None
        out = []
        for rid, row in self._rows.items():
            v = row[col]
            if op == "==":
                hit = v == value
            elif op == "!=":
                hit = v != value
            elif v is None or value is None:
                hit = False
            else:
                hit = {"<": v < value, "<=": v <= value, ">": v > value, ">=": v >= value}[op]
            if hit:
                out.append(rid)
        return out

    def find_row(self, row: Sequence[Any]) -> int | None:
        r = self.codec.check_row(row)
        enc = self.codec.encode
        for rid, other in self._rows.items():
            if other == r or enc(other) == enc(r):        # NaN != NaN: compare encodings too
                return rid
        return None

    # ---- writes

    def _put(self, rowid: int, row: Row) -> int:
        self._rows[rowid] = row
        for name, keys in self._uniq.items():
            keys[self._key(name, row)] = rowid
        return rowid

    def _drop(self, rowid: int) -> Row:
        row = self._rows.pop(rowid)
        for name, keys in self._uniq.items():
            del keys[self._key(name, row)]
        return row

    def insert(self, row: Sequence[Any]) -> int:
        return self._insert(self.codec.check_row(row), assign=True)

    def load(self, row: Sequence[Any]) -> int:
        return self._insert(self.codec.check_row(row), assign=False)

    def _insert(self, r: Row, assign: bool) -> int:
        r, nxt = self._fill_sequences(r, assign)
        self._check_unique(r, None)
        rowid = self._next_id
        self._next_id += 1
        self._put(rowid, r)
        self._seq_next = nxt
        return rowid

    def insert_at(self, rowid: int, row: Sequence[Any]) -> int:
        r = self.codec.check_row(row)
        if rowid in self._rows:
            raise InternalError(f"table '{self.name}': row id {rowid} is not free")
        self._check_unique(r, None)
        self._next_id = max(self._next_id, rowid + 1)
        return self._put(rowid, r)

    def delete(self, rowid: int) -> Row:
        self.get(rowid)
        return self._drop(rowid)

    def update(self, rowid: int, row: Sequence[Any]) -> int:
        self.get(rowid)
        r, nxt = self._fill_sequences(self.codec.check_row(row), False)
        self._check_unique(r, rowid)
        self._drop(rowid)
        self._put(rowid, r)
        self._seq_next = nxt
        return rowid

    def apply_encoded(self, deletes: list[bytes], inserts: list[bytes]) -> int:
        for raw in deletes:
            row = self.codec.decode(raw)
            rid = self.find_row(row)
            if rid is None:
                raise ConstraintError(f"table '{self.name}': the row to delete is not there: {row!r}")
            self.delete(rid)
        for raw in inserts:
            self._insert(self.codec.decode(raw), assign=False)
        return len(deletes) + len(inserts)

    def clear(self) -> None:
        for rowid in list(self._rows):
            self._drop(rowid)

    # ---- sequences, stats

    def sequence_state(self) -> tuple[int, ...]:
        return tuple(self._seq_next)

    def restore_sequences(self, state: Sequence[int]) -> None:
        if len(state) != len(self._seq_next):
            raise InternalError(f"table '{self.name}': sequence state has the wrong length")
        self._seq_next = list(state)

    def memory_bytes(self) -> int:
        return 0

    def stats(self) -> dict[str, Any]:
        return {"rows": len(self._rows)}

    def check_invariants(self) -> bool:
        for name, keys in self._uniq.items():
            want = {self._key(name, r): rid for rid, r in self._rows.items()}
            if want != keys or len(want) != len(self._rows):
                raise InternalError(f"table '{self.name}': unique index '{name}' disagrees with the rows")
        return True


class Matcher:
    """The pure-Python twin of ``stdb._core.matcher.Matcher``: every subscription of a table
    is checked against every changed row (anchor and residual both tested plainly).  The
    matcher tests' oracle and the matcher benchmark's naive baseline."""

    def __init__(self) -> None:
        self._subs: dict[int, tuple[str, Any, Any]] = {}     # sid -> (table, anchor test, residual)

    def __len__(self) -> int:
        return len(self._subs)

    def __contains__(self, sid: object) -> bool:
        return sid in self._subs

    def _add(self, sid: int, table: str, anchor: Any, residual: Any) -> None:
        if sid in self._subs:
            raise InternalError(f"subscription {sid} is already in the matcher")
        self._subs[sid] = (table, anchor, residual)

    def add_every(self, sid: int, table: str, residual: Any) -> None:
        self._add(sid, table, lambda row: True, residual)

    def add_eq(self, sid: int, table: str, column: int, values: Sequence[Any], residual: Any) -> None:
        vals = list(values)
        self._add(sid, table, lambda row: any(row[column] == v for v in vals), residual)

    def add_range(self, sid: int, table: str, column: int, lo: Any, lo_incl: bool, hi: Any,
                  hi_incl: bool, residual: Any) -> None:
        if lo is None and hi is None:
            raise InternalError("a range anchor needs at least one bound")

        def inside(row: Row) -> bool:
            x = row[column]
            if x is None:
                return False
            if lo is not None and not (lo <= x if lo_incl else lo < x):
                return False
            return hi is None or (x <= hi if hi_incl else x < hi)
        self._add(sid, table, inside, residual)

    def remove(self, sid: int) -> None:
        if self._subs.pop(sid, None) is None:
            raise InternalError(f"subscription {sid} is not in the matcher")

    def match(self, table: str, rows: list[Row]) -> dict[int, list[Row]]:
        out: dict[int, list[Row]] = {}
        for sid, (t, anchor, residual) in self._subs.items():
            if t != table:
                continue
            hit = [r for r in rows if anchor(r) and (residual is None or residual(r))]
            if hit:
                out[sid] = hit
        return out


class TableCopy:
    """The rows of a table at one moment (the twin of the Cython ``TableCopy``)."""

    def __init__(self, t: Table) -> None:
        self.schema, self.name, self.codec = t.schema, t.name, t.codec
        self._rows = list(t.scan())
        self._seq = t.sequence_state()

    def __len__(self) -> int:
        return len(self._rows)

    def scan(self) -> Iterator[tuple[int, Row]]:
        return iter(self._rows)

    def sequence_state(self) -> tuple[int, ...]:
        return self._seq

    def framed_chunks(self, limit: int) -> tuple[list[bytes], int]:
        return framed_chunks(self.codec, (r for _, r in self._rows), limit)


def framed_chunks(codec: Any, rows: Iterator[Row], limit: int) -> tuple[list[bytes], int]:
    """(chunks, rows): each row encoded after its length (u32 little-endian), cut into chunks
    once one reaches ``limit`` bytes (the Cython tables' ``framed_chunks``)."""
    chunks: list[bytes] = []
    buf: list[bytes] = []
    size = n = 0
    for row in rows:
        data = codec.encode(row)
        buf.append(len(data).to_bytes(4, "little"))
        buf.append(data)
        size += 4 + len(data)
        n += 1
        if size >= limit:
            chunks.append(b"".join(buf))
            buf, size = [], 0
    if buf:
        chunks.append(b"".join(buf))
    return chunks, n
