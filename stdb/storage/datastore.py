"""The datastore: named tables and single-writer transactions over them.

Design (docs/architecture.md, "Transactions"): a write transaction changes the tables in
place and remembers, for every row id it touches, the row that was there when it began
(or that the slot was empty).  That one map gives everything:

* reads inside the transaction see its own writes (they read the tables);
* ``commit`` turns the map into a TxDelta: for each touched row id, the original row (if
  any) is deleted and the current row (if any) inserted, with identical pairs cancelled;
* ``rollback`` deletes the current rows of touched ids, then puts every original row
  back at its original id, and restores the auto-increment sequences.

There is one writer at a time (reducers run serially per database) and nothing reads
committed state while a transaction is open, so in-place writes are never seen half-done.
Every operation checks its input before changing anything: a refused insert or update
(DataError, ConstraintError) leaves the transaction as it was and it can still commit or
roll back.
"""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from stdb._core.codec import read_framed
from stdb._core.schema import TableSchema
from stdb._core.table import Table as NativeTable
from stdb._core.txn import NativeTx
from stdb.errors import ConstraintError, SchemaError, TransactionError

__all__ = ["Datastore", "Transaction", "TxDelta", "TableDelta"]

Row = tuple
_EMPTY = object()
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_II = struct.Struct("<II")


class TableDelta:
    """What one transaction did to one table: rows deleted and rows inserted.

    An update is a delete of the old row plus an insert of the new one.  ``encoded`` is the
    rows' row-codec encodings (deletes, inserts): what the commit log writes.  A delta made by
    a native transaction holds only those bytes and decodes the rows when first asked.
    """

    __slots__ = ("_deletes", "_inserts", "_encoded", "_lazy")

    def __init__(self, deletes: list[Row] | None = None, inserts: list[Row] | None = None,
                 encoded: tuple[list[bytes], list[bytes]] | None = None) -> None:
        self._deletes: list[Row] | None = [] if deletes is None else deletes
        self._inserts: list[Row] | None = [] if inserts is None else inserts
        self._encoded = encoded
        self._lazy: tuple[Any, bytes, int, int, int] | None = None

    @classmethod
    def _framed(cls, codec: Any, data: bytes, pos: int, ndel: int, nins: int) -> TableDelta:
        """A delta whose rows are the ``ndel + nins`` framed rows (u32 length, row) at
        ``data[pos:]``, deletes first, decoded with ``codec`` when first asked."""
        d = cls.__new__(cls)
        d._deletes = d._inserts = None
        d._encoded = None
        d._lazy = (codec, data, pos, ndel, nins)
        return d

    def _unpack(self) -> None:
        assert self._lazy is not None
        codec, data, pos, nd, ni = self._lazy
        dk, pos = read_framed(data, pos, nd)
        ik, _ = read_framed(data, pos, ni)
        self._encoded = (dk, ik)
        decode = codec.decode
        self._deletes = [decode(r) for r in dk]
        self._inserts = [decode(r) for r in ik]
        self._lazy = None

    @property
    def deletes(self) -> list[Row]:
        if self._lazy is not None:
            self._unpack()
        assert self._deletes is not None
        return self._deletes

    @property
    def inserts(self) -> list[Row]:
        if self._lazy is not None:
            self._unpack()
        assert self._inserts is not None
        return self._inserts

    @property
    def encoded(self) -> tuple[list[bytes], list[bytes]] | None:
        if self._lazy is not None:
            self._unpack()
        return self._encoded

    @property
    def counts(self) -> tuple[int, int]:
        """(deletes, inserts), without decoding anything."""
        if self._lazy is not None:
            return self._lazy[3], self._lazy[4]
        return len(self.deletes), len(self.inserts)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TableDelta):
            return NotImplemented
        return self.deletes == other.deletes and self.inserts == other.inserts

    def __repr__(self) -> str:
        return f"TableDelta(deletes={self.deletes!r}, inserts={self.inserts!r})"


