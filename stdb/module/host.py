"""The Python side of the "stdb" imports (docs/abi.md): what a reducer may do to its tables.

stdb/module/_wasm.pyx reads and writes the module's memory and calls these methods with
plain ints and bytes.  Every method answers a problem with a negative ABI code and keeps
the message for ``error_detail``; it never lets a bad row or key change anything.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from stdb._core.codec import RowCodec
from stdb.errors import ConstraintError, DataError
from stdb.module.describe import ModuleSchema
from stdb.storage.datastore import Transaction

__all__ = ["ModuleHost", "Limits", "ERR", "error_name"]

ERR = {
    "NO_SUCH_TABLE": -1, "NO_SUCH_INDEX": -2, "BAD_ROW": -3, "UNIQUE_VIOLATION": -4,
    "NO_SUCH_ITER": -5, "BUFFER_TOO_SMALL": -6, "ROW_TOO_LARGE": -7, "WRONG_INDEX_KIND": -8,
    "BAD_ARGUMENT": -9, "NO_TRANSACTION": -10, "TOO_MANY_ITERS": -11,
}
MAX_ITERS = 1024
LEVELS = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO, 3: logging.DEBUG, 4: logging.DEBUG}
LEVEL_NAMES = {0: "error", 1: "warn", 2: "info", 3: "debug", 4: "trace"}
_U32 = struct.Struct("<I")


@dataclass
class Limits:
    """Per-call limits of a reducer (docs/abi.md, "Limits")."""

    fuel: int = 1_000_000_000           # instruction budget
    time: float = 1.0                   # seconds of wall-clock time (epoch interruption)
    memory_bytes: int = 64 << 20        # linear memory cap
    max_row_bytes: int = 1 << 20
    max_rows_per_batch: int = 1024


class _Fail(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = ERR[code]


def call_seed(timestamp: int, sender: bytes, reducer: str) -> int:
    """A reducer call's ``random_seed``: the same call (time, caller, reducer) gives the same seed."""
    return int.from_bytes(hashlib.blake2b(timestamp.to_bytes(8, "little") + sender + reducer.encode(),
                                          digest_size=8).digest(), "little", signed=True)


class _Iter:
    __slots__ = ("tid", "rowids", "pos", "rows")

    def __init__(self, tid: int, rowids: list[int]) -> None:
        self.tid = tid
        self.rowids: list[int] | None = rowids
        self.pos = 0
        self.rows: list[bytes] | None = None    # encoded rows, once the table was written


class _TableInfo:
    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self.name = schema.name
        self.codec = RowCodec(schema.name, list(schema.column_names), [t.name for t in schema.column_types])
        self.indexes = list(schema.all_indexes())
        self.index_ids = {d.name: i for i, d in enumerate(self.indexes)}
        self.has_auto_inc = any(c.auto_inc for c in schema.columns)
        self.pk_cols = [schema.column_index(c) for c in schema.primary_key]
        self._key_codecs: dict[tuple[int, int], RowCodec] = {}

    def key_codec(self, index: int, k: int) -> RowCodec:
        c = self._key_codecs.get((index, k))
        if c is None:
            d = self.indexes[index]
            cols = list(d.columns[:k])
            types = [self.schema.column_types[self.schema.column_index(n)].name for n in cols]
            c = self._key_codecs[(index, k)] = RowCodec(f"{self.name}.{d.name}", cols, types)
        return c


