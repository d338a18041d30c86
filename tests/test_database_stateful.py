"""The whole Database API against a pure-Python model (hypothesis state machine): reducer calls
that commit, fail, trap after writing and run out of fuel; one-off queries; subscriptions whose
diffs keep client-side caches; snapshots; module updates; and restarts (recovery) in the middle.

The model is a dict id -> qty.  After every step the database's rows equal the model, and every
live subscription's cache (its initial rows plus every diff it was sent) equals the query over
the model.
"""

from __future__ import annotations

import pathlib
import shutil
import tempfile
from collections import Counter

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import stdb
from stdb.module.database import Database, Limits

ROOT = pathlib.Path(__file__).resolve().parents[1]
IDS = st.integers(1, 12)
QTY = st.integers(-5, 40)
LIMITS = Limits(fuel=2_000_000)
OWNER = b"\x07" * 32


@pytest.fixture(scope="module")
def ledger_wasm(tmp_path_factory):
    out = tmp_path_factory.mktemp("wasm") / "ledger.wasm"
    return pathlib.Path(stdb.build_module(str(ROOT / "tests/modules/ledger.c"), str(out))).read_bytes()


class DatabaseMachine(RuleBasedStateMachine):
    wasm: bytes = b""

    @initialize()
    def open(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="stdb-dbsm-")
        self.db = Database(self.dir, limits=LIMITS)
        self.db.publish(self.wasm, owner=OWNER)
        self.model: dict[int, int] = {}
        self.subs: dict[int, tuple[int, Counter]] = {}      # query id -> (threshold, cached rows)
        self.last_offset = -1

    def teardown(self) -> None:
        if hasattr(self, "db"):
            self.db.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---- helpers

    def _apply_updates(self, updates: dict) -> None:
        for qid, d in updates.items():
            if qid in self.subs:
                cache = self.subs[qid][1]
                for r in d.deletes:
                    assert cache[r] > 0, f"query {qid}: a delete of a row the client never had: {r}"
                    cache[r] -= 1
                    if not cache[r]:
                        del cache[r]
                for r in d.inserts:
                    cache[r] += 1

    def _committed(self, res: stdb.CallResult) -> None:
        if res.offset is not None:
            assert res.offset > self.last_offset, "offsets only grow"
            self.last_offset = res.offset
        self._apply_updates(res.updates)

    def _call_fails(self, reducer: str, args: tuple, kind: str, text: str | None = None) -> None:
        with pytest.raises(stdb.ReducerError) as e:
            self.db.call(reducer, args)
        assert e.value.kind == kind, (reducer, args, e.value)
        if text is not None:
            assert text in e.value.message

    # ---- reducers

    @rule(i=IDS, q=QTY)
    def put(self, i: int, q: int) -> None:
        self._committed(self.db.call("put", (i, q)))
        self.model[i] = q

    @rule(i=IDS, q=st.integers(-2, 30))
    def take(self, i: int, q: int) -> None:
        if i not in self.model:
            self._call_fails("take", (i, q), "error", "no such item")
        elif q <= 0:
            self._call_fails("take", (i, q), "error", "positive")
        elif self.model[i] < q:
            self._call_fails("take", (i, q), "error", "not enough")
        else:
            self._committed(self.db.call("take", (i, q)))
            self.model[i] -= q

    @rule(i=IDS)
    def remove(self, i: int) -> None:
        if i in self.model:
            self._committed(self.db.call("remove", (i,)))
            del self.model[i]
        else:
            self._call_fails("remove", (i,), "error", "no such item")

    @rule(i=IDS)
    def boom(self, i: int) -> None:
        self._call_fails("boom", (i,), "trap")

    @rule(i=st.integers(13, 20))
    def spin(self, i: int) -> None:
        self._call_fails("spin", (i,), "out_of_fuel")

    @rule(i=IDS)
    def bad_arguments(self, i: int) -> None:
        with pytest.raises(stdb.DataError):
            self.db.call("put", (i, "not a number"))
        with pytest.raises(stdb.ReducerError):
            self.db.call("no_such_reducer", ())

    # ---- queries and subscriptions

    @rule(k=QTY)
    def one_off(self, k: int) -> None:
        rows = self.db.query(f"SELECT id, qty FROM item WHERE qty >= {k}").rows
        assert sorted(rows) == sorted((i, q) for i, q in self.model.items() if q >= k)

    @precondition(lambda self: len(self.subs) < 6)
    @rule(k=QTY)
    def subscribe(self, k: int) -> None:
        [s] = self.db.subscribe([f"SELECT * FROM item WHERE qty >= {k}"], "client")
        if s.query_id in self.subs:               # the same query again: one subscription
            return
        self.subs[s.query_id] = (k, Counter(s.rows))

    @precondition(lambda self: bool(self.subs))
    @rule(data=st.data())
    def unsubscribe(self, data: st.DataObject) -> None:
        qid = data.draw(st.sampled_from(sorted(self.subs)))
        assert self.db.unsubscribe(qid, "client")
        del self.subs[qid]

    @rule(sql=st.sampled_from(["DELETE FROM item WHERE qty < 0", "UPDATE item SET qty = 7 WHERE id = 3"]))
    def owner_dml(self, sql: str) -> None:
        with pytest.raises(stdb.AuthError):               # anyone else: refused, nothing changes
            self.db.sql(sql)
        res = self.db.sql(sql, sender=OWNER)
        assert isinstance(res, stdb.CallResult)
        self._committed(res)
        if sql.startswith("DELETE"):
            self.model = {i: q for i, q in self.model.items() if q >= 0}
        elif 3 in self.model:
            self.model[3] = 7

    # ---- durability and module lifecycle

    @rule()
    def snapshot(self) -> None:
        self.db.store.snapshot()

    @rule()
    def restart(self) -> None:
        """Close and reopen: recovery from the latest snapshot plus the log tail.  Subscriptions
        belong to the process and end with it."""
        self.db.close()
        self.db = Database(self.dir, limits=LIMITS)
        self.subs.clear()

    @rule()
    def republish(self) -> None:
        """The same module again is an update: every subscription ends."""
        res = self.db.publish(self.wasm, owner=OWNER)
        assert not res.first_publish and res.created_tables == [] and res.altered_tables == []
        assert ("client" in res.unsubscribed) == bool(self.subs)
        self.subs.clear()

    # ---- invariants

    @invariant()
    def rows_equal_the_model(self) -> None:
        if not hasattr(self, "db"):
            return
        assert sorted(self.db.query("SELECT id, qty FROM item").rows) == sorted(self.model.items())

    @invariant()
    def caches_equal_their_queries(self) -> None:
        for qid, (k, cache) in self.subs.items():
            want = Counter((i, q) for i, q in self.model.items() if q >= k)
            assert cache == want, f"subscription {qid} (qty >= {k}): cache {dict(cache)} vs {dict(want)}"


def test_database_state_machine(ledger_wasm):
    DatabaseMachine.wasm = ledger_wasm
    runner = DatabaseMachine.TestCase
    runner.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
    runner().runTest()
