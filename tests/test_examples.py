"""The example modules (examples/) and a C schedule module, built from source with the SDK
and run through Database.call."""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stdb
from stdb import Database, build_module
from tests.test_module import log_records, rows

ROOT = pathlib.Path(__file__).resolve().parents[1]
ALICE, BOB = b"\xaa" * 32, b"\xbb" * 32


@pytest.fixture(scope="session")
def wasm(tmp_path_factory):
    out = tmp_path_factory.mktemp("wasm")
    built = {}
    for name, src in (("transfer", "examples/transfer/transfer.c"), ("chat", "examples/chat/chat.c"),
                      ("scheduled", "tests/modules/scheduled.c"), ("notes", "tests/modules/notes.c")):
        built[name] = pathlib.Path(build_module(str(ROOT / src), str(out / f"{name}.wasm"))).read_bytes()
    return built


def test_build_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.c"
    bad.write_text('#include "stdb.h"\nint f(void) { return undefined_thing; }\n')
    with pytest.raises(stdb.ModuleError, match="undefined_thing"):
        build_module(str(bad), str(tmp_path / "bad.wasm"))
    with pytest.raises(stdb.ModuleError, match="no such source file"):
        build_module(str(tmp_path / "missing.c"), str(tmp_path / "x.wasm"))


def test_transfer_module(tmp_path, wasm):
    with Database(str(tmp_path / "t")) as db:
        res = db.publish(wasm["transfer"])
        assert res.created_tables == ["account"] and res.init is not None
        assert db._host.recent_logs[-1]["message"] == "transfer module initialised"
        db.call("create_account", (1, 100))
        db.call("create_account", (2, 5))
        res = db.call("transfer", (1, 2, 30), sender=ALICE)
        assert res.delta.tables["account"].inserts == [(1, 70), (2, 35)]
        rec = log_records(db)[-1]
        assert (rec.reducer, rec.caller, rec.offset) == ("transfer", ALICE, res.offset)
        for args, msg in (((2, 1, 36), "insufficient funds"), ((1, 9, 1), "no such account"),
                          ((1, 2, 0), "amount must be positive")):
            with pytest.raises(stdb.ReducerError, match=msg) as e:
                db.call("transfer", args)
            assert e.value.kind == "error"
        with pytest.raises(stdb.ReducerError, match="already exists"):
            db.call("create_account", (1, 1))
        assert rows(db, "account") == [(1, 70), (2, 35)]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["create", "transfer"]), st.integers(0, 6), st.integers(0, 6),
                          st.integers(-5, 120)), max_size=40))
def test_transfer_conserves_money_and_matches_a_model(tmp_path_factory, wasm, ops):
    model: dict[int, int] = {}
    with Database(str(tmp_path_factory.mktemp("conserve") / "db")) as db:
        db.publish(wasm["transfer"])
        for op, a, b, amount in ops:
            if op == "create":
                ok = a not in model and amount >= 0
                if ok:
                    model[a] = amount
                args: tuple = (a, amount)
                name = "create_account"
            else:
                ok = amount > 0 and a in model and b in model and model[a] >= amount
                if ok and a != b:
                    model[a] -= amount
                    model[b] += amount
                args, name = (a, b, amount), "transfer"
            try:
                db.call(name, args)
                assert ok, (name, args)
            except stdb.ReducerError as e:
                assert not ok and e.kind == "error", (name, args, e)
            assert sum(r[1] for r in db.store.datastore.scan("account")) == sum(model.values())
        assert rows(db, "account") == sorted(model.items())


def test_chat_module(tmp_path, wasm):
    with Database(str(tmp_path / "c")) as db:
        db.publish(wasm["chat"])
        db.client_connected(ALICE)
        db.client_connected(BOB)
        db.call("set_name", ("alice",), sender=ALICE)
        with pytest.raises(stdb.ReducerError, match="names must not be empty"):
            db.call("set_name", ("",), sender=ALICE)
        with pytest.raises(stdb.ReducerError, match="messages must not be empty"):
            db.call("send_message", ("",), sender=BOB)
        t1 = db.call("send_message", ("hi bob",), sender=ALICE).timestamp
        t2 = db.call("send_message", ("hi alice ✓",), sender=BOB).timestamp
        db.client_disconnected(BOB)
        assert rows(db, "user") == [(ALICE, "alice", True), (BOB, "", False)]
        assert rows(db, "message") == [(1, ALICE, t1, "hi bob"), (2, BOB, t2, "hi alice ✓")]
        with pytest.raises(stdb.ReducerError, match="connect first"):
            db.call("set_name", ("carol",), sender=b"\xcc" * 32)


def test_scheduled_module_in_c(tmp_path, wasm):
    clock = [1_000]
    with Database(str(tmp_path / "s"), clock=lambda: clock[0]) as db:
        db.publish(wasm["scheduled"])
        assert db.schema.schedules == {"tick_schedule": "tick"}
        db.call("schedule", (0, 1_500, 0, "once"))
        db.call("schedule", (0, 1_200, 100, "every 100"))
        clock[0] = 1_550
        fired = db.run_due()
        assert [r.reducer for r in fired] == ["tick"] * 2
        assert [(r[1], r[3]) for r in rows(db, "ticks")] == [(2, "every 100"), (1, "once")]
        assert rows(db, "tick_schedule") == [(2, 1_600, 100, "every 100")]
        with pytest.raises(stdb.ReducerError) as e:       # the count comes back as the "error"
            db.call("count_ticks", (2,))
        assert e.value.message == "1"


def test_visibility_filters_in_c(tmp_path, wasm):
    owner = b"\x01" * 32
    with Database(str(tmp_path / "n")) as db:
        db.publish(wasm["notes"], owner=owner)
        assert [f.sql for f in db.schema.visibility["note"]] == [
            "SELECT * FROM note WHERE author = :sender", "SELECT * FROM note WHERE text = 'hello, all'"]
        for who, text in ((ALICE, "alice's"), (BOB, "bob's"), (BOB, "hello, all")):
            db.call("add_note", (text,), sender=who)
        texts = lambda who: sorted(r[0] for r in db.query("SELECT text FROM note", sender=who).rows)  # noqa: E731
        assert texts(ALICE) == ["alice's", "hello, all"]
        assert texts(BOB) == ["bob's", "hello, all"]
        assert texts(owner) == ["alice's", "bob's", "hello, all"]
