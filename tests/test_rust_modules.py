"""The Rust examples behave exactly like the C ones: the C and the Rust build of each example
are published in two Databases and driven by the same calls (failing ones included); every
outcome (commit deltas, subscription diffs, errors) and the final tables must be identical, and
so must the module descriptions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stdb
from stdb import Database
from tests.rust_toolchain import build_pair

ALICE, BOB, CAROL = b"\xaa" * 32, b"\xbb" * 32, b"\xcc" * 32


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    out = tmp_path_factory.mktemp("rust")
    return {name: build_pair(out, name) for name in ("transfer", "chat")}


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

    def __init__(self, tmp_path, wasm: tuple[bytes, bytes], queries: list[str]) -> None:
        self.dbs = [Database(str(tmp_path / "c")), Database(str(tmp_path / "rust"))]
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
        got = [[sorted(db.query(f"SELECT * FROM {n}").rows) for n in names] for db in self.dbs]
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
