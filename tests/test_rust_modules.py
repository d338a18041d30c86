"""The Rust examples (transfer, chat, arena) behave exactly like the C ones: the C and the Rust
build of each example are published in two Databases and driven by the same calls (failing ones
included); every outcome (commit deltas, subscription diffs, errors) and the final tables must be
identical, and so must the module descriptions. The arena runs 150 scheduled ticks."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stdb
from stdb import Database
from tests.rust_toolchain import build_pair
from tests.test_module import rows

ALICE, BOB, CAROL = b"\xaa" * 32, b"\xbb" * 32, b"\xcc" * 32


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    out = tmp_path_factory.mktemp("rust")
    return {name: build_pair(out, name) for name in ("transfer", "chat", "arena")}


def outcome(fn: Any) -> tuple:
    """What a call did, comparable between the two builds."""
    try:
        res = fn()
    except stdb.ReducerError as e:
        return ("failed", e.kind, e.message)
    except stdb.StdbError as e:                 # refused before the module ran (arguments, names)
        return ("refused", type(e).__name__, str(e))
    if res is None:
        return ("none",)
    tables = {name: (sorted(d.deletes), sorted(d.inserts)) for name, d in res.delta.tables.items()}
    updates = {qid: (sorted(d.deletes), sorted(d.inserts)) for qid, d in res.updates.items()}
    return ("committed", tables, updates)


class Twins:
    """The C and the Rust build of one example, published side by side."""

    def __init__(self, tmp_path, wasm: tuple[bytes, bytes], queries: list[str],
                 clock: list[int] | None = None) -> None:
        clock = clock or [3_000_000_000_000_000]          # one fake clock: the same time for both
        self.dbs = [Database(str(tmp_path / name), clock=lambda: clock[0]) for name in ("c", "rust")]
        self.published = [outcome(lambda db=db, w=w: db.publish(w).init)
                          for db, w in zip(self.dbs, wasm, strict=True)]
        self.subscribed = [[s.rows for s in db.subscribe(queries, "sub")] for db in self.dbs]
        assert self.published[0] == self.published[1] and self.subscribed[0] == self.subscribed[1]
        self.ts = 4_000_000_000_000_000    # after the real clock: the call path keeps timestamps increasing

    def same(self, what: str, *args: Any, **kw: Any) -> tuple:
        self.ts += 1_000
        if what == "call":
            kw["timestamp"] = self.ts
        results = [outcome(lambda db=db: getattr(db, what)(*args, **kw)) for db in self.dbs]
        assert results[0] == results[1], (what, args, kw)
        return results[0]

    def tables(self, *names: str) -> list:
        got = [[rows(db, n) for n in names] for db in self.dbs]
        assert got[0] == got[1]
        return got[0]

    def close(self) -> None:
        for db in self.dbs:
            db.close()


def test_descriptions_are_identical(tmp_path, pairs):
    for name, wasm in pairs.items():
        t = Twins(tmp_path / name, wasm, [])
        try:
            assert t.published[0] == t.published[1]
            assert t.dbs[0].describe() == t.dbs[1].describe()
        finally:
            t.close()


def test_transfer_twins(tmp_path, pairs):
    t = Twins(tmp_path, pairs["transfer"],
              ["SELECT * FROM account", "SELECT * FROM account WHERE balance > 50"])
    try:
        assert t.same("call", "create_account", (1, 100))[0] == "committed"
        t.same("call", "create_account", (2, 5))
        debt = ("failed", "error", "a new account cannot be in debt")
        assert t.same("call", "create_account", (3, -1)) == debt
        assert t.same("call", "create_account", (1, 1)) == ("failed", "error", "account already exists")
        res = t.same("call", "transfer", (1, 2, 30))
        assert res[1]["account"] == ([(1, 100), (2, 5)], [(1, 70), (2, 35)])
        for args, msg in (((2, 1, 36), "insufficient funds"), ((1, 9, 1), "no such account"),
                          ((1, 2, 0), "amount must be positive")):
            assert t.same("call", "transfer", args) == ("failed", "error", msg)
        assert t.same("call", "transfer", (1, 1, 10)) == ("committed", {}, {})
        assert t.same("call", "transfer", (1,))[0] == "refused"         # wrong arguments
        assert t.same("call", "no_such_reducer", ())[0] == "failed"      # a ReducerError without a kind
        assert t.tables("account") == [[(1, 70), (2, 35)]]
    finally:
        t.close()


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["create_account", "transfer"]), st.integers(0, 4),
                          st.integers(0, 4), st.integers(-5, 120)), max_size=25))
def test_transfer_twins_on_random_calls(tmp_path_factory, pairs, ops):
    t = Twins(tmp_path_factory.mktemp("twins"), pairs["transfer"], ["SELECT * FROM account"])
    try:
        for name, a, b, amount in ops:
            t.same("call", name, (a, amount) if name == "create_account" else (a, b, amount))
        t.tables("account")
    finally:
        t.close()


def test_chat_twins(tmp_path, pairs):
    t = Twins(tmp_path, pairs["chat"], ["SELECT * FROM user", "SELECT * FROM message"])
    try:
        assert t.same("call", "set_name", ("carol",), sender=CAROL) == ("failed", "error", "connect first")
        assert t.same("client_connected", ALICE)[0] == "committed"
        t.same("client_connected", BOB)
        t.same("call", "set_name", ("alice",), sender=ALICE)
        empty = ("failed", "error", "names must not be empty")
        assert t.same("call", "set_name", ("",), sender=ALICE) == empty
        empty = ("failed", "error", "messages must not be empty")
        assert t.same("call", "send_message", ("",), sender=BOB) == empty
        t.same("call", "send_message", ("hi bob",), sender=ALICE)
        t.same("call", "send_message", ("hi alice ✓",), sender=BOB)
        t.same("client_disconnected", BOB)
        t.same("client_connected", BOB)
        assert t.same("call", "client_connected", (), sender=CAROL)[0] == "failed"   # lifecycle: refused
        users, messages = t.tables("user", "message")
        assert users == [(ALICE, "alice", True), (BOB, "", True)]
        assert [(m[0], m[1], m[3]) for m in messages] == [(1, ALICE, "hi bob"), (2, BOB, "hi alice ✓")]
    finally:
        t.close()


def test_arena_twins(tmp_path, pairs):
    tick, clock = 50_000, [1_000_000_000_000]           # a multiple of 100 ticks: the food top-up runs
    t = Twins(tmp_path, pairs["arena"], ["SELECT * FROM player", "SELECT * FROM food WHERE x < 2000"],
              clock=clock)
    assert t.published[0][0] == "committed"
    players = [bytes([i]) * 32 for i in range(1, 7)]
    try:
        for i, p in enumerate(players):
            t.same("client_connected", p)
            t.same("call", "set_direction", ((i * 37) % 11 - 5, (i * 53) % 13 - 6), sender=p)
        assert t.same("call", "set_name", ("",), sender=players[0])[0] == "failed"
        t.same("call", "set_name", ("ann",), sender=players[0])
        assert t.same("call", "set_direction", (2_000_000, 0), sender=players[1])[0] == "failed"
        first = ("failed", "error", "connect first")
        assert t.same("call", "set_direction", (1, 1), sender=b"\xee" * 32) == first
        only = ("failed", "error", "tick is run by the schedule only")
        assert t.same("call", "tick", (1, clock[0], 0, 300), sender=players[0]) == only
        fired = eaten = 0
        for n in range(150):
            clock[0] += tick
            got = [[outcome(lambda r=r: _result(r)) for r in db.run_due()] for db in t.dbs]
            assert got[0] == got[1], n
            fired += len(got[0])
            eaten += sum(len(o[1].get("food", ([], []))[0]) for o in got[0] if o[0] == "committed")
            if n == 60:
                t.same("client_disconnected", players[2])
                t.same("call", "set_direction", (0, 0), sender=players[3])
        assert fired == 150 and eaten > 0, eaten          # the players did eat food on the way
        player_rows, food_rows, schedule = t.tables("player", "food", "tick_schedule")
        assert len(player_rows) == 5 and len(food_rows) == 300 and len(schedule) == 1
    finally:
        t.close()


def _result(r: Any) -> Any:
    """A run_due entry as a call would give it: the CallResult, or the ReducerError raised."""
    if isinstance(r, Exception):
        raise r
    return r