class TxDelta:
    """The effect of a committed transaction, per table (tables it did not change are absent).

    A native transaction's delta is the changes of its log record (``changes``) and is turned
    into ``TableDelta`` objects only when ``tables`` is first read."""

    __slots__ = ("_tables", "_parts", "changes", "_rec")

    def __init__(self, tables: dict[str, TableDelta] | None = None) -> None:
        self._tables: dict[str, TableDelta] | None = {} if tables is None else tables
        self._parts: list[tuple[str, Any, int, int, int]] | None = None
        self.changes: bytes | None = None
        self._rec: tuple[bytes, int, int, Datastore] | None = None

    @classmethod
    def _native(cls, changes: bytes, parts: list[tuple[Any, int, int, int, int]]) -> TxDelta:
        d = cls.__new__(cls)
        d._tables = None
        d._parts = [(t.name, t.codec, rows, nd, ni) for t, _start, rows, nd, ni in parts]
        d.changes = changes
        d._rec = None
        return d

    @classmethod
    def _record(cls, record: bytes, changes_len: int, ntables: int, ds: Datastore) -> TxDelta:
        """The delta of a TX log record whose last ``changes_len`` bytes are its ``ntables``
        table sections (docs/log-format.md), decoded with ``ds``'s tables when first asked."""
        d = cls.__new__(cls)
        d._tables = None
        d._parts = None
        d.changes = None
        d._rec = (record, len(record) - changes_len, ntables, ds)
        return d

    def _parse(self) -> list[tuple[str, Any, int, int, int]]:
        if self._parts is None:
            assert self._rec is not None
            record, pos, n, ds = self._rec
            parts = []
            for _ in range(n):
                (ln,) = _U16.unpack_from(record, pos)
                name = record[pos + 2:pos + 2 + ln].decode("utf-8")
                nd, ni = _II.unpack_from(record, pos + 2 + ln)
                pos += 2 + ln + 8
                rows = pos
                for _ in range(nd + ni):
                    pos += 4 + _U32.unpack_from(record, pos)[0]
                parts.append((name, ds.table(name).codec, rows, nd, ni))
            self._parts = parts
            self.changes = record
            self._rec = None
        return self._parts

    @property
    def tables(self) -> dict[str, TableDelta]:
        if self._tables is None:
            assert self.changes is not None or self._rec is not None
            parts = self._parse()
            assert self.changes is not None
            self._tables = {name: TableDelta._framed(codec, self.changes, rows, nd, ni)
                            for name, codec, rows, nd, ni in parts}
        return self._tables

    def __bool__(self) -> bool:
        if self._tables is not None:
            return bool(self._tables)
        if self._rec is not None:
            return self._rec[2] > 0
        return bool(self._parts)

    @property
    def row_count(self) -> int:
        if self._tables is None:
            return sum(nd + ni for _, _, _, nd, ni in self._parse())
        return sum(sum(d.counts) for d in self._tables.values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TxDelta):
            return NotImplemented
        return self.tables == other.tables

    def __repr__(self) -> str:
        return f"TxDelta(tables={self.tables!r})"


