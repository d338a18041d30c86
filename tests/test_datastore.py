"""Transactions over both table implementations."""

import pytest

import stdb
from stdb import Column, Datastore, IndexDef, TableSchema

ACCT = TableSchema(
    "acct",
    [Column("id", "u64", auto_inc=True), Column("balance", "i64"), Column("name", "string"),
     Column("tags", "array<i16>")],
    primary_key="id",
    indexes=[IndexDef("by_balance", "balance"), IndexDef("by_name", "name", "hash", unique=True)],
)
LOG = TableSchema("log", [Column("msg", "string"), Column("n", "i32")], indexes=[IndexDef("by_n", "n")])


@pytest.fixture
def ds(impl):
    d = Datastore(table_factory=impl)
    d.create_table(ACCT)
    d.create_table(LOG)
    with d.begin() as tx:
        for i in range(5):
            tx.insert("acct", (0, i * 10, f"u{i}", [i]))
        tx.insert("log", ("hello", 1))
    return d


def state(d):
    return {n: sorted(map(repr, d.scan(n))) for n in d.table_names}, \
        {n: d.table(n).sequence_state() for n in d.table_names}


def test_reads_see_own_writes(ds):
    tx = ds.begin()
    row = tx.insert("acct", (0, 99, "new", []))
    assert row == (6, 99, "new", [])
    assert tx.get("acct", 6) == row
    assert tx.seek("acct", "by_name", "new") == [row]
    assert row in tx.range("acct", "by_balance", 50, 100)
    tx.update("acct", (6, 100, "new", [1]))
    assert tx.get("acct", 6) == (6, 100, "new", [1])
    tx.delete("acct", 1)
    assert tx.get("acct", 1) is None and tx.count("acct") == 5
    assert (1, 0, "u0", [0]) not in list(tx.scan("acct"))
    tx.rollback()


def test_commit_delta(ds):
    tx = ds.begin()
    tx.insert("acct", (0, 5, "a", []))                  # insert
    tx.update("acct", (2, 11, "u1", [1]))               # update = delete + insert
    tx.delete("acct", 3)                                # delete
    tx.insert("acct", (0, 7, "temp", []))               # insert then delete: nothing
    tx.delete("acct", 7)
    old = tx.get("acct", 4)
    tx.delete("acct", 4)                                # delete then re-insert identical: nothing
    tx.insert("acct", old)
    tx.update("acct", (5, 40, "u4", [4]))               # update to the same values: nothing
    delta = tx.commit()
    assert set(delta.tables) == {"acct"}
    d = delta.tables["acct"]
    assert sorted(d.deletes) == [(2, 10, "u1", [1]), (3, 20, "u2", [2])]
    assert sorted(d.inserts) == [(2, 11, "u1", [1]), (6, 5, "a", [])]
    assert delta.row_count == 4
    enc = ds.table("acct").codec.encode          # the encodings the commit log writes as they are
    assert d.encoded == ([enc(r) for r in d.deletes], [enc(r) for r in d.inserts])


def test_update_rowid(ds):
    before = state(ds)
    tx = ds.begin()
    rid = tx.table("acct").seek("pk", 2)[0]
    assert tx.update_rowid("acct", rid, (2, 11, "u1b", [9])) == (2, 10, "u1", [1])
    assert tx.get("acct", 2) == (2, 11, "u1b", [9])
    assert tx.seek("acct", "by_name", "u1b") == [(2, 11, "u1b", [9])]
    with pytest.raises(stdb.ConstraintError, match="no row at row id"):
        tx.update_rowid("acct", 10**9, (2, 0, "x", []))
    with pytest.raises(stdb.ConstraintError):                    # unique by_name still holds
        tx.update_rowid("acct", rid, (2, 11, "u3", []))
    tx.rollback()
    assert state(ds) == before
    with ds.begin() as tx:
        tx.update_rowid("acct", rid, (2, 12, "u1", [1]))
    assert ds.table("acct").get(rid) == (2, 12, "u1", [1])


def test_rollback_restores_everything(ds):
    before = state(ds)
    tx = ds.begin()
    tx.insert("acct", (0, 1, "x", []))
    tx.update("acct", (1, -5, "u0" + "!" * 5000, list(range(300))))   # grows: may move the row
    tx.delete("acct", 2)
    tx.insert("acct", (0, 2, "y", []))
    tx.update("acct", (3, 21, "renamed", []))
    tx.insert("log", ("more", 2))
    tx.delete_row("log", ("hello", 1))
    tx.rollback()
    assert state(ds) == before
    for n in ds.table_names:
        ds.table(n).check_invariants()
    # and the tables keep working
    with ds.begin() as tx:
        assert tx.insert("acct", (0, 1, "z", [])) == (6, 1, "z", [])


