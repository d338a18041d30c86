"""Database.publish / Database.call with hand-written WAT modules: outcomes, limits,
hostile modules, publish validation and migration (docs/abi.md)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stdb
from stdb import parse_type
from stdb.module.database import Database, Limits
from stdb.storage import logformat as lf
from stdb.storage.commitlog import iter_records
from tests import wat
from tests.strategies import BASE_TYPES, values_of

KV = {"name": "kv", "public": True, "columns": [{"name": "k", "type": "u64"}, {"name": "v", "type": "i64"}],
      "primary_key": ["k"], "indexes": []}
PUT = {"name": "put", "params": [{"name": "k", "type": "u64"}, {"name": "v", "type": "i64"}]}
DATA, AT = wat.strings("kv", "no such thing", "pk")
KV_ID = f"(call $table_id (i32.const {AT['kv'][0]}) (i32.const 2))"
INSERT_ARGS = f"(drop (call $insert {KV_ID} (local.get $p) (local.get $n)))"
NO = f"(call $err (i32.const {AT['no such thing'][0]}) (i32.const {AT['no such thing'][1]}))"
LOOP = "(loop $l (br $l))"

REDUCERS = {
    "put": INSERT_ARGS + " (i64.const 0)",
    "put_then_fail": INSERT_ARGS + " " + NO,
    "put_then_trap": INSERT_ARGS + " unreachable",
    "put_then_loop": INSERT_ARGS + " " + LOOP + " (i64.const 0)",
    # grow memory a page at a time until the cap refuses, then trap
    "memory_bomb": "(block $full (loop $l (br_if $full (i32.eq (memory.grow (i32.const 1)) (i32.const -1))) "
                   "(br $l))) unreachable",
    "recurse": "(call $deep (i32.const 0)) drop (i64.const 0)",
    "bad_pointer": f"(drop (call $insert {KV_ID} (i32.const 0x7ffffff0) (i32.const 64))) (i64.const 0)",
    # insert 3 bytes (not a row): report error_detail's text as the reducer's error
    "bad_row": f"(local.set $t (call $insert {KV_ID} (local.get $p) (i32.const 3))) "
               "(local.set $i (call $error_detail (global.get $tmp) (i32.const 200))) "
               "(call $err (global.get $tmp) (local.get $i))",
    # insert the same row twice: the second answer (-4) is the reducer's error length
    "dup": f"{INSERT_ARGS} (local.set $t (call $insert {KV_ID} (local.get $p) (local.get $n))) "
           "(if (i32.ne (local.get $t) (i32.const -4)) (then unreachable)) " + NO,
    "bad_error_pointer": "(call $err (i32.const 0x7ffffff0) (i32.const 100))",
    # find row k (the first 8 bytes of the arguments are the key), set its v to the argument's v
    "find_set": f"(local.set $t (call $find {KV_ID} (i32.const 0) (local.get $p) (i32.const 8) "
                "(global.get $tmp) (i32.const 64))) "
                f"(if (i32.eqz (local.get $t)) (then (return {NO}))) "
                "(if (i32.ne (local.get $t) (i32.const 16)) (then unreachable)) "
                "(i64.store (i32.add (global.get $tmp) (i32.const 8)) "
                "(i64.load (i32.add (local.get $p) (i32.const 8)))) "
                f"(drop (call $update {KV_ID} (global.get $tmp) (i32.const 16))) (i64.const 0)",
    # a buffer of 3 bytes: ERR_BUFFER_TOO_SMALL (-6), and no size written (it needs 4)
    "find_small": f"(local.set $t (call $find {KV_ID} (i32.const 0) (local.get $p) (i32.const 8) "
                  "(global.get $tmp) (i32.const 3))) "
                  f"(if (i32.ne (local.get $t) (i32.const -6)) (then unreachable)) {NO}",
    "find_bad_buffer": f"(drop (call $find {KV_ID} (i32.const 0) (local.get $p) (i32.const 8) "
                       "(i32.const 0x7ffffff0) (i32.const 64))) (i64.const 0)",
}
PARAMS = {"put": PUT["params"], "put_then_fail": PUT["params"], "put_then_trap": PUT["params"],
          "put_then_loop": PUT["params"], "bad_row": PUT["params"], "dup": PUT["params"],
          "find_set": PUT["params"], "find_small": PUT["params"], "find_bad_buffer": PUT["params"]}
DEEP = "(func $deep (param $d i32) (result i32) (call $deep (i32.add (local.get $d) (i32.const 1))))"


def kv_module(tables=(KV,), reducers=REDUCERS, **kw) -> bytes:
    desc = wat.describe(list(tables), [{"name": n, "params": PARAMS.get(n, [])} for n in reducers])
    return wat.module(desc, list(reducers.values()), data=DATA, extra=DEEP, **kw)


@pytest.fixture
def db(tmp_path):
    d = Database(str(tmp_path / "db"), limits=Limits(fuel=50_000_000, time=0.5, memory_bytes=4 << 20))
    d.publish(kv_module())
    yield d
    d.close()


def rows(db: Database, table: str = "kv") -> list:
    return sorted(db.store.datastore.scan(table))


def log_records(db: Database) -> list[lf.LogRecord]:
    env = db.store.env
    db.store.flush()
    return [lf.decode_record(off, bytes(v)) for off, v in iter_records(env)]


def test_call_commits_through_the_log_and_survives_reopen(tmp_path, db):
    res = db.call("put", (1, 10), sender=b"\x07" * 32)
    assert res.offset is not None and res.fuel_used > 0
    assert res.delta.tables["kv"].inserts == [(1, 10)]
    rec = log_records(db)[-1]
    assert (rec.offset, rec.reducer, rec.caller) == (res.offset, "put", b"\x07" * 32)
    assert rec.args == struct.pack("<Qq", 1, 10)
    assert [ch.table for ch in rec.changes] == ["kv"]
    db.close()
    again = Database(db.path)
    try:
        assert rows(again) == [(1, 10)]
        assert again.call("put", (2, 20)).offset == res.offset + 1      # the module came back with the data
        assert rows(again) == [(1, 10), (2, 20)]
    finally:
        again.close()


@pytest.mark.parametrize("reducer, kind, text", [
    ("put_then_fail", "error", "no such thing"),
    ("put_then_trap", "trap", "unreachable"),
    ("put_then_loop", "out_of_fuel", "fuel"),
])
def test_failures_roll_back_and_the_next_call_works(db, reducer, kind, text):
    db.call("put", (1, 10))
    before = log_records(db)
    with pytest.raises(stdb.ReducerError) as e:
        db.call(reducer, (2, 20))
    assert e.value.kind == kind and e.value.reducer == reducer
    assert text in str(e.value)
    if kind != "error":
        assert e.value.backtrace, "a trap carries the WASM backtrace"
    assert rows(db) == [(1, 10)]
    assert log_records(db) == before                       # nothing logged
    db.call("put", (3, 30))
    assert rows(db) == [(1, 10), (3, 30)]


def test_wall_clock_limit_stops_a_loop_that_has_fuel(tmp_path):
    d = Database(str(tmp_path / "t"), limits=Limits(fuel=10**15, time=0.05))
    try:
        d.publish(kv_module())
        with pytest.raises(stdb.ReducerError) as e:
            d.call("put_then_loop", (1, 1))
        assert e.value.kind == "timeout" and "time limit" in str(e.value)
        assert rows(d) == []
        d.call("put", (2, 2))
        assert rows(d) == [(2, 2)]
    finally:
        d.close()


def test_memory_bomb_is_capped_and_fails_only_its_call(db):
    with pytest.raises(stdb.ReducerError) as e:
        db.call("memory_bomb")
    assert e.value.kind == "trap"
    db.call("put", (1, 1))
    assert db._inst.memory_size <= db.limits.memory_bytes
    assert rows(db) == [(1, 1)]


def test_deep_recursion_traps(db):
    with pytest.raises(stdb.ReducerError) as e:
        db.call("recurse")
    assert e.value.kind == "trap" and "stack" in e.value.message
    db.call("put", (1, 1))
    assert rows(db) == [(1, 1)]


def test_pointer_outside_memory_traps_naming_it(db):
    with pytest.raises(stdb.ReducerError) as e:
        db.call("bad_pointer")
    assert e.value.kind == "trap" and str(0x7FFFFFF0) in e.value.message
    with pytest.raises(stdb.ReducerError) as e:
        db.call("bad_error_pointer")
    assert e.value.kind == "error" and "outside memory" in e.value.message
    db.call("put", (1, 1))


def test_import_errors_are_codes_with_a_detail(db):
    with pytest.raises(stdb.ReducerError) as e:
        db.call("bad_row", (1, 1))
    assert "truncated" in e.value.message           # the host's message, read back by the module
    with pytest.raises(stdb.ReducerError) as e:
        db.call("dup", (5, 5))                       # the module saw ERR_UNIQUE_VIOLATION (-4)
    assert e.value.message == "no such thing"
    assert rows(db) == []


def test_find_through_the_wasm_boundary(db):
    db.call("put", (1, 5))
    db.call("find_set", (1, 9))                      # found, written into the module's buffer
    assert rows(db) == [(1, 9)]
    with pytest.raises(stdb.ReducerError) as e:
        db.call("find_set", (2, 1))                  # none: 0
    assert e.value.message == "no such thing"
    with pytest.raises(stdb.ReducerError) as e:
        db.call("find_small", (1, 0))                # the module saw ERR_BUFFER_TOO_SMALL
    assert e.value.message == "no such thing"
    with pytest.raises(stdb.ReducerError) as e:
        db.call("find_bad_buffer", (1, 0))
    assert e.value.kind == "trap" and str(0x7FFFFFF0) in e.value.message
    assert rows(db) == [(1, 9)]


def test_arguments_are_checked_before_the_call(db):
    with pytest.raises(stdb.DataError, match="reducer 'put'.*'k'.*u64"):
        db.call("put", ("x", 1))
    with pytest.raises(stdb.DataError, match="2 columns|2 values"):
        db.call("put", (1,))
    with pytest.raises(stdb.ReducerError, match="no reducer named 'nope'"):
        db.call("nope")
    with pytest.raises(stdb.DataError, match="32-byte identity"):
        db.call("put", (1, 1), sender=b"short")
    assert rows(db) == []


# ---------------------------------------------------------------- publish validation

@pytest.mark.parametrize("wasm, text", [
    (b"\x00asm\x02\x00\x00\x00", "not a valid WebAssembly module"),
    (b"(module (import \"env\" \"foo\" (func)) (memory (export \"memory\") 1))", "env.foo"),
    (b"(module (import \"stdb\" \"insert\" (func (param i32))) (memory (export \"memory\") 1))",
     "stdb.insert with signature (i32)"),
    (kv_module(version=2), "ABI version 2"),
    (wat.module({"abi": 1, "tables": [dict(KV, colour="red")], "reducers": []}, []), "unknown key 'colour'"),
    (wat.module({"abi": 1, "tables": [dict(KV, columns=[{"name": "k", "type": "u65"}])], "reducers": []}, []),
     "u65"),
    (wat.module(b"{not json", []), "not UTF-8 JSON"),
    (wat.module({"abi": 1, "tables": [], "reducers": [PUT, PUT]}, ["(i64.const 0)"] * 2), "declared twice"),
    (wat.module({"abi": 1, "tables": [], "reducers": [{"name": "i", "lifecycle": "boot", "params": []}]},
                ["(i64.const 0)"]), "unknown lifecycle 'boot'"),
])
def test_bad_modules_are_refused_and_change_nothing(tmp_path, wasm, text):
    d = Database(str(tmp_path / "bad"))
    try:
        with pytest.raises(stdb.ModuleError) as e:
            d.publish(wasm)
        assert text in str(e.value)
        assert d.store.datastore.table_names == [] and d.schema is None
    finally:
        d.close()
    d = Database(str(tmp_path / "bad"))
    try:
        assert d.schema is None                           # nothing was stored either
    finally:
        d.close()


def test_compatible_republish_migrates_and_keeps_rows(db):
    db.call("put", (1, 10))
    kv2 = dict(KV, indexes=[{"name": "by_v", "columns": ["v"], "kind": "btree"}])
    extra = {"name": "extra", "columns": [{"name": "id", "type": "u64"}], "primary_key": ["id"]}
    res = db.publish(kv_module(tables=(kv2, extra), reducers={**REDUCERS, "noop": "(i64.const 0)"}))
    assert res.created_tables == ["extra"] and res.altered_tables == ["kv"] and not res.first_publish
    assert "noop" in res.reducers
    assert rows(db) == [(1, 10)]
    assert db.store.datastore.schema("kv").index("by_v").columns == ("v",)
    db.call("noop")
    db.close()
    again = Database(db.path)                              # the altered table comes back from the log
    try:
        assert again.store.datastore.schema("kv").index("by_v").columns == ("v",)
        assert rows(again) == [(1, 10)]
    finally:
        again.close()


def test_incompatible_republish_lists_every_difference_and_changes_nothing(db):
    db.call("put", (1, 10))
    changed = dict(KV, columns=[{"name": "k", "type": "u32"}, {"name": "w", "type": "i64"}])
    with pytest.raises(stdb.ModuleError) as e:
        db.publish(kv_module(tables=(changed,)))
    msg = str(e.value)
    for part in ("column 'k' changed type from u64 to u32", "column 'v' was removed", "column 'w' was added"):
        assert part in msg
    with pytest.raises(stdb.ModuleError, match="table 'kv' was removed"):
        db.publish(kv_module(tables=()))
    assert db.store.datastore.schema("kv").column_names == ("k", "v")
    db.call("put", (2, 20))                                  # the old module still runs
    assert rows(db) == [(1, 10), (2, 20)]


def test_new_unique_index_that_rows_break_is_refused(db):
    db.call("put", (1, 7))
    db.call("put", (2, 7))
    kv2 = dict(KV, indexes=[{"name": "by_v", "columns": ["v"], "kind": "hash", "unique": True}])
    with pytest.raises(stdb.ConstraintError):
        db.publish(kv_module(tables=(kv2,)))
    assert [i.name for i in db.store.datastore.schema("kv").indexes] == []


# ---------------------------------------------------------------- lifecycle and schedules

SCHED = {"name": "tick_schedule", "scheduled": "tick",
         "columns": [{"name": "scheduled_id", "type": "u64", "auto_inc": True},
                     {"name": "scheduled_at", "type": "timestamp"}, {"name": "repeat_us", "type": "u64"}],
         "primary_key": ["scheduled_id"]}
TICKS = {"name": "ticks", "columns": [{"name": "n", "type": "u64", "auto_inc": True},
                                      {"name": "sid", "type": "u64"}, {"name": "at", "type": "timestamp"}],
         "primary_key": ["n"]}
SDATA, SAT = wat.strings("tick_schedule", "ticks", "pk")


def _sid(name: str) -> str:
    return f"(call $table_id (i32.const {SAT[name][0]}) (i32.const {SAT[name][1]}))"


# a ticks row (0, sid, at) at $tmp from the first 16 bytes at $p, or (0, marker, timestamp())
TICK_ROW = ("(i64.store (global.get $tmp) (i64.const 0)) "
            "(i64.store (i32.add (global.get $tmp) (i32.const 8)) (i64.load (local.get $p))) "
            "(i64.store (i32.add (global.get $tmp) (i32.const 16)) "
            "(i64.load (i32.add (local.get $p) (i32.const 8))))")


def _mark(marker: int) -> str:
    return ("(i64.store (global.get $tmp) (i64.const 0)) "
            f"(i64.store (i32.add (global.get $tmp) (i32.const 8)) (i64.const {marker})) "
            "(i64.store (i32.add (global.get $tmp) (i32.const 16)) (call $timestamp)) "
            f"(drop (call $insert {_sid('ticks')} (global.get $tmp) (i32.const 24))) (i64.const 0)")


SCHED_REDUCERS = [
    ({"name": "add", "params": SCHED["columns"]},
     f"(drop (call $insert {_sid('tick_schedule')} (local.get $p) (local.get $n))) (i64.const 0)"),
    ({"name": "tick", "params": SCHED["columns"]},
     TICK_ROW + f" (drop (call $insert {_sid('ticks')} (global.get $tmp) (i32.const 24))) (i64.const 0)"),
    ({"name": "cancel", "params": [{"name": "sid", "type": "u64"}]},
     f"(drop (call $delete {_sid('tick_schedule')} (i32.const 0) (local.get $p) (i32.const 8))) "
     "(i64.const 0)"),
    ({"name": "init", "lifecycle": "init", "params": []}, _mark(1000)),
    ({"name": "hello", "lifecycle": "client_connected", "params": []}, _mark(2000)),
    ({"name": "bye", "lifecycle": "client_disconnected", "params": []}, _mark(3000)),
]


def sched_module() -> bytes:
    desc = wat.describe([SCHED, TICKS], [r for r, _ in SCHED_REDUCERS])
    return wat.module(desc, [body for _, body in SCHED_REDUCERS], data=SDATA)


def test_lifecycle_reducers(tmp_path):
    clock = [10_000]
    d = Database(str(tmp_path / "l"), clock=lambda: clock[0])
    try:
        res = d.publish(sched_module())
        assert res.first_publish and res.init is not None
        assert rows(d, "ticks") == [(1, 1000, 10_000)]                     # init ran once
        assert not d.publish(sched_module()).first_publish                # re-publish: no init
        clock[0] = 20_000
        d.client_connected(b"\x05" * 32)
        clock[0] = 30_000
        d.client_disconnected(b"\x05" * 32)
        assert rows(d, "ticks")[1:] == [(2, 2000, 20_000), (3, 3000, 30_000)]
        with pytest.raises(stdb.ReducerError, match="lifecycle"):
            d.call("init")
        rec = log_records(d)[-1]
        assert rec.reducer == "bye" and rec.caller == b"\x05" * 32
    finally:
        d.close()


def test_scheduled_reducers_fire_in_order_repeat_and_cancel(tmp_path):
    clock = [0]
    d = Database(str(tmp_path / "s"), clock=lambda: clock[0])
    try:
        d.publish(sched_module())
        d.call("add", (0, 100, 0))           # id 1: once at 100
        d.call("add", (0, 50, 30))           # id 2: at 50, then every 30
        d.call("add", (0, 500, 0))           # id 3: cancelled below
        d.call("cancel", (3,))
        assert d.next_due() == 50
        assert d.run_due(now=40) == []
        fired = d.run_due(now=120)
        assert [r.reducer for r in fired] == ["tick", "tick"]
        assert [(r[1], r[2]) for r in rows(d, "ticks")[1:]] == [(2, 50), (1, 100)]   # (at, id) order
        assert rows(d, "tick_schedule") == [(2, 140, 30)]                 # one-shot gone, repeat moved on
        assert d.run_due(now=130) == []
        assert len(d.run_due(now=140)) == 1
        assert rows(d, "tick_schedule") == [(2, 170, 30)]
        assert [(r[1], r[2]) for r in rows(d, "ticks")[1:]][-1] == (2, 140)
        d.close()
        d = Database(d.path, clock=lambda: clock[0])                      # schedules are just rows:
        assert d.next_due() == 170                                       # they survive a restart
        assert len(d.run_due(now=1000)) == 1                             # missed runs are not replayed
        assert rows(d, "tick_schedule") == [(2, 1010, 30)]
    finally:
        d.close()


# ---------------------------------------------------------------- every type across the boundary

ALL_TYPES = list(BASE_TYPES) + ["option<i32>", "option<string>", "array<u16>", "array<string>",
                                "option<f64>", "array<identity>"]
EVERY = {"name": "every", "columns": [{"name": "id", "type": "u64", "auto_inc": True}] +
         [{"name": f"c{i}", "type": t} for i, t in enumerate(ALL_TYPES)], "primary_key": ["id"]}
EDATA, EAT = wat.strings("every")
# echo(args) inserts its argument row (id 0 -> auto-increment) and reports the stored row
# back through the insert write-back; then a scan reads it out of the table again
ECHO = (f"(if (i32.ne (call $insert (call $table_id (i32.const {EAT['every'][0]}) (i32.const 5)) "
        "(local.get $p) (local.get $n)) (i32.const 0)) (then unreachable)) (i64.const 0)")


@pytest.fixture(scope="module")
def echo_db(tmp_path_factory):
    d = Database(str(tmp_path_factory.mktemp("echo") / "db"))
    d.publish(wat.module(wat.describe([EVERY], [{"name": "echo", "params": EVERY["columns"]}]), [ECHO],
                         data=EDATA))
    yield d
    d.close()


@settings(max_examples=60)
@given(st.tuples(*[values_of(parse_type(t)) for t in ALL_TYPES]))
def test_every_type_round_trips_through_a_reducer(echo_db, values):
    res = echo_db.call("echo", (0,) + values)
    (row,) = res.delta.tables["every"].inserts
    codec = echo_db._codecs[0]
    assert row[0] > 0                                                 # auto-increment assigned
    assert codec.encode((0,) + row[1:]) == codec.encode((0,) + values)   # the same bits came back
    stored = echo_db.store.datastore.table("every")
    assert codec.encode(stored.get(stored.seek("pk", row[0])[0])) == codec.encode(row)


def test_a_host_bug_is_an_internal_error_after_rollback(db):
    db.call("put", (1, 1))
    db._host.inject_fault("insert")          # the host itself fails (no memory, a broken invariant)
    with pytest.raises(stdb.InternalError, match="host failed in an import: .*injected") as e:
        db.call("put", (3, 3))
    assert isinstance(e.value.__cause__, stdb.InternalError)
    assert rows(db) == [(1, 1)]
    db.call("put", (2, 2))
    assert rows(db) == [(1, 1), (2, 2)]


def test_database_subscriptions_queries_and_sql(db):
    """The in-process query API: subscribe, reducer commits report diffs (also to on_update),
    failed calls report none, one-off queries, owner-only DML logged as ':sql'."""
    owner = b"\x07" * 32
    db.call("put", (1, 10))
    seen = []
    db.on_update = seen.append
    [s] = db.subscribe(["SELECT * FROM kv WHERE v >= 10"], "me")
    assert s.rows == [(1, 10)] and db.subscribers(s.query_id) == {"me"}
    res = db.call("put", (2, 20))
    assert res.updates[s.query_id].inserts == [(2, 20)] and seen == [res.updates]
    assert db.call("put", (3, 5)).updates == {}                # not in the result: no diff
    with pytest.raises(stdb.ReducerError):
        db.call("put_then_fail", (4, 40))
    assert len(seen) == 1                                       # rolled back: nothing sent
    assert db.query("SELECT COUNT(*), SUM(v) FROM kv").rows == [(3, 35)]
    with pytest.raises(stdb.AuthError):
        db.sql("DELETE FROM kv WHERE k = 2")                   # no owner yet: nobody may
    db.owner = owner
    res = db.sql("DELETE FROM kv WHERE k = 2", sender=owner)
    assert res.updates[s.query_id].deletes == [(2, 20)]
    rec = log_records(db)[-1]
    assert (rec.reducer, rec.args, rec.caller) == (":sql", b"DELETE FROM kv WHERE k = 2", owner)
    assert db.unsubscribe(s.query_id, "me") and db.call("put", (5, 50)).updates == {}


def test_module_visibility_filters_and_a_module_update_ending_subscriptions(tmp_path):
    """A module's visibility filters narrow what non-owners see (queries and subscriptions),
    not the owner; they survive a restart; an update ends every subscription."""
    owner, other = b"\x07" * 32, b"\x08" * 32
    desc = wat.describe([KV], [{"name": "put", "params": PUT["params"]}])
    desc["visibility"] = ["SELECT * FROM kv WHERE v >= 10"]
    wasm = wat.module(desc, [REDUCERS["put"]], data=DATA)
    path = str(tmp_path / "db")
    with Database(path) as d:
        d.publish(wasm, owner=owner)
        d.call("put", (1, 5))
        d.call("put", (2, 50))
        assert d.query("SELECT k FROM kv", sender=other).rows == [(2,)]
        assert sorted(d.query("SELECT k FROM kv", sender=owner).rows) == [(1,), (2,)]
        [s] = d.subscribe(["SELECT * FROM kv"], "c", sender=other)
        assert s.rows == [(2, 50)]
        res = d.call("put", (3, 7))
        assert s.query_id not in res.updates                      # hidden from this subscriber
        assert d.call("put", (4, 70)).updates[s.query_id].inserts == [(4, 70)]
        update = d.publish(wasm, owner=owner)
        assert update.unsubscribed == {"c"} and d.subscribers(s.query_id) == set()
    with Database(path) as d:                                    # the stored module's filters
        assert sorted(d.query("SELECT k FROM kv", sender=other).rows) == [(2,), (4,)]


def test_a_failing_update_listener_does_not_fail_the_committed_call(db, caplog):
    db.subscribe(["SELECT * FROM kv"], "me")
    db.on_update = lambda updates: 1 / 0
    res = db.call("put", (1, 10))
    assert res.offset is not None and rows(db) == [(1, 10)]
    assert "on_update listener failed" in caplog.text


LDATA, LAT = wat.strings("kv", "hello", "pk")
# log the 4 KiB at $tmp (2 = info) the number of times the argument says, then succeed
CHATTY = ("(local.set $i (i32.const 0)) (block $done (loop $l "
          "(br_if $done (i32.ge_u (local.get $i) (i32.load (local.get $p)))) "
          "(call $log (i32.const 2) (global.get $tmp) (i32.const 4096)) "
          "(local.set $i (i32.add (local.get $i) (i32.const 1))) (br $l))) "
          f"(call $log (i32.const 1) (i32.const {LAT['hello'][0]}) (i32.const 5)) (i64.const 0)")


@pytest.fixture
def chatty(tmp_path):
    desc = wat.describe([KV], [{"name": "chatty", "params": [{"name": "n", "type": "u32"}]}])
    d = Database(str(tmp_path / "chatty"))
    d.publish(wat.module(desc, [CHATTY], data=LDATA))
    yield d
    d.close()


def test_module_logs_arrive_after_the_call_capped_at_a_mebibyte(chatty):
    seen = []
    chatty.on_log = seen.append
    chatty.call("chatty", (3,))
    assert [e["level"] for e in seen] == ["info"] * 3 + ["warn"]
    assert [len(e["message"]) for e in seen[:3]] == [4096] * 3 and seen[3]["message"] == "hello"
    seen.clear()
    chatty.call("chatty", (300,))                       # 1,230,315 bytes of log lines
    kept = (1 << 20) // (4096 + 5)                      # 255 lines (text and 5-byte head) fit in 1 MiB
    assert len(seen) == kept + 1
    assert all(len(e["message"]) == 4096 for e in seen[:kept])
    last = seen[-1]
    assert last["level"] == "warn" and last["reducer"] == "chatty"
    # the 45 lines past the cap are dropped, and so is the short "hello" after them, which
    # would have fitted: the lines kept are the first ones
    assert last["message"] == (f"46 more log lines ({45 * 4096 + 5} bytes) were dropped: a call keeps "
                               f"at most {1 << 20} bytes of log lines")
    seen.clear()
    chatty.call("chatty", (1,))                         # the next call starts afresh
    assert [e["message"] for e in seen][1:] == ["hello"]


def test_a_failing_log_listener_does_not_fail_the_call(chatty, caplog):
    def boom(entry):
        raise RuntimeError("listener down")
    chatty.on_log = boom
    res = chatty.call("chatty", (2,))
    assert res.reducer == "chatty" and res.offset is None     # it wrote no row: nothing to log
    assert "a module log listener failed" in caplog.text and "listener down" in caplog.text
    assert len(chatty.recent_logs) == 3