class ModuleHost:
    """The imports of one published module.  Per-call state (transaction, caller, time) is
    set by ``begin_call`` and cleared by ``end_call``."""

    def __init__(self, schema: ModuleSchema | None, limits: Limits, logger: logging.Logger,
                 sink: Callable[[dict], None] | None = None) -> None:
        self.limits = limits
        self.logger = logger
        self.sink = sink                   # also told of every log record (the database's log ring)
        self.tables = [_TableInfo(t) for t in (schema.tables if schema else ())]
        self.table_ids = {t.name: i for i, t in enumerate(self.tables)}
        self.recent_logs: deque[dict] = deque(maxlen=1000)
        self.tx: Transaction | None = None
        self.reducer = ""
        self.sender = bytes(32)
        self.connection_id = bytes(16)
        self.timestamp = 0
        self._seed: int | None = 0
        self.last_error = b""
        self._iters: dict[int, _Iter] = {}
        self._next_iter = 1

    # ---- per call

    def begin_call(self, tx: Transaction, reducer: str, sender: bytes, connection_id: bytes,
                   timestamp: int, seed: int | None = None) -> None:
        """``seed``: the call's ``random_seed``; None derives it from the call when the module
        first asks (most reducers never do, and the hash is ~2 µs)."""
        self.tx = tx
        self.reducer = reducer
        self.sender = sender
        self.connection_id = connection_id
        self.timestamp = timestamp
        self._seed = seed
        self.last_error = b""
        self._iters.clear()
        self._next_iter = 1

    @property
    def random_seed(self) -> int:
        if self._seed is None:
            self._seed = call_seed(self.timestamp, self.sender, self.reducer)
        return self._seed

    def end_call(self) -> None:
        self.tx = None
        self._iters.clear()
        self.last_error = b""

    # ---- plumbing

    def _guard(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except _Fail as e:
            self.last_error = str(e).encode()
            return e.code
        except ConstraintError as e:
            self.last_error = e.detail.encode()
            return ERR["UNIQUE_VIOLATION"]
        except DataError as e:
            self.last_error = e.detail.encode()
            return ERR["BAD_ROW"]

    def _tx(self) -> Transaction:
        if self.tx is None:
            raise _Fail("NO_TRANSACTION", "table imports work only inside a reducer call")
        return self.tx

    def _table(self, tid: int) -> _TableInfo:
        if not 0 <= tid < len(self.tables):
            raise _Fail("NO_SUCH_TABLE", f"no table with id {tid}")
        return self.tables[tid]

    def _index(self, info: _TableInfo, iid: int) -> int:
        if not 0 <= iid < len(info.indexes):
            raise _Fail("NO_SUCH_INDEX", f"table '{info.name}' has no index with id {iid}")
        return iid

    def _row(self, info: _TableInfo, data: bytes) -> tuple:
        if len(data) > self.limits.max_row_bytes:
            raise _Fail("ROW_TOO_LARGE", f"table '{info.name}': a row of {len(data)} bytes "
                        f"(at most {self.limits.max_row_bytes})")
        return info.codec.decode(data)

    def _key(self, info: _TableInfo, iid: int, data: bytes, k: int) -> tuple:
        return info.key_codec(iid, k).decode(data)

    def _new_iter(self, tid: int, rowids: list[int]) -> int:
        if len(self._iters) >= MAX_ITERS:
            raise _Fail("TOO_MANY_ITERS", f"more than {MAX_ITERS} open iterators in one call")
        h = self._next_iter
        self._next_iter += 1
        self._iters[h] = _Iter(tid, rowids)
        return h

    def _before_write(self, tid: int, info: _TableInfo, table: Any) -> None:
        """Iterators see the rows as they were when created: copy what they still have to
        return before the table changes (copy on write)."""
        for it in self._iters.values():
            if it.tid == tid and it.rows is None and it.rowids is not None:
                enc = info.codec.encode
                it.rows = [enc(table.get(r)) for r in it.rowids[it.pos:]]
                it.rowids = None
                it.pos = 0

    # ---- names

    def table_id(self, name: bytes) -> int:
        tid = self.table_ids.get(name.decode("utf-8", "replace"))
        if tid is None:
            self.last_error = b"no table named " + name
            return ERR["NO_SUCH_TABLE"]
        return tid

    def index_id(self, tid: int, name: bytes) -> int:
        def go() -> int:
            info = self._table(tid)
            iid = info.index_ids.get(name.decode("utf-8", "replace"))
            if iid is None:
                raise _Fail("NO_SUCH_INDEX", f"table '{info.name}' has no index named {name!r}")
            return iid
        return self._guard(go)

    # ---- writes

    def insert(self, tid: int, data: bytes) -> tuple[int, bytes | None]:
        out: list[bytes | None] = [None]

        def go() -> int:
            tx = self._tx()
            info = self._table(tid)
            row = self._row(info, data)
            table = tx.table(info.name)
            self._before_write(tid, info, table)
            stored = tx.insert(info.name, row)
            if info.has_auto_inc:
                out[0] = info.codec.encode(stored)
            return 0
        return self._guard(go), out[0]

    def update(self, tid: int, data: bytes) -> tuple[int, None]:
        return self._guard(self._update, tid, data), None

    def _update(self, tid: int, data: bytes) -> int:
        tx = self._tx()
        info = self._table(tid)
        if not info.pk_cols:
            raise _Fail("BAD_ARGUMENT", f"table '{info.name}' has no primary key to update by")
        row = self._row(info, data)
        table = tx.table(info.name)
        ids = table.seek("pk", tuple([row[i] for i in info.pk_cols]))
        if not ids:
            return 0
        self._before_write(tid, info, table)
        tx.update_rowid(info.name, ids[0], row)
        return 1

    def _lookup(self, tid: int, iid: int, key: bytes) -> tuple[_TableInfo, Any, list[int]]:
        """(the table's info, the transaction's table, the row ids whose index key is ``key``)."""
        tx = self._tx()
        info = self._table(tid)
        self._index(info, iid)
        k = self._key(info, iid, key, len(info.indexes[iid].columns))
        table = tx.table(info.name)
        return info, table, table.seek(info.indexes[iid].name, k)

    def delete(self, tid: int, iid: int, key: bytes) -> int:
        def go() -> int:
            info, table, rowids = self._lookup(tid, iid, key)
            if rowids:
                self._before_write(tid, info, table)
            tx = self._tx()
            for r in rowids:
                tx.delete_rowid(info.name, r)
            return len(rowids)
        return self._guard(go)

    # ---- reads

    def seek(self, tid: int, iid: int, key: bytes) -> int:
        return self._guard(lambda: self._new_iter(tid, self._lookup(tid, iid, key)[2]))

    def find(self, tid: int, iid: int, key: bytes, cap: int) -> tuple[int, bytes | None]:
        """The first row whose index key equals ``key`` (the only one for the primary key or a
        unique index), as its row bytes: (its length, the bytes); (0, None) when there is none.
        What ``seek`` + ``iter_next`` + ``iter_close`` return for it, in one import."""
        r = self._guard(self._find, tid, iid, key, cap)
        return (r, None) if type(r) is int else r

    def _find(self, tid: int, iid: int, key: bytes, cap: int) -> tuple[int, bytes | None]:
        info, table, rowids = self._lookup(tid, iid, key)
        if not rowids:
            return 0, None
        row = info.codec.encode(table.get(rowids[0]))
        if len(row) > cap:
            self.last_error = f"the row needs {len(row)} bytes, the buffer has {cap}".encode()
            return ERR["BUFFER_TOO_SMALL"], _U32.pack(len(row)) if cap >= 4 else None
        return len(row), row

    def range(self, tid: int, iid: int, lo: bytes, hi: bytes, flags: int) -> int:
        def go() -> int:
            tx = self._tx()
            info = self._table(tid)
            self._index(info, iid)
            d = info.indexes[iid]
            if d.kind != "btree":
                raise _Fail("WRONG_INDEX_KIND", f"index '{d.name}' of table '{info.name}' is a hash "
                            "index; range needs a btree index")
            if flags & ~0xFFFF0F:
                raise _Fail("BAD_ARGUMENT", f"unknown range flags 0x{flags:x}")
            bounds: list[tuple | None] = []
            for present, k, data in ((flags & 1, (flags >> 8) & 0xFF, lo),
                                     (flags & 4, (flags >> 16) & 0xFF, hi)):
                if not present:
                    bounds.append(None)
                    continue
                if not 1 <= k <= len(d.columns):
                    raise _Fail("BAD_ARGUMENT", f"a bound of {k} columns on index '{d.name}' "
                                f"({len(d.columns)} columns)")
                bounds.append(self._key(info, iid, data, k))
            rowids = tx.table(info.name).range(d.name, bounds[0], bounds[1], bool(flags & 2), bool(flags & 8))
            return self._new_iter(tid, rowids)
        return self._guard(go)

    def scan(self, tid: int) -> int:
        def go() -> int:
            tx = self._tx()
            info = self._table(tid)
            return self._new_iter(tid, tx.table(info.name).rowids())
        return self._guard(go)

    def iter_next(self, h: int, cap: int) -> tuple[int, bytes | None]:
        it = self._iters.get(h)
        if it is None:
            self.last_error = f"no open iterator {h}".encode()
            return ERR["NO_SUCH_ITER"], None
        info = self.tables[it.tid]
        parts: list[bytes] = []
        used = 0
        n = 0
        limit = self.limits.max_rows_per_batch
        # rows copied before a write, or row ids to read and encode now
        src: list[Any] = it.rows if it.rows is not None else cast(list, it.rowids)
        encode = None
        if it.rows is None:
            assert self.tx is not None
            encode, table = info.codec.encode, self.tx.table(info.name)
        while it.pos < len(src) and n < limit:
            row = cast(bytes, src[it.pos]) if encode is None else encode(table.get(src[it.pos]))
            need = 4 + len(row)
            if used + need > cap:
                if n == 0:
                    self.last_error = f"the next row needs {need} bytes, the buffer has {cap}".encode()
                    return ERR["BUFFER_TOO_SMALL"], _U32.pack(need) if cap >= 4 else None
                break
            parts.append(_U32.pack(len(row)))
            parts.append(row)
            used += need
            n += 1
            it.pos += 1
        if n == 0:
            del self._iters[h]
            return 0, None
        return used, b"".join(parts)

    def iter_close(self, h: int) -> int:
        if self._iters.pop(h, None) is None:
            self.last_error = f"no open iterator {h}".encode()
            return ERR["NO_SUCH_ITER"]
        return 0

    # ---- context

    def log(self, level: int, message: bytes) -> None:
        # the native host keeps a line's level in one byte: a level outside 0..255 is 255 there
        level = level if 0 <= level <= 255 else 255
        text = message.decode("utf-8", "replace")
        entry = {"ts": self.timestamp, "level": LEVEL_NAMES.get(level, str(level)),
                 "reducer": self.reducer, "message": text}
        self.recent_logs.append(entry)
        if self.sink is not None:
            self.sink(entry)
        self.logger.log(LEVELS.get(level, logging.INFO), "[%s] %s", self.reducer or "-", text)


def error_name(code: int) -> str:
    for k, v in ERR.items():
        if v == code:
            return k
    return str(code)

