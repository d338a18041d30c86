"""Fuzz target: write transactions in C (stdb/_core/txn.pyx, ``NativeTx``) against their
pure-Python twin (``stdb.storage.datastore._PyWriteSet`` over ``stdb._core.reference`` tables).

Input: a program of operations, each an opcode byte and its argument bytes (missing bytes read
as 0).  The same program runs on two datastores holding the same tables (``TABLES``: an
auto-increment key with a unique and a non-unique index and every kind of column; four small
tables with a string key, so that one transaction writes to more tables than the write set
first makes room for): one native, whose transactions all reuse one ``NativeTx`` (as the
database's call path does: the buffers and maps of one transaction are the next one's), one
on the reference tables.  A transaction is opened by the first write after the last ended.

* insert / delete by key / update by key / delete_row / update_rowid (the row id of a key,
  each side its own; the new row may change the key) / get / seek / scan: the same result,
  or the same ``StdbError`` class (a refused write changes nothing and the transaction goes
  on), nothing else raised;
* ``pending_delta`` and commit: the same tables (as a set: see ``same_delta``) and per table the
  same deleted and inserted rows (as multisets: row ids, and so the order of rows, may differ); the
  commit-log record each side builds (``encode_record``: in C from the write set's bytes, in
  Python by ``logformat.encode_tx``) decodes to the same fields and changes;
* after commit and rollback the tables hold the same rows and sequences, and the native tables'
  indexes check out (``check_invariants``).

    python -m fuzz.fuzz_txn fuzz/corpus/txn -max_total_time=60
"""

from __future__ import annotations

from typing import Any

from fuzz._harness import Reader, fuzz, instrument_module, instrumented

with instrumented(__name__ == "__main__"):
    from stdb._core import reference
    from stdb._core.schema import Column, IndexDef, TableSchema
    from stdb._core.txn import NativeTx
    from stdb.errors import StdbError
    from stdb.storage import logformat as lf
    from stdb.storage.datastore import Datastore, Transaction, TxDelta

MAIN = TableSchema(
    "t",
    [Column("id", "u32", auto_inc=True), Column("name", "string"), Column("n", "i32"), Column("f", "f64"),
     Column("opt", "option<string>"), Column("arr", "array<i16>")],
    primary_key="id",
    indexes=[IndexDef("by_name", "name", "hash", unique=True), IndexDef("by_n", "n")],
)
SMALL = [TableSchema(f"u{i}", [Column("k", "string"), Column("v", "u8")], primary_key="k") for i in range(4)]
TABLES = (MAIN, *SMALL)

NAMES = ("", "a", "b", "é", "a\x00", "x" * 300, "zz", "🙂")
FLOATS = (0.0, -0.0, float("nan"), 1.5, float("inf"), -2.25, 1e300, 5e-324)
MAX_OPS = 64

# opcodes (the byte modulo their number)
(INSERT, DELETE, UPDATE, DELETE_ROW, UPDATE_ROWID, GET, SEEK, SCAN, PENDING, COMMIT, ROLLBACK) = range(11)
NOPS = 11


def _main_key(b: int) -> int:
    """An id: 0 (auto-increment on insert), the top of u32 (its sequence runs out), or small."""
    return {0: 0, 255: 2**32 - 1, 254: 2**32 - 2, 253: 2**32}.get(b, b % 12)   # 2**32: DataError


def _main_row(r: Reader) -> tuple:
    key = _main_key(r.byte())
    name = NAMES[r.byte() % len(NAMES)]
    nb = r.byte()
    n = 2**31 if nb == 255 else nb % 7 - 3           # 2**31: out of i32's range
    f = FLOATS[r.byte() % len(FLOATS)]
    ob = r.byte()
    opt = None if ob % 3 == 0 else NAMES[ob % len(NAMES)]
    ab = r.byte()
    arr = [(ab >> i) % 5 - 2 for i in range(ab % 4)]
    return (key, name, n, f, opt, arr)


def _small_key(b: int) -> str:
    return NAMES[b % 4]


def _row(r: Reader, table: int) -> tuple:
    if table == 0:
        return _main_row(r)
    k = _small_key(r.byte())
    vb = r.byte()
    return (k, 256 if vb == 255 else vb % 6)           # 256: out of u8's range


def _key(r: Reader, table: int) -> Any:
    return _main_key(r.byte()) if table == 0 else _small_key(r.byte())


def canon(rows: Any) -> list[str]:
    """Rows as a sorted list of reprs: a multiset that holds NaN equal to NaN, -0.0 apart from 0.0."""
    return sorted(map(repr, rows))


def outcome(fn: Any) -> tuple[str, Any]:
    try:
        return ("ok", fn())
    except StdbError as e:
        return ("err", type(e))


def both(txs: list[Transaction], fn: Any, show: Any = repr) -> None:
    """``fn(tx, side)`` on both sides: the same result (``show`` of it) or the same error class."""
    a, b = (outcome(lambda tx=tx, side=side: show(fn(tx, side))) for side, tx in enumerate(txs))
    assert a == b, (a, b)


