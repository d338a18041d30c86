"""Compiling subscription queries, and the engine that turns commits into per-query diffs.

A subscription is ``SELECT * FROM t [WHERE ...]`` or ``SELECT t.* FROM t JOIN s ON t.a = s.b
[WHERE ...]`` (both join columns indexed).  Its result is a bag of rows of ``t``: for a join,
each row of ``t`` that has at least one matching row of ``s`` satisfying the condition, once
(a semijoin: clients receive rows of one table and cache them by value).

``Subscriptions`` holds the distinct queries (identical normalized text is evaluated once, for
every client that subscribed to it) and, after each commit, computes for each affected query
exactly the rows that left and entered its result (an update is a delete plus an insert).
Single-table queries go through the Cython matcher; joins use the delta rule, evaluated per
candidate row against the state before and after the commit (see ``_join_diff``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stdb._core.matcher import Matcher
from stdb._core.schema import TableSchema
from stdb.errors import DataError, QueryError
from stdb.query import ast as A
from stdb.query.bind import Scope, compile_predicate, conjuncts, index_for, merge_ranges, sargs
from stdb.query.budget import Budget
from stdb.query.parser import parse
from stdb.query.render import render

__all__ = ["SubPlan", "JoinPlan", "compile_subscription", "Subscriptions", "QueryDiff"]

Row = tuple


@dataclass
class JoinPlan:
    other: str                         # the joined table (its rows are not sent)
    col: int                           # join column of the subscribed table
    other_col: int                     # join column of the other table
    index: str                         # index of the subscribed table on col
    other_index: str                   # index of the other table on other_col
    pred: Callable[[Row, Row], bool]   # ON + WHERE over (subscribed row, other row)


@dataclass
class SubPlan:
    key: str                           # normalized text: the deduplication key
    table: str                         # the table whose rows the result holds
    schema: TableSchema
    pred: Callable[[Row], bool]        # single table: the whole condition
    anchor: tuple | None = None        # ("eq", col, values) | ("range", col, lo, lo_incl, hi, hi_incl)
    residual: Callable[[Row], bool] | None = None
    join: JoinPlan | None = None
    seek: tuple | None = None          # like anchor: a term an index serves (the initial rows)


def _anchor(scope: Scope, terms: list[A.Expr]) -> tuple[tuple | None, list[A.Expr]]:
    """Pick the matcher anchor among top-level conjuncts: an equality/IN first, else every range
    term on the first column that has one.  Returns (anchor, the terms it does not cover)."""
    found = sargs(scope, terms)
    for sa in found:
        if sa.is_eq and sa.col.base.name not in ("f32", "f64"):
            return ("eq", sa.col.c, sa.values), [t for i, t in enumerate(terms) if i != sa.term]
    ranges = [sa for sa in found if not sa.is_eq]
    if not ranges:
        return None, terms
    c = ranges[0].col.c
    mine = [sa for sa in ranges if sa.col.c == c]
    used = {sa.term for sa in mine}
    return ("range", c, *merge_ranges(mine)), [t for i, t in enumerate(terms) if i not in used]


def _indexed(scope: Scope, terms: list[A.Expr]) -> tuple | None:
    """A conjunct an index of the table serves, as an anchor (an equality or IN first, else
    the range terms on a btree index's column), or None."""
    schema = scope.schemas[0]
    found = [sa for sa in sargs(scope, terms) if sa.col.base.name not in ("f32", "f64")]
    for sa in found:
        if sa.is_eq and index_for(schema, schema.columns[sa.col.c].name, btree=False) is not None:
            return ("eq", sa.col.c, sa.values)
    for sa in found:
        if not sa.is_eq and index_for(schema, schema.columns[sa.col.c].name, btree=True) is not None:
            same = [p for p in found if not p.is_eq and p.col.c == sa.col.c]
            return ("range", sa.col.c, *merge_ranges(same))
    return None


def compile_subscription(sql: str, schemas: Callable[[str], TableSchema | str | None],
                         params: dict[str, Any], st: A.Statement | None = None) -> SubPlan:
    """Parse and check a subscription query; QueryError names what is not allowed and where.
    ``st``: ``sql`` already parsed (and perhaps restricted by visibility filters)."""
    st = parse(sql) if st is None else st
    if not isinstance(st, A.Select):
        raise QueryError("a subscription must be a SELECT", hint="SELECT * FROM table WHERE ...")
    if st.group_by or st.order_by or st.limit is not None:
        raise QueryError("a subscription cannot use GROUP BY, ORDER BY or LIMIT",
                         hint="use a one-off query for those")
    if len(st.joins) > 1:
        raise QueryError("a subscription may join two tables at most",
                         hint="use a one-off query for multi-way joins")
    refs = [st.table] + [j.table for j in st.joins]
    scope = Scope(sql, refs, schemas, params)
    if len(st.items) != 1 or not isinstance(st.items[0].expr, A.Star):
        raise QueryError("a subscription selects whole rows of one table: SELECT * or SELECT t.*",
                         hint="clients cache rows; pick columns in a one-off query")
    star = st.items[0].expr
    key = render(st, params)
    if not st.joins:
        if star.table is not None and star.table != st.table.ref:
            raise scope.error(star.pos, f"no table '{star.table}' in this query")
        schema = scope.schemas[0]
        terms = conjuncts(st.where)
        pred = compile_predicate(scope, st.where)
        anchor, rest = _anchor(scope, terms)
        residual = None
        if anchor is None:
            residual = pred
        elif rest:
            residual = compile_predicate(scope, rest[0] if len(rest) == 1 else A.And(tuple(rest)))
        return SubPlan(key, st.table.name, schema, pred, anchor, residual, seek=_indexed(scope, terms))
    # one join
    if star.table is None:
        raise scope.error(star.pos, "a join subscription must say whose rows it wants: SELECT t.*")
    names = [r.ref for r in refs]
    if star.table not in names:
        raise scope.error(star.pos, f"no table '{star.table}' in this query")
    me = names.index(star.table)
    on = st.joins[0].on
    if not (isinstance(on, A.Compare) and on.op == "=" and isinstance(on.left, A.ColumnRef)
            and isinstance(on.right, A.ColumnRef)):
        raise scope.error(getattr(on, "pos", 0), "a join subscription's ON must be one equality "
                          "of two columns (t.a = s.b)")
    a, b = scope.column(on.left), scope.column(on.right)
    if a.t == b.t:
        raise scope.error(on.pos, "the ON equality must compare a column of each table")
    mine, theirs = (a, b) if a.t == me else (b, a)
    ix_mine = index_for(scope.schemas[me], scope.schemas[me].columns[mine.c].name, btree=False)
    ix_theirs = index_for(scope.schemas[1 - me], scope.schemas[1 - me].columns[theirs.c].name,
                          btree=False)
    for col, ix in ((mine, ix_mine), (theirs, ix_theirs)):
        if ix is None:
            raise scope.error(on.pos, f"join column {col.name} has no index",
                              hint="join subscriptions need an index on both join columns")
    cond = on if st.where is None else A.And((on, st.where))
    both = compile_predicate(scope, cond)
    pred2 = both if me == 0 else (lambda r, o: both(o, r))
    jp = JoinPlan(refs[1 - me].name, mine.c, theirs.c, ix_mine, ix_theirs, pred2)   # type: ignore[arg-type]
    return SubPlan(key, refs[me].name, scope.schemas[me], lambda r: True, join=jp)


@dataclass
class QueryDiff:
    """What one commit did to one query's result."""

    deletes: list[Row] = field(default_factory=list)
    inserts: list[Row] = field(default_factory=list)


@dataclass
class _Query:
    qid: int
    plan: SubPlan
    subscribers: set[Any] = field(default_factory=set)


class Subscriptions:
    """The distinct subscribed queries of one database and their subscribers.

    ``tables(name)`` gives the committed table (after the commit being processed).
    """

    def __init__(self, tables: Callable[[str], Any], matcher: Any = None) -> None:
        self._tables = tables
        self._matcher = Matcher() if matcher is None else matcher
        self._by_key: dict[str, _Query] = {}
        self._by_id: dict[int, _Query] = {}
        self._joins: dict[int, _Query] = {}
        self._of: dict[Any, set[int]] = {}          # subscriber -> its query ids
        self._next = 1

    def __len__(self) -> int:
        return len(self._by_id)

    # ---- subscribe / unsubscribe

    def add(self, plan: SubPlan, subscriber: Any) -> tuple[int, bool]:
        """Register ``subscriber`` for ``plan``; returns (query id, whether the query is new)."""
        q = self._by_key.get(plan.key)
        new = q is None
        if q is None:
            q = _Query(self._next, plan)
            self._next += 1
            self._by_key[plan.key] = q
            self._by_id[q.qid] = q
            if plan.join is not None:
                self._joins[q.qid] = q
            elif plan.anchor is None:
                self._matcher.add_every(q.qid, plan.table, plan.residual)
            elif plan.anchor[0] == "eq":
                self._matcher.add_eq(q.qid, plan.table, plan.anchor[1], plan.anchor[2], plan.residual)
            else:
                _, col, lo, lo_incl, hi, hi_incl = plan.anchor
                self._matcher.add_range(q.qid, plan.table, col, lo, lo_incl, hi, hi_incl, plan.residual)
        q.subscribers.add(subscriber)
        self._of.setdefault(subscriber, set()).add(q.qid)
        return q.qid, new

    def remove(self, qid: int, subscriber: Any) -> bool:
        """Drop ``subscriber`` from query ``qid``; returns whether the query is gone."""
        q = self._by_id.get(qid)
        if q is None or subscriber not in q.subscribers:
            return False
        q.subscribers.discard(subscriber)
        mine = self._of[subscriber]
        mine.discard(qid)
        if not mine:
            del self._of[subscriber]
        if q.subscribers:
            return False
        del self._by_id[qid]
        del self._by_key[q.plan.key]
        if q.qid in self._joins:
            del self._joins[q.qid]
        else:
            self._matcher.remove(qid)
        return True

    def clear(self) -> set[Any]:
        """Drop every query (ids are never reused); returns who was subscribed."""
        gone = set(self._of)
        for qid in self._by_id:
            if qid not in self._joins:
                self._matcher.remove(qid)
        self._by_key.clear()
        self._by_id.clear()
        self._joins.clear()
        self._of.clear()
        return gone

    def count_of(self, subscriber: Any) -> int:
        """How many queries ``subscriber`` is subscribed to."""
        return len(self._of.get(subscriber, ()))

    def queries_of(self, subscriber: Any) -> set[int]:
        """The ids of the queries ``subscriber`` is subscribed to."""
        return set(self._of.get(subscriber, ()))

    def subscribers(self, qid: int) -> set[Any]:
        q = self._by_id.get(qid)
        return set() if q is None else set(q.subscribers)

    def plan(self, qid: int) -> SubPlan:
        return self._by_id[qid].plan

    # ---- evaluation

    def initial_rows(self, plan: SubPlan, budget: Budget | None = None) -> list[Row]:
        """The query's whole current result: read through an index on its anchor when the
        table has one, else by a scan; with a ``budget``, every row read or sought counted
        (a scan too big for it refused before it starts)."""
        t = self._tables(plan.table)
        rids = None if plan.join is not None else _anchored(plan, t)
        if rids is None:
            if budget is not None:
                budget.expect(len(t), f"subscribing to {plan.key!r} (a scan of '{plan.table}': no "
                              "index serves its WHERE)")
            rows: Any = (row for _, row in t.scan())
        else:
            if budget is not None:
                budget.examine(len(rids), f"subscribing to {plan.key!r}")
            rows = (t.get(rid) for rid in rids)
        if budget is not None and rids is None:
            rows = _counted(rows, budget)
        if plan.join is None:
            return [row for row in rows if plan.pred(row)]
        return [row for row in rows if self._joined_now(plan, row, budget)]

    def diff(self, delta: Any) -> dict[int, QueryDiff]:
        """Per-query diffs for a committed TxDelta (only queries whose result changed)."""
        out: dict[int, QueryDiff] = {}
        m = self._matcher
        for table, td in delta.tables.items():
            if td.deletes:
                for qid, rows in m.match(table, td.deletes).items():
                    out.setdefault(qid, QueryDiff()).deletes.extend(rows)
            if td.inserts:
                for qid, rows in m.match(table, td.inserts).items():
                    out.setdefault(qid, QueryDiff()).inserts.extend(rows)
        for qid, q in self._joins.items():
            d = self._join_diff(q.plan, delta)
            if d is not None:
                out[qid] = d
        return out

    # ---- joins

    def _joined_now(self, plan: SubPlan, row: Row, budget: Budget | None = None) -> bool:
        jp = plan.join
        assert jp is not None
        other = self._tables(jp.other)
        rids = _seek(other, jp.other_index, row[jp.col])
        if budget is not None and rids:
            budget.examine(len(rids), f"subscribing to {plan.key!r} (its join)")
        for rid in rids:
            if jp.pred(row, other.get(rid)):
                return True
        return False

    def _join_diff(self, plan: SubPlan, delta: Any) -> QueryDiff | None:
        """Δ of the semijoin for one commit.

        Candidate rows of the subscribed table T are those the commit inserted or deleted in T,
        and those of T (before or after) whose join value meets a row the commit inserted or
        deleted in the other table S.  For each candidate value, its multiplicity in the
        result before and after is computed from the state before (after, with the delta
        undone) and after the commit; the difference is the diff.
        """
        jp = plan.join
        assert jp is not None
        dt = delta.tables.get(plan.table)
        ds = delta.tables.get(jp.other)
        if dt is None and ds is None:
            return None
        t_del = dt.deletes if dt else []
        t_ins = dt.inserts if dt else []
        s_del = ds.deletes if ds else []
        s_ins = ds.inserts if ds else []
        T = self._tables(plan.table)
        S = self._tables(jp.other)
        # rows are counted and looked up by their encoding: a row holding an array (a list) is
        # not hashable, and the encoding is exact (NaN payloads included)
        t_enc, s_enc = T.codec.encode, S.codec.encode
        # candidate rows of T (an ordered set)
        cands: dict[bytes, Row] = {t_enc(r): r for r in t_del}
        cands.update((t_enc(r), r) for r in t_ins)
        touched = {_hashable(r[jp.other_col]) for r in s_del} | {_hashable(r[jp.other_col]) for r in s_ins}
        touched.discard(None)
        for v in touched:
            for rid in _seek(T, jp.index, v):
                r = T.get(rid)
                cands[t_enc(r)] = r
        if not cands:
            return None
        s_ins_by: dict[Any, list[Row]] = {}
        for r in s_ins:
            s_ins_by.setdefault(_hashable(r[jp.other_col]), []).append(r)
        s_del_by: dict[Any, list[Row]] = {}
        for r in s_del:
            s_del_by.setdefault(_hashable(r[jp.other_col]), []).append(r)
        t_ins_c = Counter(map(t_enc, t_ins))
        t_del_c = Counter(map(t_enc, t_del))
        t_now: dict[Any, Counter] = {}          # join value -> encodings of the rows of T under it now
        s_now: dict[Any, list[Row]] = {}        # join value -> rows of S under it now
        out = QueryDiff()
        for key, row in cands.items():
            v = row[jp.col]
            if v is None:                       # NULL joins nothing, before or after
                continue
            hv = _hashable(v)
            if hv not in t_now:
                t_now[hv] = Counter(t_enc(T.get(rid)) for rid in _seek(T, jp.index, v))
                s_now[hv] = [S.get(rid) for rid in _seek(S, jp.other_index, v)]
            after_n = t_now[hv][key]
            before_n = after_n - t_ins_c[key] + t_del_c[key]
            matched_after = False
            matched_before = False
            s_after = s_now[hv]
            ins_here = Counter(map(s_enc, s_ins_by.get(hv, ())))
            for srow in s_after:
                if jp.pred(row, srow):
                    matched_after = True
                    skey = s_enc(srow)
                    if ins_here[skey] > 0:          # inserted by this commit: not there before
                        ins_here[skey] -= 1
                    else:
                        matched_before = True
                if matched_after and matched_before:
                    break
            if not matched_before:
                matched_before = any(jp.pred(row, srow) for srow in s_del_by.get(hv, ()))
            n_after = after_n if matched_after else 0
            n_before = before_n if matched_before else 0
            if n_after > n_before:
                out.inserts.extend([row] * (n_after - n_before))
            elif n_before > n_after:
                out.deletes.extend([row] * (n_before - n_after))
        if not out.inserts and not out.deletes:
            return None
        return out


def _anchored(plan: SubPlan, table: Any) -> list[int] | None:
    """The row ids the plan's ``seek`` term gives through its index (a superset of the
    result), or None when no index serves its WHERE."""
    a = plan.seek
    if a is None:
        return None
    name = plan.schema.columns[a[1]].name
    if a[0] == "eq":
        ix = index_for(plan.schema, name, btree=False)
        if ix is None:
            return None
        out: list[int] = []
        for v in a[2]:
            out.extend(_seek(table, ix, v))
        return list(dict.fromkeys(out)) if len(a[2]) > 1 else out     # IN (1, 1): each row once
    _, _, lo, lo_incl, hi, hi_incl = a
    ix = index_for(plan.schema, name, btree=True)
    if ix is None or isinstance(lo, float) or isinstance(hi, float):
        return None
    if lo is not None and hi is not None and (hi < lo or (hi == lo and not (lo_incl and hi_incl))):
        return []
    try:
        return list(table.range(ix, lo, hi, lo_inclusive=lo_incl, hi_inclusive=hi_incl))
    except DataError:           # a bound the column cannot hold: read it all instead
        return None


def _counted(rows: Any, budget: Budget) -> Any:
    """``rows``, counted as examined in chunks (the budget's clock is looked at as they go)."""
    n = 0
    for row in rows:
        n += 1
        if n == 1024:
            budget.examine(n)
            n = 0
        yield row
    if n:
        budget.examine(n)


def _hashable(v: Any) -> Any:
    """A join value as a dict key (an array column's value is a list)."""
    return tuple(v) if type(v) is list else v


def _seek(table: Any, index: str, value: Any) -> list[int]:
    """Row ids under ``value``; none when the value cannot be a key of that column (a join of
    an i64 column with a u64 one meeting -1)."""
    if value is None:
        return []
    try:
        return table.seek(index, value)
    except DataError:
        return []