class Datastore:
    """Tables by name, and the transactions that change them.

    ``table_factory`` builds a table from a TableSchema: the Cython engine by default, or
    ``stdb._core.reference.Table`` (the pure-Python twin) in tests.
    """

    def __init__(self, table_factory: Callable[[TableSchema], Any] | None = None) -> None:
        self._factory = table_factory or NativeTable
        # the native lane (stdb._core.txn) for native tables; the pure-Python write set for
        # the twin (stdb._core.reference)
        self.native = self._factory is NativeTable
        self._tables: dict[str, Any] = {}
        self._tx: Transaction | None = None
        # counts create / alter / drop: who caches table objects (the native host) rebinds
        self.generation = 0

    # ---- schema

    def create_table(self, schema: TableSchema) -> None:
        if not isinstance(schema, TableSchema):
            raise SchemaError(f"create_table needs a TableSchema, got {type(schema).__name__}")
        if self._tx is not None:
            raise TransactionError("cannot create a table while a transaction is open")
        if schema.name in self._tables:
            raise SchemaError(f"table '{schema.name}' already exists")
        self._tables[schema.name] = self._factory(schema)
        self.generation += 1

    def altered_table(self, schema: TableSchema) -> Any:
        """A copy of table ``schema.name`` under a new schema with the same columns (indexes
        and visibility may differ): every row at its row id, the sequences carried over.
        SchemaError if the columns differ, ConstraintError if a new unique index does not
        hold; the current table is never touched."""
        if not isinstance(schema, TableSchema):
            raise SchemaError(f"alter_table needs a TableSchema, got {type(schema).__name__}")
        old = self.table(schema.name)
        if old.schema.columns != schema.columns or old.schema.primary_key != schema.primary_key:
            raise SchemaError(f"table '{schema.name}': altering changes only indexes and visibility; "
                              "the columns and the primary key must stay the same")
        new = self._factory(schema)
        for rowid, row in old.scan():
            new.insert_at(rowid, row)
        new.restore_sequences(old.sequence_state())
        return new

    def alter_table(self, schema: TableSchema, table: Any = None) -> None:
        """Replace a table's schema (see ``altered_table``); ``table`` is its result if the
        caller built it already."""
        if self._tx is not None:
            raise TransactionError("cannot alter a table while a transaction is open")
        self._tables[schema.name] = table if table is not None else self.altered_table(schema)
        self.generation += 1

    def drop_table(self, name: str) -> None:
        if self._tx is not None:
            raise TransactionError("cannot drop a table while a transaction is open")
        self.table(name)
        del self._tables[name]
        self.generation += 1

    def table(self, name: str) -> Any:
        """The table object (committed state when no transaction is open)."""
        try:
            return self._tables[name]
        except KeyError:
            raise SchemaError(f"no table '{name}'",
                              hint="tables are " + (", ".join(sorted(self._tables)) or "none")) from None

    @property
    def table_names(self) -> list[str]:
        return list(self._tables)

    def schema(self, name: str) -> TableSchema:
        return self.table(name).schema

    # ---- transactions

    def begin(self, core: Any = None) -> Transaction:
        """Open the write transaction (one at a time).  ``core``: a native write set to reuse
        (the database's call path keeps one)."""
        if self._tx is not None:
            raise TransactionError("a transaction is already open on this datastore",
                                   hint="commit or roll back the open one first")
        self._tx = Transaction(self, core)
        return self._tx

    @property
    def in_transaction(self) -> bool:
        return self._tx is not None

    def _end(self, tx: Transaction) -> None:
        if self._tx is tx:
            self._tx = None

    # ---- committed reads (no transaction open)

    def _read_table(self, name: str) -> Any:
        if self._tx is not None:
            raise TransactionError("committed state is not readable while a transaction is open",
                                   hint="read through the transaction instead")
        return self.table(name)

    def scan(self, name: str) -> list[Row]:
        return [row for _, row in self._read_table(name).scan()]

    def count(self, name: str) -> int:
        return len(self._read_table(name))


