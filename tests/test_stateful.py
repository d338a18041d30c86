"""Differential test: random operation sequences through a datastore on the Cython engine and
one on the pure-Python twin; every read, error class and commit delta must agree."""

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import stdb
from stdb import Column, Datastore, IndexDef, TableSchema
from stdb._core import reference
from stdb._core import table as cytable
from tests.strategies import DIFF_FLOATS, DIFF_NAMES, diff_rows

SCHEMA = TableSchema(
    "t",
    [Column("id", "u64", auto_inc=True), Column("n", "i32"), Column("opt", "option<string>"),
     Column("name", "string"), Column("f", "f64"), Column("arr", "array<i16>")],
    primary_key="id",
    indexes=[IndexDef("by_n", "n"), IndexDef("by_name", "name", "hash", unique=True),
             IndexDef("n_name", ("n", "name")), IndexDef("by_f", "f"), IndexDef("by_opt", "opt"),
             IndexDef("by_arr", "arr")],
)
ORDERED = {"by_n": [1], "n_name": [1, 3], "by_f": [4], "by_opt": [2], "by_arr": [5]}


def canon(rows):
    """Rows as a sorted list of reprs: multiset equality that treats NaN as equal to NaN."""
    return sorted(map(repr, rows))


def outcome(fn):
    try:
        return ("ok", fn())
    except stdb.StdbError as e:
        return ("err", type(e))


class Differential(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.stores = [Datastore(table_factory=cytable.Table), Datastore(table_factory=reference.Table)]
        for d in self.stores:
            d.create_table(SCHEMA)
        self.txs = None
        self.commits = 0

    def both(self, fn):
        """Run ``fn(tx)`` on both sides and return the two outcomes (asserting they agree)."""
        a, b = (outcome(lambda tx=tx: fn(tx)) for tx in self.txs)
        if a[0] == "ok" and b[0] == "ok":
            assert repr(a[1]) == repr(b[1]), (a, b)
        else:
            assert a == b, (a, b)
        return a

    # ---- transaction boundaries

    @precondition(lambda self: self.txs is None)
    @rule()
    def begin(self):
        self.txs = [d.begin() for d in self.stores]

    @precondition(lambda self: self.txs is not None)
    @rule()
    def commit(self):
        da, db = (tx.commit() for tx in self.txs)
        self.txs = None
        assert set(da.tables) == set(db.tables)
        for name in da.tables:
            assert canon(da.tables[name].deletes) == canon(db.tables[name].deletes)
            assert canon(da.tables[name].inserts) == canon(db.tables[name].inserts)
        self.commits += 1

    @precondition(lambda self: self.txs is not None)
    @rule()
    def rollback(self):
        for tx in self.txs:
            tx.rollback()
        self.txs = None

    # ---- writes

    @precondition(lambda self: self.txs is not None)
    @rule(row=diff_rows())
    def insert(self, row):
        self.both(lambda tx: tx.insert("t", row))

    @precondition(lambda self: self.txs is not None)
    @rule(key=st.integers(0, 14))
    def delete(self, key):
        self.both(lambda tx: tx.delete("t", key))

    @precondition(lambda self: self.txs is not None)
    @rule(row=diff_rows(ids=st.integers(1, 14)))
    def update(self, row):
        self.both(lambda tx: tx.update("t", row))

    @precondition(lambda self: self.txs is not None)
    @rule(row=diff_rows(ids=st.integers(1, 14)))
    def delete_row(self, row):
        self.both(lambda tx: tx.delete_row("t", row))

    # ---- reads inside the transaction

    @precondition(lambda self: self.txs is not None)
    @rule(key=st.integers(0, 14))
    def get(self, key):
        self.both(lambda tx: tx.get("t", key))

    @precondition(lambda self: self.txs is not None)
    @rule(index=st.sampled_from(["by_n", "by_name", "n_name", "by_f", "by_opt"]), data=st.data())
    def seek(self, index, data):
        key = {"by_n": st.integers(-5, 5), "by_name": DIFF_NAMES, "n_name": st.tuples(st.integers(-4, 4)) |
               st.tuples(st.integers(-4, 4), DIFF_NAMES), "by_f": DIFF_FLOATS,
               "by_opt": st.none() | DIFF_NAMES}[index]
        k = data.draw(key)
        a, b = (outcome(lambda tx=tx: canon(tx.seek("t", index, k))) for tx in self.txs)
        assert a == b

    @precondition(lambda self: self.txs is not None)
    @rule(index=st.sampled_from(sorted(ORDERED)), data=st.data(),
          lo_inc=st.booleans(), hi_inc=st.booleans(), limit=st.sampled_from([-1, -1, 0, 1, 3]))
    def range(self, index, data, lo_inc, hi_inc, limit):
        bound = {"by_n": st.integers(-5, 5), "n_name": st.tuples(st.integers(-4, 4)) |
                 st.tuples(st.integers(-4, 4), DIFF_NAMES), "by_f": DIFF_FLOATS,
                 "by_opt": st.none() | DIFF_NAMES,
                 "by_arr": st.lists(st.integers(-3, 3), max_size=3).map(lambda x: (x,))}[index]
        lo = data.draw(st.none() | bound)
        hi = data.draw(st.none() | bound)
        cols = ORDERED[index]
        results = []
        for tx in self.txs:
            res = outcome(lambda tx=tx: tx.range("t", index, lo, hi, lo_inc, hi_inc, limit))
            if res[0] == "ok":
                rows = res[1]
                # same keys in the same order; rows compared as a multiset per key.  -0.0 and
                # 0.0 are one key (docs/row-format.md), so rows holding either may come in
                # either order: the key is written as 0.0
                results.append(("ok", [repr(tuple(0.0 if isinstance(r[c], float) and r[c] == 0 else r[c]
                                                  for c in cols)) for r in rows],
                                None if limit >= 0 else canon(rows)))
            else:
                results.append(res)
        assert results[0] == results[1]

    @precondition(lambda self: self.txs is not None)
    @rule(col=st.sampled_from(["n", "f", "name", "opt"]),
          op=st.sampled_from(["==", "!=", "<", "<=", ">", ">="]), data=st.data())
    def scan_where(self, col, op, data):
        value = data.draw({"n": st.integers(-5, 5), "f": DIFF_FLOATS, "name": DIFF_NAMES,
                           "opt": st.none() | DIFF_NAMES}[col])
        a, b = (outcome(lambda tx=tx: canon(tx._table("t").rows(tx._table("t").scan_where(col, op, value))))
                for tx in self.txs)
        assert a == b

    # ---- committed state

    @precondition(lambda self: self.txs is None)
    @invariant()
    def committed_state_agrees(self):
        a, b = (canon(d.scan("t")) for d in self.stores)
        assert a == b
        for d in self.stores:
            d.table("t").check_invariants()
        assert self.stores[0].table("t").sequence_state() == self.stores[1].table("t").sequence_state()


TestDifferential = Differential.TestCase
TestDifferential.settings = settings(max_examples=1000, stateful_step_count=30, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])