def _rowid(tx: Transaction, name: str, key: Any) -> int | None:
    ids = tx.table(name).seek("pk", key)
    return ids[0] if ids else None


def same_delta(a: TxDelta, b: TxDelta) -> None:
    # the tables as a set (as TxDelta.__eq__ has them): their order is the order of first writes,
    # and a write the row check refuses counts as one in the Python twin (it registers the table
    # first) but not in C (it checks the row first)
    assert sorted(a.tables) == sorted(b.tables), (list(a.tables), list(b.tables))
    for name in a.tables:
        da, db = a.tables[name], b.tables[name]
        assert canon(da.deletes) == canon(db.deletes), (name, da, db)
        assert canon(da.inserts) == canon(db.inserts), (name, da, db)
        assert da.counts == db.counts
        assert da.encoded is not None and db.encoded is not None
        assert [sorted(rows) for rows in da.encoded] == [sorted(rows) for rows in db.encoded]


def same_record(txs: list[Transaction], n: int) -> None:
    caller = bytes([n]) * 32 if n % 2 else None
    head = (n, -n, caller, f"r{n}", bytes([n]) * (n % 3))
    a, b = (lf.decode_record(n, tx.encode_record(*head)) for tx in txs)
    for rec in (a, b):
        assert (rec.offset, rec.timestamp, rec.caller, rec.reducer, rec.args) == head
    assert len(a.changes) == len({c.table for c in a.changes})          # each table once
    ca = {c.table: (sorted(c.deletes), sorted(c.inserts)) for c in a.changes}
    assert ca == {c.table: (sorted(c.deletes), sorted(c.inserts)) for c in b.changes}


def same_state(stores: list[Datastore]) -> None:
    for schema in TABLES:
        a, b = (d.table(schema.name) for d in stores)
        assert canon(r for _, r in a.scan()) == canon(r for _, r in b.scan()), schema.name
        assert a.sequence_state() == b.sequence_state(), schema.name
        a.check_invariants()


def _step(r: Reader, txs: list[Transaction], op: int, table: int) -> None:
    """One operation inside the transaction (not its end): on both sides, compared."""
    name = TABLES[table].name
    if op == INSERT:
        row = _row(r, table)
        both(txs, lambda tx, _s: tx.insert(name, row))
    elif op == DELETE:
        key = _key(r, table)
        both(txs, lambda tx, _s: tx.delete(name, key))
    elif op == UPDATE:
        row = _row(r, table)
        both(txs, lambda tx, _s: tx.update(name, row))
    elif op == DELETE_ROW:
        row = _row(r, table)
        both(txs, lambda tx, _s: tx.delete_row(name, row))
    elif op == UPDATE_ROWID:
        key = _key(r, table)
        row = _row(r, table)
        ids = [_rowid(tx, name, key) if key != 2**32 else None for tx in txs]
        assert (ids[0] is None) == (ids[1] is None)
        if ids[0] is not None:
            both(txs, lambda tx, side: tx.update_rowid(name, ids[side], row))
    elif op == GET:
        key = _key(r, table)
        both(txs, lambda tx, _s: tx.get(name, key))
    elif op == SEEK:
        if table == 0:
            b = r.byte()
            index, key = (("by_name", NAMES[b % len(NAMES)]) if b % 2 else ("by_n", b % 7 - 3))
            both(txs, lambda tx, _s: tx.seek(name, index, key), canon)
    elif op == SCAN:
        both(txs, lambda tx, _s: list(tx.scan(name)), canon)


def TestOneInput(data: bytes) -> None:
    stores = [Datastore(), Datastore(reference.Table)]
    for d in stores:
        for schema in TABLES:
            d.create_table(schema)
    core = NativeTx()
    txs: list[Transaction] | None = None
    r = Reader(data)
    commits = 0
    for _ in range(MAX_OPS):
        if r.done:
            break
        op = r.byte() % NOPS
        table = r.byte() % len(TABLES)
        if op in (PENDING, COMMIT, ROLLBACK, GET, SEEK, SCAN) and txs is None:
            continue
        if txs is None:
            txs = [stores[0].begin(core), stores[1].begin()]
        if op not in (PENDING, COMMIT, ROLLBACK):
            _step(r, txs, op, table)
        elif op == PENDING:
            same_delta(*(tx.pending_delta() for tx in txs))
        elif op == COMMIT:
            commits += 1
            same_record(txs, commits)
            same_delta(*(tx.commit() for tx in txs))
            txs = None
            same_state(stores)
        elif op == ROLLBACK:
            for tx in txs:
                tx.rollback()
            txs = None
            same_state(stores)
    if txs is not None:
        same_delta(*(tx.pending_delta() for tx in txs))
        for tx in txs:
            tx.rollback()
    same_state(stores)


instrument_module(globals(), __name__ == "__main__")


def main() -> None:
    fuzz(TestOneInput)


if __name__ == "__main__":
    main()