class Transaction:
    """A write transaction; use as a context manager to commit on success, roll back on error.

    Over native tables the writes go through ``stdb._core.txn`` (the write set, the delta and
    the log record in C); over ``stdb._core.reference`` tables through ``_PyWriteSet``, the
    pure-Python twin of the same rules."""

    def __init__(self, store: Datastore, core: Any = None) -> None:
        self._store = store
        self._open = True
        if core is not None and not store.native:
            raise TransactionError("a native write set needs native tables")
        self._w: Any = core if core is not None else NativeTx() if store.native else _PyWriteSet()

    # ---- context manager

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._open:
            return
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def native(self) -> bool:
        """Whether this transaction's writes go through the native lane (stdb._core.txn)."""
        return self._store.native

    # ---- plumbing

    def _table(self, name: str) -> Any:
        if not self._open:
            raise TransactionError("this transaction has already ended")
        return self._store.table(name)

    def _pk_rowid(self, name: str, table: Any, key: Any) -> int | None:
        if not table.schema.primary_key:
            raise SchemaError(f"table '{name}' has no primary key",
                              hint="use delete_row / update_row with the whole row")
        ids = table.seek("pk", key)
        return ids[0] if ids else None

    # ---- writes

    def insert(self, name: str, row: Sequence[Any]) -> Row:
        """Insert a row and return it as stored (auto-increment columns given as 0 filled in)."""
        t = self._table(name)
        return self._w.insert(t, row)

    def delete(self, name: str, key: Any) -> Row:
        """Delete the row with this primary key and return it (ConstraintError if none)."""
        t = self._table(name)
        rowid = self._pk_rowid(name, t, key)
        if rowid is None:
            raise ConstraintError(f"table '{name}': no row with primary key {key!r} to delete")
        return self._w.delete_rowid(t, rowid)

    def delete_rowid(self, name: str, rowid: int) -> Row:
        """Delete the row stored at ``rowid`` (found through ``table(name)``) and return it."""
        t = self._table(name)
        if not t.contains(rowid):
            raise ConstraintError(f"table '{name}': no row at row id {rowid} to delete")
        return self._w.delete_rowid(t, rowid)

    def delete_row(self, name: str, row: Sequence[Any]) -> bool:
        """Delete one row equal to ``row``; False if there is none."""
        t = self._table(name)
        rowid = t.find_row(row)
        if rowid is None:
            return False
        self._w.delete_rowid(t, rowid)
        return True

    def update(self, name: str, row: Sequence[Any]) -> Row:
        """Replace the row with the same primary key; return the old row (ConstraintError if none)."""
        t = self._table(name)
        checked = t.codec.check_row(row)
        key = tuple(checked[t.schema.column_index(c)] for c in t.schema.primary_key) \
            if t.schema.primary_key else None
        rowid = self._pk_rowid(name, t, key)
        if rowid is None:
            raise ConstraintError(f"table '{name}': no row with primary key {key!r} to update")
        return self._w.update_rowid(t, rowid, checked)

    def update_rowid(self, name: str, rowid: int, row: Sequence[Any]) -> Row:
        """Replace the row stored at ``rowid`` (found through ``table(name)``, e.g. by its
        primary key) and return the old row; the new row must keep every unique key unique."""
        t = self._table(name)
        if not t.contains(rowid):
            raise ConstraintError(f"table '{name}': no row at row id {rowid} to update")
        return self._w.update_rowid(t, rowid, row)

    # ---- reads (see this transaction's writes)

    def table(self, name: str) -> Any:
        """The table itself, for reads by row id inside this transaction (they see its
        writes).  Write through the transaction's methods only, or rollback cannot undo it."""
        return self._table(name)

    def get(self, name: str, key: Any) -> Row | None:
        t = self._table(name)
        rowid = self._pk_rowid(name, t, key)
        return None if rowid is None else t.get(rowid)

    def seek(self, name: str, index: str, key: Any) -> list[Row]:
        t = self._table(name)
        return [t.get(r) for r in t.seek(index, key)]

    def range(self, name: str, index: str, lo: Any = None, hi: Any = None,
              lo_inclusive: bool = True, hi_inclusive: bool = True, limit: int = -1) -> list[Row]:
        t = self._table(name)
        return [t.get(r) for r in t.range(index, lo, hi, lo_inclusive, hi_inclusive, limit)]

    def scan(self, name: str) -> Iterator[Row]:
        t = self._table(name)
        return (row for _, row in t.scan())

    def count(self, name: str) -> int:
        return len(self._table(name))

    # ---- end

    def commit(self, delta: TxDelta | None = None) -> TxDelta:
        """Make the writes permanent and return what changed (``delta``: what
        ``pending_delta`` just returned, when the caller has it already)."""
        if delta is None:
            delta = self.pending_delta()
        elif not self._open:
            raise TransactionError("this transaction has already ended")
        self._finish()
        return delta

    def pending_delta(self) -> TxDelta:
        """What ``commit`` would return now, without ending the transaction."""
        if not self._open:
            raise TransactionError("this transaction has already ended")
        if self._store.native:
            changes, parts = self._w.delta_parts()
            return TxDelta._native(changes, parts)
        return self._w.pending_delta(self._store)

    def encode_record(self, offset: int, timestamp: int, caller: bytes | None, reducer: str,
                      args: bytes) -> bytes:
        """The commit-log TX record of the pending delta (docs/log-format.md)."""
        if not self._open:
            raise TransactionError("this transaction has already ended")
        if self._store.native:
            return self._w.encode_record(offset, timestamp, caller, reducer, args)
        from stdb.storage import logformat as lf
        changes = []
        for name, d in self.pending_delta().tables.items():
            assert d.encoded is not None
            changes.append(lf.TableChange(name, *d.encoded))
        return lf.encode_tx(offset, timestamp, caller, reducer, args, changes)

    def rollback(self) -> None:
        """Undo every write of this transaction."""
        if not self._open:
            raise TransactionError("this transaction has already ended")
        try:
            self._w.rollback()
        finally:
            self._finish()

    def _finish(self) -> None:
        self._open = False
        self._w.finish()
        self._store._end(self)


