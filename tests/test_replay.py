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


def _record(offset: int, table: str, deletes: list[bytes], inserts: list[bytes]) -> bytes:
    from stdb.storage import logformat as lf

    return lf.encode_record(lf.LogRecord(offset, 0, changes=[lf.TableChange(table, deletes, inserts)]))


def test_a_row_deleted_twice_is_refused_even_when_an_insert_of_its_key_pairs_with_it():
    """Found by fuzz/fuzz_logrecord.py (the C replay against the reference replay): a logged
    change deleting one row twice and inserting a row with its key.  The pairing path paired the
    insert with the first delete (an update of the row) and then carried out the second delete
    on the same row id, deleting the updated row: the C replay accepted the change, ending with
    the row gone, where the reference replay (and the one-row-at-a-time path) refuses it — the
    second delete finds nothing.  Now refused the same way, before anything changes."""
    from stdb._core.logrec import apply_value
    from stdb._core.table import Table
    from stdb.errors import StdbError
    from stdb.storage import logformat as lf
    from stdb.storage.datastore import Datastore
    from stdb.storage.recovery import apply_record

    for shape in (SHAPES[0], SHAPES[1], SHAPES[3]):       # the shapes whose updates pair
        old, new = _row(shape, 1, 0), _row(shape, 1, 2)
        for factory in (Table, reference.Table):
            ds = Datastore(factory)
            ds.create_table(shape)
            enc = ds.table(shape.name).codec.encode
            ds.table(shape.name).apply_encoded([], [enc(old)])
            rec = _record(4, shape.name, [enc(old), enc(old)], [enc(new)])
            if factory is Table:
                applied, ops, status, detail = apply_value(4, rec, 4, 4, ds._tables)
                assert (applied, ops, status) == (0, 0, 2), (shape.name, applied, ops, status, detail)
                assert "the row to delete is not there" in detail[2]
                ds.table(shape.name).check_invariants()
                assert ds.scan(shape.name) == [old], shape.name
            else:
                try:
                    apply_record(ds, lf.decode_record(4, rec))
                    raise AssertionError("the reference replay applied it")
                except StdbError:
                    pass


def test_row_counts_past_the_body_are_refused_before_anything_is_sized():
    """A TX body whose table section claims more rows than its bytes can hold (each row takes at
    least its 4-byte length) does not parse: the C replay hands it back (status 3) as
    ``tx_body`` and logformat refuse it, instead of reserving room for the count first."""
    from stdb._core.logrec import apply_value
    from stdb.storage.datastore import Datastore

    shape = SHAPES[2]
    ds = Datastore()
    ds.create_table(shape)
    enc = ds.table(shape.name).codec.encode
    row = enc(_row(shape, 1, 0))
    ds.table(shape.name).apply_encoded([], [row])
    rec = bytearray(_record(4, shape.name, [row], [row]))
    at = rec.index(shape.name.encode()) + len(shape.name)
    struct.pack_into("<I", rec, at, 0x0FFFFFFF)                  # the delete count
    import crc32c

    body = bytes(rec[12:])
    struct.pack_into("<I", rec, 8, crc32c.crc32c(body, crc32c.crc32c(bytes(rec[:8]))))
    assert apply_value(4, bytes(rec), 4, 4, ds._tables) == (0, 0, 3, 4)
    assert ds.scan(shape.name) == [_row(shape, 1, 0)]
