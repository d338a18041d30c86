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

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from stdb._core.schema import TableSchema
from stdb.errors import ConstraintError, SchemaError, TransactionError

__all__ = ["Datastore", "Transaction", "TxDelta", "TableDelta"]

Row = tuple
_EMPTY = object()


@dataclass
class TableDelta:
    """What one transaction did to one table: rows deleted and rows inserted.

    An update is a delete of the old row plus an insert of the new one.
    """

    deletes: list[Row] = field(default_factory=list)
    inserts: list[Row] = field(default_factory=list)
    # the rows' row-codec encodings (deletes, inserts), as pending_delta computed them to compare
    # rows; the commit log writes them as they are
    encoded: tuple[list[bytes], list[bytes]] | None = field(default=None, compare=False, repr=False)


@dataclass
class TxDelta:
    """The effect of a committed transaction, per table (tables it did not change are absent)."""

    tables: dict[str, TableDelta] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.tables)

    @property
    def row_count(self) -> int:
        return sum(len(d.deletes) + len(d.inserts) for d in self.tables.values())


def _default_table_factory() -> Callable[[TableSchema], Any]:
    from stdb._core.table import Table

    return Table


class Datastore:
    """Tables by name, and the transactions that change them.

    ``table_factory`` builds a table from a TableSchema: the Cython engine by default, or
    ``stdb._core.reference.Table`` (the pure-Python twin) in tests.
    """

    def __init__(self, table_factory: Callable[[TableSchema], Any] | None = None) -> None:
        self._factory = table_factory or _default_table_factory()
        self._tables: dict[str, Any] = {}
        self._tx: Transaction | None = None

    # ---- schema

    def create_table(self, schema: TableSchema) -> None:
        if not isinstance(schema, TableSchema):
            raise SchemaError(f"create_table needs a TableSchema, got {type(schema).__name__}")
        if self._tx is not None:
            raise TransactionError("cannot create a table while a transaction is open")
        if schema.name in self._tables:
            raise SchemaError(f"table '{schema.name}' already exists")
        self._tables[schema.name] = self._factory(schema)

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

    def drop_table(self, name: str) -> None:
        if self._tx is not None:
            raise TransactionError("cannot drop a table while a transaction is open")
        self.table(name)
        del self._tables[name]

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

    def begin(self) -> Transaction:
        """Open the write transaction (one at a time)."""
        if self._tx is not None:
            raise TransactionError("a transaction is already open on this datastore",
                                   hint="commit or roll back the open one first")
        self._tx = Transaction(self)
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
    """A write transaction; use as a context manager to commit on success, roll back on error."""

    def __init__(self, store: Datastore) -> None:
        self._store = store
        self._open = True
        # table name -> {rowid: row at begin, or _EMPTY}
        self._orig: dict[str, dict[int, Any]] = {}
        self._seqs: dict[str, tuple] = {}

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

    # ---- plumbing

    def _table(self, name: str) -> Any:
        if not self._open:
            raise TransactionError("this transaction has already ended")
        t = self._store.table(name)
        if name not in self._orig:
            self._orig[name] = {}
            self._seqs[name] = t.sequence_state()
        return t

    def _touch(self, name: str, table: Any, rowid: int, present: bool) -> None:
        orig = self._orig[name]
        if rowid not in orig:
            orig[rowid] = table.get(rowid) if present else _EMPTY

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
        rowid = t.insert(tuple(row) if isinstance(row, list) else row)
        self._touch(name, t, rowid, False)
        return t.get(rowid)

    def delete(self, name: str, key: Any) -> Row:
        """Delete the row with this primary key and return it (ConstraintError if none)."""
        t = self._table(name)
        rowid = self._pk_rowid(name, t, key)
        if rowid is None:
            raise ConstraintError(f"table '{name}': no row with primary key {key!r} to delete")
        self._touch(name, t, rowid, True)
        return t.delete(rowid)

    def delete_rowid(self, name: str, rowid: int) -> Row:
        """Delete the row stored at ``rowid`` (found through ``table(name)``) and return it."""
        t = self._table(name)
        if not t.contains(rowid):
            raise ConstraintError(f"table '{name}': no row at row id {rowid} to delete")
        self._touch(name, t, rowid, True)
        return t.delete(rowid)

    def delete_row(self, name: str, row: Sequence[Any]) -> bool:
        """Delete one row equal to ``row``; False if there is none."""
        t = self._table(name)
        rowid = t.find_row(row)
        if rowid is None:
            return False
        self._touch(name, t, rowid, True)
        t.delete(rowid)
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
        return self._update_at(name, t, rowid, checked)

    def update_rowid(self, name: str, rowid: int, row: Sequence[Any]) -> Row:
        """Replace the row stored at ``rowid`` (found through ``table(name)``, e.g. by its
        primary key) and return the old row; the new row must keep every unique key unique."""
        t = self._table(name)
        if not t.contains(rowid):
            raise ConstraintError(f"table '{name}': no row at row id {rowid} to update")
        return self._update_at(name, t, rowid, row)

    def _update_at(self, name: str, t: Any, rowid: int, row: Sequence[Any]) -> Row:
        old = t.get(rowid)
        orig = self._orig[name]
        if rowid not in orig:
            orig[rowid] = old
        newid = t.update(rowid, row)
        if newid != rowid:
            self._touch(name, t, newid, False)
        return old

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
        delta = TxDelta()
        for name, orig in self._orig.items():
            t = self._store.table(name)
            enc = t.codec.encode
            contains, get = t.contains, t.get
            deletes: list[Row] = []
            inserts: list[Row] = []
            dk: list[bytes] = []          # their encodings: each row is encoded once, and the
            ik: list[bytes] = []          # commit log reuses them (TableDelta.encoded)
            for rowid, before in orig.items():
                after: Any = get(rowid) if contains(rowid) else _EMPTY
                if before is not _EMPTY:
                    if after is not _EMPTY:
                        if before == after:
                            continue
                        eb, ea = enc(before), enc(after)
                        if eb == ea:          # NaN != NaN: equal rows are equal bytes
                            continue
                        deletes.append(before)
                        dk.append(eb)
                        inserts.append(after)
                        ik.append(ea)
                    else:
                        deletes.append(before)
                        dk.append(enc(before))
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
        """Undo every write of this transaction."""
        if not self._open:
            raise TransactionError("this transaction has already ended")
        for name, orig in self._orig.items():
            t = self._store.table(name)
            for rowid in orig:
                if t.contains(rowid):
                    t.delete(rowid)
            for rowid, before in orig.items():
                if before is not _EMPTY:
                    t.insert_at(rowid, before)
            t.restore_sequences(self._seqs[name])
        self._finish()

    def _finish(self) -> None:
        self._open = False
        self._orig = {}
        self._store._end(self)


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