class _PyWriteSet:
    """The write set of a transaction over ``stdb._core.reference`` tables: the pure-Python
    twin of stdb._core.txn (the same rules, compared against it by the tests).  Per table, the
    row that was at each touched row id when the transaction first touched it (or _EMPTY)."""

    def __init__(self) -> None:
        self._orig: dict[str, dict[int, Any]] = {}
        self._seqs: dict[str, tuple] = {}
        self._tables: dict[str, Any] = {}

    def _register(self, t: Any) -> dict[int, Any]:
        orig = self._orig.get(t.name)
        if orig is None:
            orig = self._orig[t.name] = {}
            self._seqs[t.name] = t.sequence_state()
            self._tables[t.name] = t
        return orig

    def _touch(self, orig: dict[int, Any], t: Any, rowid: int, present: bool) -> None:
        if rowid not in orig:
            orig[rowid] = t.get(rowid) if present else _EMPTY

    def insert(self, t: Any, row: Sequence[Any]) -> Row:
        orig = self._register(t)
        rowid = t.insert(tuple(row) if isinstance(row, list) else row)
        self._touch(orig, t, rowid, False)
        return t.get(rowid)

    def delete_rowid(self, t: Any, rowid: int) -> Row:
        self._touch(self._register(t), t, rowid, True)
        return t.delete(rowid)

    def update_rowid(self, t: Any, rowid: int, row: Sequence[Any]) -> Row:
        orig = self._register(t)
        old = t.get(rowid)
        if rowid not in orig:
            orig[rowid] = old
        newid = t.update(rowid, row)
        if newid != rowid:
            self._touch(orig, t, newid, False)
        return old

    def pending_delta(self, store: Datastore) -> TxDelta:
        """Per touched row id, the original row (if any) deleted and the current row (if any)
        inserted; rows with the same encoding cancel (NaN included; a row whose bits changed,
        -0.0 for 0.0, is a change)."""
        delta = TxDelta()
        for name, orig in self._orig.items():
            t = store.table(name)
            enc = t.codec.encode
            contains, get = t.contains, t.get
            deletes: list[Row] = []
            inserts: list[Row] = []
            dk: list[bytes] = []          # their encodings: each row is encoded once, and the
            ik: list[bytes] = []          # commit log reuses them (TableDelta.encoded)
            for rowid, before in orig.items():
                after: Any = get(rowid) if contains(rowid) else _EMPTY
                if before is not _EMPTY:
                    eb = enc(before)
                    if after is not _EMPTY:
                        ea = enc(after)
                        if eb == ea:
                            continue
                        deletes.append(before)
                        dk.append(eb)
                        inserts.append(after)
                        ik.append(ea)
                    else:
                        deletes.append(before)
                        dk.append(eb)
                elif after is not _EMPTY:
                    inserts.append(after)
                    ik.append(enc(after))
            if deletes and inserts:
                # a row deleted and re-inserted unchanged (at another id) is no change
                deletes, dk, inserts, ik = _cancel_pairs(deletes, dk, inserts, ik)
            if deletes or inserts:
                delta.tables[name] = TableDelta(deletes, inserts, (dk, ik))
        return delta

    def rollback(self) -> None:
        for name, orig in self._orig.items():
            t = self._tables[name]
            for rowid in orig:
                if t.contains(rowid):
                    t.delete(rowid)
            for rowid, before in orig.items():
                if before is not _EMPTY:
                    t.insert_at(rowid, before)
            t.restore_sequences(self._seqs[name])

    def finish(self) -> None:
        self._orig = {}
        self._tables = {}


def _cancel_pairs(deletes: list[Row], dk: list[bytes], inserts: list[Row], ik: list[bytes]
                  ) -> tuple[list[Row], list[bytes], list[Row], list[bytes]]:
    """Drop rows that are both deleted and inserted (as a multiset, compared by their
    encodings ``dk`` / ``ik``); returns the rows left and their encodings."""
    if set(dk).isdisjoint(ik):                  # the usual case: nothing to cancel
        return deletes, dk, inserts, ik
    common = Counter(dk) & Counter(ik)
    deletes, dk = _minus(deletes, dk, common.copy())
    inserts, ik = _minus(inserts, ik, common)
    return deletes, dk, inserts, ik


def _minus(rows: list[Row], keys: list[bytes], counts: Counter) -> tuple[list[Row], list[bytes]]:
    out, out_keys = [], []
    for r, k in zip(rows, keys, strict=True):
        if counts.get(k, 0) > 0:
            counts[k] -= 1
        else:
            out.append(r)
            out_keys.append(k)
    return out, out_keys
