"""Recovery's replay in C (logrec.apply_value → table.tbl_apply_change) against the step-by-step
replay into the pure-Python reference tables, on logs of random transactions.

The C replay has shapes of its own: a one-pass insert for tables whose only index is an integer
primary key (t.fast), updates paired with their deletes by position while the two lists are in
step and through a map of the keys once they are not, index slots prefetched ahead, and the
indexes sized up front from the scan's row counts (``Table.reserve``).  Every transaction mixes
inserts, updates (in random order, so the pairing falls out of step), deletes and re-inserts of
deleted keys; whatever the C path does, the recovered tables must hold the rows the live
database held, like the reference replay.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stdb import Column, IndexDef, TableSchema
from stdb._core import reference
from stdb._core.logrec import check_value
from stdb.storage.commitlog import iter_values
from stdb.storage.durable import DurableStore, StoreConfig
from stdb.storage.lmdbenv import Env
from stdb.storage.recovery import recover

NOSNAP = StoreConfig(snapshot_every_txs=None, snapshot_every_bytes=None)

SHAPES = [
    # the fast shape: one integer primary key, fixed columns and a string
    TableSchema("fast", [Column("id", "u64"), Column("balance", "i64"), Column("name", "string")],
                primary_key="id"),
    # a signed 32-bit key after a string (the key is not at a fixed place)
    TableSchema("signed", [Column("tag", "string"), Column("k", "i32"), Column("ok", "bool")],
                primary_key="k"),
    # a string key and a second unique index: not the fast shape, not pairable by position only
    TableSchema("named", [Column("name", "string"), Column("n", "u32"), Column("note", "string")],
                primary_key="name", indexes=[IndexDef("by_n", "n", "hash", unique=True)]),
    # an auto-increment key and an ordered index
    TableSchema("seq", [Column("id", "u32", auto_inc=True), Column("v", "i16")], primary_key="id",
                indexes=[IndexDef("by_v", "v")]),
]

KEYS = st.integers(0, 40)
# one transaction: (op, key, value) with op 0 insert-or-update, 1 update, 2 delete
TXS = st.lists(st.lists(st.tuples(st.integers(0, 2), KEYS, st.integers(-3, 3)), min_size=1, max_size=25),
               min_size=1, max_size=12)


def _row(schema: TableSchema, k: int, v: int) -> tuple:
    name = schema.name
    if name == "fast":
        return (k, v * 1000, "é" * (k % 3) + f"acct{k}")
    if name == "signed":
        return (f"t{v}" * (k % 4), k - 20, v > 0)
    if name == "named":
        return (f"n{k}", k * 100 + (v + 3), "x" * (v + 3))
    return (k + 1, v)


def _apply(store: DurableStore, schema: TableSchema, txs: list) -> dict:
    """Commit ``txs`` to ``store``; returns the rows the table should hold, by key."""
    want: dict = {}
    pk = 0 if schema.name in ("fast", "named", "seq") else 1
    for ops in txs:
        tx = store.begin()
        for op, k, v in ops:
            row = _row(schema, k, v)
            key = row[pk]
            if op == 2:
                if key in want:
                    tx.delete(schema.name, key)
                    del want[key]
            elif key in want:
                tx.update(schema.name, row)
                want[key] = row
            elif op == 0:
                try:
                    tx.insert(schema.name, row)
                except Exception:       # a unique index other than the key refused it
                    continue
                want[key] = row
        store.commit(tx)
    return want


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.sampled_from(SHAPES), txs=TXS)
def test_the_c_replay_ends_where_the_database_and_the_reference_replay_did(tmp_path_factory, shape, txs):
    path = str(tmp_path_factory.mktemp("replay"))
    store = DurableStore.open(path, config=NOSNAP)
    store.create_table(shape)
    want = _apply(store, shape, txs)
    live = sorted(store.datastore.scan(shape.name))
    store.close()
    env = Env(path, readonly=True)
    try:
        native = recover(env, repair=False)
        ref = recover(env, repair=False, table_factory=reference.Table)
    finally:
        env.close()
    got = native.datastore.table(shape.name)
    got.check_invariants()
    assert sorted(native.datastore.scan(shape.name)) == live == sorted(ref.datastore.scan(shape.name))
    assert len(live) == len(want)
    assert native.row_ops == ref.row_ops and native.replayed == ref.replayed


def test_the_scan_counts_each_tables_rows_and_recovery_sizes_its_index_once(tmp_path):
    path = str(tmp_path / "db")
    store = DurableStore.open(path, config=NOSNAP)
    store.create_table(SHAPES[0])
    store.create_table(SHAPES[2])
    tx = store.begin()
    for k in range(3000):
        tx.insert("fast", _row(SHAPES[0], k, 1))
    for k in range(10):
        tx.insert("named", _row(SHAPES[2], k, 0))
    store.commit(tx)
    tx = store.begin()
    for k in range(0, 3000, 3):
        tx.delete("fast", k)
    for k in range(1, 3000, 3):
        tx.update("fast", _row(SHAPES[0], k, 2))
    store.commit(tx)
    grown = store.datastore.table("fast").stats()["index_bytes"]
    store.close()
    env = Env(path, readonly=True)
    try:
        counts: dict = {}
        for _, value in iter_values(env, 0):
            check_value(value, counts)
        assert counts == {"fast": 2000, "named": 10}       # inserts minus deletes; updates are both
        rec = recover(env, repair=False)
    finally:
        env.close()
    t = rec.datastore.table("fast")
    t.check_invariants()
    # sized once, to what growing one row at a time reached
    assert len(t) == 2000 and t.stats()["index_bytes"] == grown


def test_reserve_keeps_the_rows_findable_and_never_shrinks():
    from stdb._core.table import Table
    t = Table(SHAPES[2])
    for k in range(50):
        t.insert(_row(SHAPES[2], k, 0))
    before = t.memory_bytes()
    t.reserve(0)
    t.reserve(-5)
    assert t.memory_bytes() == before
    t.reserve(100_000)
    grown = t.stats()["index_bytes"]
    assert grown["pk"] >= 150_000 * 8 and grown["by_n"] >= 150_000 * 8    # load ≤ 3/4
    t.check_invariants()
    for k in range(50):
        assert t.get(t.seek("pk", f"n{k}")[0])[0] == f"n{k}"
    t.reserve(10)                                             # already room: nothing changes
    assert t.stats()["index_bytes"] == grown
    for k in range(50, 2000):
        t.insert(_row(SHAPES[2], k, 0))
    assert t.stats()["index_bytes"] == grown and len(t) == 2000
    t.check_invariants()


def test_check_value_counts_only_what_it_checks():
    # a value that does not check out adds nothing
    counts = {"x": 1}
    assert check_value(b"\x01\x01\x00\x00" + struct.pack("<II", 0, 0), counts) == -1
    assert counts == {"x": 1}