def test_errors_leave_the_transaction_usable(ds):
    tx = ds.begin()
    tx.insert("acct", (0, 1, "ok", []))
    with pytest.raises(stdb.ConstraintError):
        tx.insert("acct", (0, 1, "u1", []))             # duplicate name
    with pytest.raises(stdb.DataError):
        tx.insert("acct", (0, "x", "bad", []))
    with pytest.raises(stdb.ConstraintError):
        tx.update("acct", (2, 1, "u3", []))             # name taken by id 4
    with pytest.raises(stdb.ConstraintError):
        tx.delete("acct", 999)
    with pytest.raises(stdb.ConstraintError):
        tx.update("acct", (999, 1, "q", []))
    assert tx.get("acct", 6) == (6, 1, "ok", [])
    delta = tx.commit()
    assert delta.tables["acct"].inserts == [(6, 1, "ok", [])] and delta.tables["acct"].deletes == []


def test_failed_ops_then_rollback_are_clean(ds):
    before = state(ds)
    tx = ds.begin()
    tx.insert("acct", (0, 1, "ok", []))
    with pytest.raises(stdb.ConstraintError):
        tx.insert("acct", (1, 1, "dup id", []))
    tx.rollback()
    assert state(ds) == before


def test_transaction_lifecycle_errors(ds):
    tx = ds.begin()
    with pytest.raises(stdb.TransactionError):
        ds.begin()
    with pytest.raises(stdb.TransactionError):
        ds.scan("acct")                                 # committed reads wait for the writer
    with pytest.raises(stdb.TransactionError):
        ds.create_table(TableSchema("t2", [Column("a", "u8")]))
    tx.commit()
    with pytest.raises(stdb.TransactionError):
        tx.insert("acct", (0, 1, "late", []))
    with pytest.raises(stdb.TransactionError):
        tx.commit()
    with pytest.raises(stdb.TransactionError):
        tx.rollback()
    ds.begin().rollback()


def test_context_manager(ds):
    before = state(ds)
    with pytest.raises(RuntimeError):
        with ds.begin() as tx:
            tx.insert("acct", (0, 1, "gone", []))
            raise RuntimeError("boom")
    assert state(ds) == before
    with ds.begin() as tx:
        tx.insert("acct", (0, 1, "kept", []))
    assert any(r[2] == "kept" for r in ds.scan("acct"))


def test_tables_without_primary_key(ds):
    tx = ds.begin()
    with pytest.raises(stdb.SchemaError, match="no primary key"):
        tx.delete("log", "hello")
    assert tx.delete_row("log", ("hello", 1)) is True
    assert tx.delete_row("log", ("hello", 1)) is False
    tx.insert("log", ("a", 5))
    tx.insert("log", ("a", 5))                          # duplicates allowed without a unique index
    assert len(tx.seek("log", "by_n", 5)) == 2
    delta = tx.commit()
    assert delta.tables["log"].deletes == [("hello", 1)]
    assert delta.tables["log"].inserts == [("a", 5), ("a", 5)]


def test_schema_errors(ds):
    with pytest.raises(stdb.SchemaError, match="already exists"):
        ds.create_table(ACCT)
    with pytest.raises(stdb.SchemaError, match="no table"):
        ds.table("missing")
    tx = ds.begin()
    with pytest.raises(stdb.SchemaError):
        tx.insert("missing", (1,))
    tx.rollback()


def test_rows_holding_nan_are_not_reported_as_changed(impl):
    d = Datastore(table_factory=impl)
    d.create_table(TableSchema("f", [Column("id", "u32"), Column("x", "f64"), Column("tag", "string")],
                               primary_key="id", indexes=[IndexDef("by_tag", "tag", "hash", unique=True)]))
    nan = float("nan")
    with d.begin() as tx:
        tx.insert("f", (1, nan, "a"))
        tx.insert("f", (2, 0.0, "b"))
    tx = d.begin()
    tx.update("f", (1, nan, "a"))                       # rewritten unchanged
    with pytest.raises(stdb.ConstraintError):
        tx.update("f", (1, nan, "b"))                   # refused: touches the row, changes nothing
    row = tx.get("f", 1)
    tx.delete("f", 1)
    tx.insert("f", row)                                 # deleted and re-inserted identical
    assert not tx.commit()
    tx = d.begin()
    tx.update("f", (1, 1.0, "a"))
    delta = tx.commit()
    assert repr(delta.tables["f"].deletes) == repr([(1, nan, "a")])
    assert delta.tables["f"].inserts == [(1, 1.0, "a")]
