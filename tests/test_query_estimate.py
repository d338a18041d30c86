"""The planner's estimates, up-front refusal and EXPLAIN (issue 23, point 2): stdb/query/estimate.py,
stdb/query/execute.py (estimate_select, explain_select), Budget.refuse_plan."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stdb
from stdb import Column, Datastore, IndexDef, TableSchema
from stdb.query import estimate as E
from stdb.query.bind import Scope
from stdb.query.budget import DEFAULT_LIMITS, Budget, QueryLimits
from stdb.query.execute import estimate_select, explain_select, run_select
from stdb.query.parser import parse
from stdb.query.render import render
from stdb.query.service import QueryService
from tests.strategies import draw_sql_tables, sql_conditions

OWNER = b"\x07" * 32
OTHER = b"\x08" * 32
HUGE = QueryLimits(rows_examined=10**12, rows_returned=10**12, seconds=3600)

# big, big2: 2,000 rows each, v = id % 10 (no index on v); u: 500 rows, k = id % 50 with a
# btree index (10 rows per key), s a string
BIG = [TableSchema(n, [Column("id", "u64"), Column("v", "i64")], primary_key="id") for n in ("big", "big2")]
U = TableSchema("u", [Column("id", "u64"), Column("k", "i64"), Column("s", "string")], primary_key="id",
                indexes=[IndexDef("u_k", "k")])


class Watched:
    """A table whose reads of rows are counted (its index counts are not rows)."""

    ROW_READS = ("scan", "get", "seek", "range", "scan_where", "rows", "rowids")

    def __init__(self, table, log):
        self._t, self._log = table, log

    def __len__(self):
        return len(self._t)

    def __getattr__(self, name):
        if name in self.ROW_READS:
            self._log.append((self._t.name, name))
        return getattr(self._t, name)


@pytest.fixture(scope="module")
def ds():
    d = Datastore()
    for s in BIG + [U]:
        d.create_table(s)
    with d.begin() as tx:
        for n in ("big", "big2"):
            for i in range(2000):
                tx.insert(n, (i, i % 10))
        for i in range(500):
            tx.insert("u", (i, i % 50, "x" if i % 4 == 0 else "y"))
    return d


def _scope(ds, sql, sender=OWNER):
    st_ = parse(sql)
    if isinstance(st_, stdb.query.ast.Explain):
        st_ = st_.statement
    refs = [st_.table] + [j.table for j in st_.joins]
    return st_, Scope(sql, refs, lambda n: ds.schema(n) if n in ds.table_names else None, {"sender": sender})


def _examined(ds, sql):
    """What ``sql`` really examines, run without a bound."""
    st_, scope = _scope(ds, sql)
    budget = Budget(HUGE)
    run_select(st_, scope, ds.table, budget)
    return budget.examined


def _estimate(ds, sql, cap=E.COUNT_CAP):
    st_, scope = _scope(ds, sql)
    return estimate_select(st_, scope, ds.table, cap)


def _explain(ds, sql, limits=None, sender=OWNER):
    log: list = []
    st_, scope = _scope(ds, sql, sender)
    budget = None if limits is None else Budget(limits)
    res = explain_select(st_, scope, lambda n: Watched(ds.table(n), log), budget)
    assert log == []                        # EXPLAIN reads no row: index counts only
    return res


@pytest.mark.parametrize("sql", [
    "SELECT * FROM big",                                        # full scan
    "SELECT * FROM big WHERE id = 7",                           # unique seek
    "SELECT * FROM big WHERE id IN (1, 2, 3, 5000)",            # unique seek, a key with no row
    "SELECT * FROM u WHERE k = 3",                              # non-unique seek: counted
    "SELECT * FROM u WHERE k IN (3, 4) AND s = 'x'",
    "SELECT * FROM u WHERE k > 40",                             # range: counted
    "SELECT * FROM u WHERE k BETWEEN 3 AND 5 AND k < 5",
    "SELECT a.id FROM u a JOIN u b ON a.k < b.k",               # nested loop: 500 × 500
    "SELECT a.id FROM u a JOIN big b ON a.k > b.v WHERE a.k = 3",   # nested loop after a seek
    "SELECT * FROM u a JOIN u b ON a.k = b.k WHERE a.id = 3",   # index join, uniform keys
    "SELECT * FROM u a JOIN u b ON a.k = b.k",
])
def test_estimates_are_exact_where_they_can_be(ds, sql):
    est = _estimate(ds, sql)
    real = _examined(ds, sql)
    assert est.floor <= real                # never more than certain
    assert est.rows == real, est.steps


@pytest.mark.parametrize("sql, lo, hi", [
    ("SELECT * FROM u WHERE s = 'x'", 0.2, 5),                 # column scan: a default fraction
    ("SELECT * FROM big a JOIN big2 b ON a.v = b.v WHERE a.id < 100", 0.1, 10),   # hash join
    ("SELECT * FROM big LIMIT 5", 1, 1),
])
def test_other_estimates_are_within_reason(ds, sql, lo, hi):
    est = _estimate(ds, sql)
    real = _examined(ds, sql)
    assert est.floor <= real and lo * real <= est.rows <= hi * real, (est.rows, real)


def test_explain_shows_each_step_and_a_total(ds):
    r = _explain(ds, "EXPLAIN SELECT * FROM big")
    assert r.columns == ["step", "plan", "estimated_rows"]
    assert r.rows == [(1, "big: full scan — the table's rows (exact)", 2000),
                      (None, "total rows examined", 2000)]
    r = _explain(ds, "EXPLAIN SELECT * FROM big WHERE id = 7")
    assert r.rows[0] == (1, "big: index pk seek (1 key) — counted in the index (exact)", 1)
    r = _explain(ds, "EXPLAIN SELECT * FROM u WHERE k >= 45")
    assert r.rows[0] == (1, "u: index u_k range — counted in the index (exact)", 50)
    r = _explain(ds, "EXPLAIN SELECT id FROM u WHERE s = 'x'")
    assert r.rows[0] == (1, "u: column scan s == 'x' — 0.1 of the table's rows (a default fraction)", 50)
    assert r.rows[-1] == (None, "total rows examined (none of them certain)", 50)
    r = _explain(ds, "EXPLAIN SELECT * FROM u a JOIN u b ON a.k = b.k WHERE a.id = 3")
    assert [x[0] for x in r.rows] == [1, 2, None] and r.plan == ["a: index pk seek (1 key)",
                                                                  "b: index u_k join on a.k = b.k"]
    assert r.rows[1][1].endswith("outer rows × 10 (rows per key from index u_k (exact))")
    assert r.rows[1][2] == 10
    assert r.rows[2] == (None, "total rows examined (at least 1 for certain)", 11)
    r = _explain(ds, "EXPLAIN SELECT * FROM big a JOIN big2 b ON a.v = b.v WHERE a.id = 3")
    assert r.plan[1] == "b: hash join on a.v = b.v" and r.rows[1][2] == 2000 + 10       # 200 values assumed
    assert "reads 2,000 rows (exact)" in r.rows[1][1] and "200 distinct values assumed" in r.rows[1][1]
    r = _explain(ds, "EXPLAIN SELECT * FROM big a JOIN big2 b ON a.v < b.v")
    assert r.plan == ["a: full scan", "b: nested loop"] and r.rows[1][2] == 2000 + 2000 * 2000
    assert r.rows[-1] == (None, "total rows examined", 2000 + 2000 + 2000 * 2000)
    # the same plan lines the query itself reports when it runs
    st_, scope = _scope(ds, "SELECT * FROM u a JOIN u b ON a.k = b.k WHERE a.id = 3")
    assert run_select(st_, scope, ds.table).plan == _explain(ds, "SELECT * FROM u a JOIN u b ON a.k = b.k "
                                                                 "WHERE a.id = 3").plan


def test_explain_says_whether_the_query_would_be_refused_and_is_never_refused_itself(ds):
    sql = "EXPLAIN SELECT * FROM big a JOIN big2 b ON a.v < b.v"
    last = _explain(ds, sql, DEFAULT_LIMITS).rows[-1]
    assert last[0] is None and last[2] == 4_004_000
    assert "; refused: query over its limit rows_examined = 100,000" in last[1]
    assert "nested loop: 2,000 × 2,000 pairs" in last[1]
    # refused only for certain: an average that goes over is "may go over"
    last = _explain(ds, "EXPLAIN SELECT * FROM u a JOIN u b ON a.k = b.k",
                    QueryLimits(rows_examined=1_000)).rows[-1]
    assert "refused" not in last[1] and "may go over rows_examined = 1,000" in last[1]
    assert "refused" not in _explain(ds, "SELECT * FROM big WHERE id = 1", DEFAULT_LIMITS).rows[-1][1]
    # through the service, for a client, under the client's limits
    qs = QueryService(ds, lambda: OWNER)
    r = qs.query(sql, OTHER, limits=DEFAULT_LIMITS)
    assert "refused" in r.rows[-1][1] and "a client's query" in r.rows[-1][1]


def test_explain_parses_renders_and_refuses_dml(ds):
    assert render(parse("explain  select * from big where id = 1")) == \
        "EXPLAIN SELECT * FROM big WHERE id = 1"
    assert isinstance(parse("SELECT explain FROM t"), stdb.query.ast.Select)   # a name still
    with pytest.raises(stdb.QueryError, match="EXPLAIN EXPLAIN"):
        parse("EXPLAIN EXPLAIN SELECT * FROM t")
    qs = QueryService(ds, lambda: OWNER)
    for dml in ("EXPLAIN DELETE FROM big", "EXPLAIN UPDATE big SET v = 1",
                "EXPLAIN INSERT INTO big VALUES (9999, 1)"):
        with pytest.raises(stdb.QueryError, match="EXPLAIN takes a SELECT"):
            qs.query(dml, OWNER)
        with pytest.raises(stdb.QueryError, match="EXPLAIN is not DML"):
            qs.dml(dml, OWNER, None)
    with pytest.raises(stdb.QueryError, match="a subscription must be a SELECT"):
        qs.subscribe(["EXPLAIN SELECT * FROM big"], "me", OWNER)
    assert len(ds.table("big")) == 2000


def test_a_cartesian_product_is_refused_before_reading_any_row(ds):
    sql = "SELECT a.id, b.id FROM big a JOIN big2 b ON a.v < b.v"
    st_, scope = _scope(ds, sql)
    log: list = []
    budget = Budget(DEFAULT_LIMITS)
    with pytest.raises(stdb.QueryError) as e:
        run_select(st_, scope, lambda n: Watched(ds.table(n), log), budget)
    assert budget.examined == 0 and log == []             # no table was scanned
    d = e.value.detail
    assert e.value.limit == "rows_examined" and "rows_examined = 100,000" in d
    assert "the join of 'b' (a nested loop: 2,000 × 2,000 pairs" in d and "refused before reading any" in d
    assert "the plan's estimate: 4,004,000 rows examined" in d
    # a full scan over the limit too, naming the table
    budget = Budget(QueryLimits(rows_examined=1_999))
    with pytest.raises(stdb.QueryError, match="a full scan of 'big'"):
        run_select(*_scope(ds, "SELECT * FROM big WHERE v = 3 OR v = 4"), ds.table, budget)
    assert budget.examined == 0
    # an index count that is certain to go over
    budget = Budget(QueryLimits(rows_examined=99))
    with pytest.raises(stdb.QueryError, match="reading 'u' by index u_k range would examine at least 100"):
        run_select(*_scope(ds, "SELECT * FROM u WHERE k < 10"), ds.table, budget)
    assert budget.examined == 0
    # an average never refuses: the index join's estimate (5,000) is over, the query is not
    st_, scope = _scope(ds, "SELECT * FROM u a JOIN u b ON a.k = b.k WHERE a.k = 3")
    budget = Budget(QueryLimits(rows_examined=200))
    assert len(run_select(st_, scope, ds.table, budget).rows) == 100 and budget.examined == 110


# ---- random queries over random small tables


@st.composite
def budget_queries(draw, schemas):
    """SELECTs of every plan shape: scans, seeks, ranges, column scans, index and hash joins,
    nested loops; sometimes with a LIMIT that streams."""
    a, b, c = schemas
    shape = draw(st.sampled_from(["one", "one", "join2", "join3", "loop", "loop3"]))
    if shape == "one":
        sql = "SELECT id FROM a"
        if draw(st.booleans()):
            sql += f" WHERE {draw(sql_conditions(a))}"
    elif shape == "join2":
        other = draw(st.sampled_from(["b", "c"]))
        sql = f"SELECT a.id, {other}.id FROM a JOIN {other} ON a.k = {other}.k"
    elif shape == "join3":
        sql = "SELECT a.id, b.id, c.id FROM a JOIN b ON a.k = b.k JOIN c ON c.k = b.k"
    elif shape == "loop":
        sql = "SELECT a.id, c.id FROM a JOIN c ON a.k < c.k"
    else:
        sql = "SELECT a.id, b.id, c.id FROM a JOIN b ON a.k <= b.k JOIN c ON b.k = c.k"
    if shape != "one" and draw(st.booleans()):
        on = draw(st.sampled_from([(a, "a"), (b, "b")] if " b ON " in sql else [(a, "a")]))
        sql += f" WHERE {draw(sql_conditions(on[0], on[1], depth=1))}"
    if draw(st.booleans()):
        sql += f" LIMIT {draw(st.integers(0, 3))}"
    return sql


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_random_queries_are_answered_exactly_or_refused_and_up_front_only_when_certain(data):
    """A query under a tiny budget is answered as without one or refused naming a limit; the
    certain rows of its estimate never exceed what it really examines, so a query refused
    before it reads a row would have gone over anyway."""
    schemas, ds = draw_sql_tables(data)
    sql = data.draw(budget_queries(schemas))
    limits = QueryLimits(rows_examined=data.draw(st.integers(1, 80)),
                         rows_returned=data.draw(st.integers(1, 40)))
    st_, scope = _scope(ds, sql)
    unbounded = Budget(HUGE)
    full = run_select(st_, scope, ds.table, unbounded).rows
    est = estimate_select(st_, scope, ds.table)
    assert est.floor <= unbounded.examined, (sql, est.steps, unbounded.examined)
    budget = Budget(limits)
    try:
        res = run_select(st_, scope, ds.table, budget)
    except stdb.QueryError as e:
        assert e.limit in ("rows_examined", "rows_returned", "seconds"), e
        assert budget.examined <= limits.rows_examined
        if "refused before reading any" in e.detail:
            assert budget.examined == 0 and unbounded.examined > limits.rows_examined
        return
    # the same plan on the same rows: the same rows examined and the same answer
    assert budget.examined == unbounded.examined <= limits.rows_examined and res.rows == full
