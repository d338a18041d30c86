"""The Rust SDK (sdk/rust) through a module that uses every part of it (tests/modules/features.rs):
column types, find/insert/update/delete, scans, filters and range scans (prefixes of a composite
key too), errors that roll back, panics that trap with their message in the log, context, and a
schedule table (tests/modules/scheduled.rs, compared with the C twin)."""

from __future__ import annotations

import math
import pathlib

import pytest

import stdb
from stdb import Database, build_module
from tests.rust_toolchain import ROOT, require_rust
from tests.test_module import rows

ALICE, BOB = b"\xaa" * 32, b"\xbb" * 32


@pytest.fixture(scope="module")
def wasm(tmp_path_factory):
    require_rust()
    out = tmp_path_factory.mktemp("rs")
    built = {}
    for key, src in (("features", "features.rs"), ("scheduled", "scheduled.rs"),
                     ("scheduled_c", "scheduled.c")):
        wasm = build_module(str(ROOT / "tests/modules" / src), str(out / f"{key}.wasm"))
        built[key] = pathlib.Path(wasm).read_bytes()
    return built


@pytest.fixture
def db(tmp_path, wasm):
    with Database(str(tmp_path / "f")) as d:
        d.publish(wasm["features"])
        yield d


def message(db: Database, reducer: str, args: tuple, **kw) -> str:
    with pytest.raises(stdb.ReducerError) as e:
        db.call(reducer, args, **kw)
    return e.value.message


def logs(db: Database) -> list[str]:
    return [e["message"] for e in db._host.recent_logs]


def test_column_types_round_trip(db):
    res = db.call("add", ("a", 4), sender=ALICE, timestamp=4_000_000_000_000_000)
    (row,) = res.delta.tables["item"].inserts
    assert row == (1, "a", 4, ALICE, 2.0, 1.5, True, -3, 65535, b"\x00\xff", ["a"], "a",
                   4_000_000_000_000_000)
    db.call("add", ("z", -1), sender=BOB)
    (row,) = [r for r in rows(db, "item") if r[1] == "z"]
    assert row[4] == -0.5 and row[11] is None and not row[6]
    assert logs(db)[-2:] == ["added a as 1", "added z as 2"]
    assert not math.isnan(row[4])


def test_errors_roll_back(db):
    assert message(db, "add_then_fail", ("x",)) == "failed after adding x"
    db.call("add", ("b", 1))
    assert message(db, "add", ("b", 2)) == "duplicate code"
    assert message(db, "rescore", (9, 1)) == "no such item"
    assert message(db, "remove", (9,)) == "no such item"
    assert [r[1] for r in rows(db, "item")] == ["b"]
    msg = message(db, "bad_index_err", ())
    assert msg.startswith("stdb error -2:") and "by_nothing" in msg
    db.call("bad_index", ())                        # a failed filter is an empty iteration


def test_find_update_delete_scan_filter_range(db):
    for code, score in (("a", 5), ("b", 1), ("c", 9), ("d", 5)):
        db.call("add", (code, score), sender=ALICE if code != "c" else BOB)
    db.call("rescore", (2, 3))
    assert message(db, "report", (3, 9), sender=ALICE) == \
        "all=[1, 2, 3, 4] range=[3, 5, 5] above=[5, 5, 9] mine=3 b=Some(2)"
    db.call("remove", (1,))
    res = db.call("remove_score", (5,))
    assert res.delta.tables["item"].deletes == [(4, "d", 5, ALICE, 2.5, 1.5, False, -3, 65535, b"\x00\xff",
                                               ["a"], "d", res.delta.tables["item"].deletes[0][12])]
    assert logs(db)[-1] == "removed 1"
    assert [r[1] for r in rows(db, "item")] == ["b", "c"]


def test_composite_keys_and_a_failed_range(db):
    db.call("pairs", (1, 2, 7))
    db.call("pairs", (1, 3, None))
    assert logs(db)[-1] == "pair None range 0 error Some(-8)"      # ERR_WRONG_INDEX_KIND
    dup = message(db, "pairs", (1, 2, 0))
    assert dup.startswith("stdb error -4: table 'pair': primary key (a, b) already")
    assert rows(db, "pair") == [(1, 2, 7), (1, 3, None)]


def test_context(db):
    msg = message(db, "context", (), sender=ALICE, timestamp=4_100_000_000_000_000)
    parts = dict(p.split("=") for p in msg.split())
    assert parts["sender"] == "aa" and parts["ts"] == "4100000000000000" and parts["conn"] == "00"
    again = dict(p.split("=") for p in message(db, "context", (), sender=ALICE).split())
    assert 0 <= int(parts["rng"]) < 1000 and int(parts["seed"]) >= 0 and again["seed"] != ""


def test_a_panic_traps_with_its_message_and_rolls_back(db):
    with pytest.raises(stdb.ReducerError) as e:
        db.call("boom", ("kaboom",))
    assert e.value.kind == "trap"
    assert e.value.message == "unreachable (panicked at 'boom: kaboom', features.rs:58:5)"
    assert "boom: kaboom" in str(e.value)
    assert any("boom: kaboom" in line and "panicked" in line for line in logs(db))
    assert rows(db, "item") == []
    db.call("add", ("after", 1))                    # the next call works
    assert [r[1] for r in rows(db, "item")] == ["after"]


def test_visibility(db):
    assert [f.sql for f in db.schema.visibility["item"]] == ["SELECT * FROM item WHERE owner = :sender"]


def test_scheduled_reducer(tmp_path, wasm):
    # the Rust twin of tests/test_examples.py's test_scheduled_module_in_c, same expectations
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
        assert message(db, "count_ticks", (2,)) == "1"


def test_scheduled_descriptions_match_c(tmp_path, wasm):
    with Database(str(tmp_path / "c")) as c, Database(str(tmp_path / "r")) as r:
        c.publish(wasm["scheduled_c"])
        r.publish(wasm["scheduled"])
        assert c.describe() == r.describe()
