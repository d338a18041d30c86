"""One-off SELECT: planning (index use for equality, IN and ranges; index or hash joins),
estimates and execution (filter, group and aggregate, order, limit, project).

``run_select`` reads committed tables through ``tables(name)`` (the engine's Table objects).
The plan it used is returned with the rows, so tests can check that an index was used;
``explain_select`` (``EXPLAIN SELECT``) returns the plan with each step's estimated rows
(``estimate_select``; stdb/query/estimate.py) without running it.  With a ``Budget``
(stdb/query/budget.py) a plan certain to examine more rows than allowed is refused before any
row is read; every row read and every row a join produces is counted, a join that would go
over is refused before it runs when its size is known up front (hash joins, nested loops), and
a LIMIT without ORDER BY or GROUP BY stops the last join as soon as it has its rows.
"""

from __future__ import annotations

import functools
import itertools
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from stdb.errors import DataError, QueryError
from stdb.query import ast as A
from stdb.query import estimate as E
from stdb.query.bind import Col, Scope, compile_predicate, conjuncts, index_for, merge_ranges, sargs
from stdb.query.budget import Budget

__all__ = ["QueryResult", "run_select", "plan_access", "estimate_select", "explain_select"]

Row = tuple


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[Row]
    plan: list[str] = field(default_factory=list)     # one line per table: how it was read
    types: list[str] = field(default_factory=list)    # each column's type name (empty: not known)


def _refs(e: Any, scope: Scope, out: set[int]) -> None:
    """Table positions a condition reads."""
    if isinstance(e, A.ColumnRef):
        out.add(scope.column(e).t)
    elif isinstance(e, (A.And, A.Or)):
        for x in e.items:
            _refs(x, scope, out)
    elif isinstance(e, A.Not):
        _refs(e.item, scope, out)
    elif isinstance(e, A.Compare):
        _refs(e.left, scope, out)
        _refs(e.right, scope, out)
    elif isinstance(e, (A.InList, A.IsNull, A.Between)):
        _refs(e.expr, scope, out)


@dataclass
class Access:
    """How the first table is read: ``desc`` (its plan line's text), ``read`` (a function of the
    table giving candidate row ids; None for a full scan), ``count`` (a function of the table
    and a cap giving the estimate: see stdb/query/estimate.py) and ``used`` (the positions of
    the WHERE terms it serves)."""

    desc: str
    read: Callable[[Any], list[int]] | None
    count: Callable[[Any, int], tuple[int, int, str]]
    used: frozenset[int] = frozenset()
    op: str = ""


def _empty(lo: Any, lo_incl: bool, hi: Any, hi_incl: bool) -> bool:
    return lo is not None and hi is not None and (hi < lo or (hi == lo and not (lo_incl and hi_incl)))


def plan_access(scope: Scope, ti: int, terms: list[A.Expr]) -> Access:
    """How to read table ``ti`` given conditions ``terms`` on it alone."""
    schema = scope.schemas[ti]
    found = [sa for sa in sargs(scope, terms) if sa.col.t == ti]
    # 1. equality or IN on an indexed column
    for sa in found:
        if not sa.is_eq:
            continue
        ix = index_for(schema, schema.columns[sa.col.c].name, btree=False)
        if ix is None:
            continue

        def seek(table: Any, ix: str = ix, keys: tuple = sa.values) -> list[int]:
            out: list[int] = []
            for k in keys:
                try:
                    out.extend(table.seek(ix, k))
                except DataError:        # a value the column cannot hold: no row has it
                    pass
            return out

        def count_seek(table: Any, cap: int, ix: str = ix, keys: tuple = sa.values) -> tuple[int, int, str]:
            return E.counted(E.seek_count(table, ix, keys, cap), cap)
        n = len(sa.values)
        return Access(f"index {ix} seek ({n} key{'s' if n > 1 else ''})", seek, count_seek,
                      frozenset((sa.term,)))
    # 2. every range term on the first column of a btree index that has one
    for sa in found:
        if sa.is_eq or sa.col.base.name not in _RANGEABLE:
            continue
        ix = index_for(schema, schema.columns[sa.col.c].name, btree=True)
        if ix is None:
            continue
        mine = [p for p in found if not p.is_eq and p.col.c == sa.col.c]
        lo, lo_incl, hi, hi_incl = merge_ranges(mine)
        if not (_fits(sa.col, lo) and _fits(sa.col, hi)):
            continue                     # e.g. x > 2.5 on an integer column: filter instead

        def rng(table: Any, ix: str = ix, b: tuple = (lo, lo_incl, hi, hi_incl)) -> list[int]:
            if _empty(*b):
                return []
            return table.range(ix, b[0], b[2], lo_inclusive=b[1], hi_inclusive=b[3])

        def count_rng(table: Any, cap: int, ix: str = ix,
                      b: tuple = (lo, lo_incl, hi, hi_incl)) -> tuple[int, int, str]:
            n = 0 if _empty(*b) else table.range_count(ix, b[0], b[2], lo_inclusive=b[1],
                                                      hi_inclusive=b[3], limit=cap)
            return E.counted(n, cap)
        return Access(f"index {ix} range", rng, count_rng, frozenset(p.term for p in mine))
    # 3. a comparison on a number, string or bytes column: a pass over its stored values
    for sa in found:
        if sa.col.type.name not in _COLUMN_SCAN or not (sa.is_eq and len(sa.values) == 1 or
                                                   (sa.lo is None) != (sa.hi is None)):
            continue
        if sa.is_eq:
            op, v = "==", sa.values[0]
        elif sa.lo is not None:
            op, v = (">=" if sa.lo_incl else ">"), sa.lo
        else:
            op, v = ("<=" if sa.hi_incl else "<"), sa.hi
        if not _fits(sa.col, v) and sa.col.type.name not in ("f32", "f64"):
            continue
        name = schema.columns[sa.col.c].name

        def packed(table: Any, name: str = name, op: str = op, v: Any = v) -> list[int]:
            return table.scan_where(name, op, v)

        def count_packed(table: Any, cap: int, op: str = op) -> tuple[int, int, str]:
            return E.column_scan(table, op)
        return Access(f"column scan {name} {op} {v!r}", packed, count_packed, frozenset((sa.term,)), op)
    return Access("full scan", None, lambda table, cap: E.full_scan(table))


# columns Table.scan_where compares in place (packed numbers; string and bytes in the page heap)
_COLUMN_SCAN = frozenset(("i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "timestamp", "f64",
                          "string", "bytes"))
_RANGEABLE = frozenset(("i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "timestamp", "string",
                        "bytes", "identity", "bool"))


def _fits(col: Col, v: Any) -> bool:
    if v is None:
        return True
    try:
        col.base.check(v)
        return not isinstance(v, float)
    except DataError:
        return False


def _agg(func: str, vals: list[Any], star: bool) -> Any:
    if func == "count":
        return len(vals) if star else sum(1 for v in vals if v is not None)
    xs = [v for v in vals if v is not None]
    if not xs:
        return None
    if func == "sum":
        return sum(xs)
    if func == "min":
        return min(xs)
    if func == "max":
        return max(xs)
    return sum(xs) / len(xs)


def _sort_key(v: Any) -> tuple:
    return (v is not None, v)          # NULL first ascending, last descending (as SQLite)


def _key_at(i: int, r: tuple) -> tuple:
    return _sort_key(r[i])


def _key_of(f: Callable[[tuple], Any], c: tuple) -> tuple:
    return _sort_key(f(c))


def _row_filter(scope: Scope, k: int, terms: list[A.Expr]) -> Callable[[Row], bool] | None:
    """The WHERE terms that read table ``k`` alone, as a test of one of its rows."""
    if not terms:
        return None
    pred = compile_predicate(scope, A.And(tuple(terms)))
    before, after = (None,) * k, (None,) * (len(scope.refs) - k - 1)
    return lambda row: pred(*before, row, *after)


@dataclass
class _Prepared:
    """A SELECT bound and split for execution: WHERE terms per table and across tables, the
    compiled filters, ON conditions, output items and ORDER BY."""

    by_table: list[list[A.Expr]]
    own: list[Callable[[Row], bool] | None]
    rest: Callable[..., bool] | None
    ons: list[Callable[..., bool]]
    items: list[tuple[str, Any]]
    grouped: bool
    order: list[tuple[int, Any, bool]]
    early: bool                      # a LIMIT and nothing to sort or group: the last step streams
    types: list[str]                 # each output column's type name


def _prepare(st: A.Select, scope: Scope) -> _Prepared:
    n = len(scope.refs)
    # WHERE terms on one table filter that table's rows as they are read; the rest (terms
    # over several tables) filter the joined rows
    by_table: list[list[A.Expr]] = [[] for _ in range(n)]
    across: list[A.Expr] = []
    for t in conjuncts(st.where):
        used: set[int] = set()
        _refs(t, scope, used)
        if len(used) == 1:
            by_table[next(iter(used))].append(t)
        else:
            across.append(t)
    # bind everything first, so that a bad query fails before reading anything
    own = [_row_filter(scope, k, by_table[k]) for k in range(n)]
    rest = compile_predicate(scope, A.And(tuple(across))) if across else None
    ons = []
    for k, j in enumerate(st.joins, start=1):
        used = set()
        _refs(j.on, scope, used)
        if max(used, default=0) > k:
            raise scope.error(getattr(j.on, "pos", 0), f"this ON condition reads a table joined after "
                              f"'{scope.refs[k].ref}'")
        ons.append(compile_predicate(scope, j.on))
    items, grouped, types = _select_items(st, scope)
    order = _order_items(st, scope, items, grouped)
    early = st.limit is not None and not grouped and not order
    return _Prepared(by_table, own, rest, ons, items, grouped, order, early, types)


def _full_scan_what(name: str) -> str:
    return f"a full scan of '{name}' (no condition in WHERE an index serves)"


def estimate_select(st: A.Select, scope: Scope, tables: Callable[[str], Any], cap: int = E.COUNT_CAP,
                    prep: _Prepared | None = None, sample: bool = True) -> E.Estimate:
    """The plan of ``st`` with each step's estimated and certain rows (stdb/query/estimate.py),
    reading no row: index counts stop at ``cap``; without ``sample``, no index is asked for its
    rows per key (the certain rows do not depend on them).  A join's method is chosen again
    when it runs, from the rows it actually gets (the plan shown is the one the estimates
    choose)."""
    p = _prepare(st, scope) if prep is None else prep
    n = len(scope.refs)
    t0 = tables(scope.refs[0].name)
    acc = plan_access(scope, 0, p.by_table[0])
    what = _full_scan_what(scope.refs[0].name) if acc.read is None else \
        f"reading '{scope.refs[0].name}' by {acc.desc}"
    filtered = any(i not in acc.used for i in range(len(p.by_table[0])))
    steps = [E.first(f"{scope.refs[0].ref}: {acc.desc}", what, acc.count(t0, cap), filtered,
                     bool(p.by_table[0]), st.limit if p.early and n == 1 else None)]
    for k, j in enumerate(st.joins, start=1):
        prev = steps[-1]
        table = tables(scope.refs[k].name)
        ref = scope.refs[k].ref
        limit = st.limit if p.early and k == n - 1 else None
        filtered = p.own[k] is not None
        eq = _join_eq(scope, k, j.on)
        if eq is None:
            steps.append(E.nested_loop(f"{ref}: nested loop", ref, prev, len(table), filtered, limit))
            continue
        outer, inner = eq
        on_more = len(conjuncts(j.on)) > 1
        ix = index_for(scope.schemas[k], scope.schemas[k].columns[inner.c].name, btree=False)
        cols = 1 if ix is None else len(scope.schemas[k].index(ix).columns)
        per_key = E.rows_per_key(table, ix, cols) if sample else (1.0, "not sampled")
        what = f"the join of '{ref}'"
        if ix is not None and _use_index(prev.out, len(table)):
            steps.append(E.index_join(f"{ref}: index {ix} join on {outer.name} = {inner.name}", what, prev,
                                      per_key, filtered, on_more, limit))
        else:
            certain = ix is None or not _use_index(prev.out_floor, len(table))
            steps.append(E.hash_join(f"{ref}: hash join on {outer.name} = {inner.name}", what, prev,
                                     len(table), per_key, certain, filtered, on_more, limit))
    return E.Estimate(steps)


def explain_select(st: A.Select, scope: Scope, tables: Callable[[str], Any],
                   budget: Budget | None = None) -> QueryResult:
    """``EXPLAIN``: the plan, one row per step (step, plan, estimated rows examined) and a total
    row, without running it; with a ``budget``, the total row says whether the query would
    be refused (never refused itself)."""
    cap = E.COUNT_CAP if budget is None else budget.limits.rows_examined + 1
    est = estimate_select(st, scope, tables, cap)
    rows: list[Row] = [(i, f"{s.plan} — {s.how}", s.rows) for i, s in enumerate(est.steps, start=1)]
    total = "total rows examined"
    if est.floor < est.rows:
        total += f" (at least {est.floor:,} for certain)" if est.floor else " (none of them certain)"
    if budget is not None:
        try:
            budget.refuse_plan(est)
        except QueryError as e:
            total += f"; refused: {e.detail}"
        else:
            if est.rows > budget.limits.rows_examined:
                total += f"; may go over rows_examined = {budget.limits.rows_examined:,} " \
                         "(the estimate does; the certain rows do not)"
    rows.append((None, total, est.rows))
    return QueryResult(["step", "plan", "estimated_rows"], rows, [s.plan for s in est.steps])


def run_select(st: A.Select, scope: Scope, tables: Callable[[str], Any],
               budget: Budget | None = None) -> QueryResult:
    n = len(scope.refs)
    plan: list[str] = []
    p = _prepare(st, scope)
    own, rest, items, grouped, order, early = p.own, p.rest, p.items, p.grouped, p.order, p.early
    if budget is not None:
        # refused before reading any row when the rows it is certain to examine go over (the
        # indexes' rows per key, which only the estimate needs, are asked for then)
        allowed = budget.limits.rows_examined - budget.examined
        if estimate_select(st, scope, tables, allowed + 1, p, sample=False).over(allowed) is not None:
            budget.refuse_plan(estimate_select(st, scope, tables, allowed + 1, p))

    # read table 0, then join the others; with a LIMIT and nothing to sort or group, the last
    # step streams and stops once it has LIMIT rows
    t0 = tables(scope.refs[0].name)
    access = plan_access(scope, 0, p.by_table[0])
    plan.append(f"{scope.refs[0].ref}: {access.desc}")
    if access.read is None:
        if budget is not None and not (early and n == 1):
            budget.expect(len(t0), _full_scan_what(scope.refs[0].name))
        first: Iterable[Row] = (row for _, row in t0.scan())
    else:
        first = (t0.get(rid) for rid in access.read(t0))
    pad = (None,) * (n - 1)
    if budget is not None:
        first = _counted(first, budget)
    stream: Iterable[tuple] = ((row,) + pad for row in first if own[0] is None or own[0](row))
    for k, j in enumerate(st.joins, start=1):
        combos = list(stream)
        last = k == n - 1
        stream = _join(scope, k, j, p.ons[k - 1], combos, tables(scope.refs[k].name), own[k], plan,
                       budget, streaming=early and last)
    if rest is not None:
        stream = (c for c in stream if rest(*c))
    if early:
        assert st.limit is not None
        stream = itertools.islice(stream, min(st.limit, sys.maxsize))
    if budget is not None and not grouped:
        stream = _capped(stream, budget)
    rows = list(stream)

    # group, aggregate, order (stable sorts, last key first), project
    if grouped:
        out = _group(st, scope, items, rows)
        for idx, _, desc_ in reversed(order):
            out.sort(key=functools.partial(_key_at, idx), reverse=desc_)
    else:
        for _, f, desc_ in reversed(order):
            rows.sort(key=functools.partial(_key_of, f), reverse=desc_)
        out = [tuple(f(c) for _, f in items) for c in rows]
    if st.limit is not None:
        out = out[:st.limit]
    if budget is not None:
        budget.returned(len(out))
    return QueryResult([name for name, _ in items], out, plan, p.types)


def _counted(rows: Iterable[Row], budget: Budget) -> Iterator[Row]:
    """``rows``, each counted as examined."""
    for row in rows:
        budget.examine(1)
        yield row


def _capped(rows: Iterable[tuple], budget: Budget) -> Iterator[tuple]:
    """``rows`` (the answer's, one each), refused once there are more than the answer may have."""
    cap = budget.limits.rows_returned
    for i, row in enumerate(rows):
        if i == cap:
            budget.returned(cap + 1)
        yield row


def _join_eq(scope: Scope, k: int, on: A.Expr) -> tuple[Col, Col] | None:
    """(outer column, column of table ``k``) of the first ON equality between table ``k`` and
    one joined before it, or None."""
    for t in conjuncts(on):
        if isinstance(t, A.Compare) and t.op == "=" and isinstance(t.left, A.ColumnRef) \
                and isinstance(t.right, A.ColumnRef):
            a, b = scope.column(t.left), scope.column(t.right)
            if b.t == k and a.t < k:
                return a, b
            if a.t == k and b.t < k:
                return b, a
    return None


def _use_index(outer_rows: int, inner_rows: int) -> bool:
    """Join through the inner table's index (one seek per outer row) rather than reading it
    whole into a hash table: when the outer side has fewer than twice its rows."""
    return outer_rows * 4 < max(inner_rows, 1) * 8


def _join(scope: Scope, k: int, j: A.Join, on: Callable[..., bool], combos: list[tuple], table: Any,
          own: Callable[[Row], bool] | None, plan: list[str], budget: Budget | None = None,
          streaming: bool = False) -> Iterator[tuple]:
    """Join table ``k`` (its rows kept by ``own``) into the partial rows: through an index on
    its side of an ON equality, else a hash join on that equality, else a nested loop.  The
    plan line is written at once and the rows come as they are made; with a ``budget``, a
    join whose size is known before it runs is refused then, unless ``streaming`` (the caller
    may stop early: it is counted as it goes)."""
    eq = _join_eq(scope, k, j.on)
    ref = scope.refs[k].ref
    what = f"the join of '{ref}'"
    if eq is not None:
        outer, inner = eq
        ix = index_for(scope.schemas[k], scope.schemas[k].columns[inner.c].name, btree=False)
        if ix is not None and _use_index(len(combos), len(table)):
            plan.append(f"{ref}: index {ix} join on {outer.name} = {inner.name}")
            return _index_join(k, combos, table, ix, outer, own, on, budget)
        plan.append(f"{ref}: hash join on {outer.name} = {inner.name}")
        if budget is not None:
            budget.examine(len(table), f"reading '{scope.refs[k].name}' for {what}")
        build: dict[Any, list[Row]] = {}
        for _, row in table.scan():
            v = row[inner.c]
            if v is not None and (own is None or own(row)):
                build.setdefault(v, []).append(row)
        if budget is not None and not streaming:
            size = sum(len(build.get(c[outer.t][outer.c], ())) for c in combos
                       if c[outer.t][outer.c] is not None)
            budget.expect(size, what)
        return _hash_join(k, combos, build, outer, on, budget)
    plan.append(f"{ref}: nested loop")
    if budget is not None:
        budget.examine(len(table), f"reading '{scope.refs[k].name}' for {what}")
    rows = [row for _, row in table.scan() if own is None or own(row)]
    if budget is not None and not streaming:
        budget.expect(len(combos) * len(rows), f"{what} (a nested loop: {len(combos):,} × "
                      f"{len(rows):,} pairs; no equality between columns to join on)")
    return _loop_join(k, combos, rows, on, budget)


def _index_join(k: int, combos: list[tuple], table: Any, ix: str, outer: Col,
                own: Callable[[Row], bool] | None, on: Callable[..., bool],
                budget: Budget | None) -> Iterator[tuple]:
    for c in combos:
        v = c[outer.t][outer.c]
        if v is None:
            continue
        try:
            rids = table.seek(ix, v)
        except DataError:
            continue
        if budget is not None:
            budget.examine(len(rids), "an index join")
        for rid in rids:
            row = table.get(rid)
            if own is None or own(row):
                nc = c[:k] + (row,) + c[k + 1:]
                if on(*nc):
                    yield nc


def _hash_join(k: int, combos: list[tuple], build: dict[Any, list[Row]], outer: Col,
               on: Callable[..., bool], budget: Budget | None) -> Iterator[tuple]:
    for c in combos:
        v = c[outer.t][outer.c]
        if v is not None and v in build:
            yield from _pairs(k, c, build[v], on, budget, "a hash join")


def _loop_join(k: int, combos: list[tuple], rows: list[Row], on: Callable[..., bool],
               budget: Budget | None) -> Iterator[tuple]:
    for c in combos:
        yield from _pairs(k, c, rows, on, budget, "a nested loop")


def _pairs(k: int, c: tuple, rows: list[Row], on: Callable[..., bool], budget: Budget | None,
           what: str) -> Iterator[tuple]:
    """``c`` joined with each of ``rows`` where ``on`` holds, counted in chunks of ``CHUNK``
    (a LIMIT that stops early has counted at most a chunk more than it made)."""
    if budget is None:
        chunks: Iterable[list[Row]] = (rows,)
    else:
        chunks = (rows[i:i + CHUNK] for i in range(0, len(rows), CHUNK))
    for chunk in chunks:
        if budget is not None:
            budget.examine(len(chunk), what)
        for row in chunk:
            nc = c[:k] + (row,) + c[k + 1:]
            if on(*nc):
                yield nc


CHUNK = E.CHUNK


def _select_items(st: A.Select, scope: Scope) -> tuple[list[tuple[str, Any]], bool, list[str]]:
    """(output column name, extractor) per output column; extractors read a combo (one row
    per table) — or, when grouped, describe the aggregate to compute; and each column's type
    name."""
    grouped = bool(st.group_by) or any(isinstance(i.expr, A.Agg) for i in st.items)
    items: list[tuple[str, Any]] = []
    types: list[str] = []
    group_cols = [scope.column(g) if isinstance(g, A.ColumnRef) else None for g in st.group_by]
    for g, gc in zip(st.group_by, group_cols, strict=True):
        if gc is None:
            raise scope.error(getattr(g, "pos", 0), "GROUP BY takes columns")
    gset = {(c.t, c.c) for c in group_cols if c is not None}
    for it in st.items:
        e = it.expr
        if isinstance(e, A.Star):
            if grouped:
                raise scope.error(e.pos, "* cannot be used with GROUP BY or aggregates")
            tis = range(len(scope.refs)) if e.table is None else \
                [i for i, r in enumerate(scope.refs) if r.ref == e.table]
            if not tis:
                raise scope.error(e.pos, f"no table '{e.table}' in this query")
            for ti in tis:
                for ci, name in enumerate(scope.schemas[ti].column_names):
                    items.append((name, _getter(ti, ci)))
                    types.append(scope.schemas[ti].columns[ci].type.name)
        elif isinstance(e, A.ColumnRef):
            c = scope.column(e)
            if grouped and (c.t, c.c) not in gset:
                raise scope.error(e.pos, f"column {c.name} must be in GROUP BY or inside an aggregate")
            items.append((it.alias or e.name, ("col", c) if grouped else _getter(c.t, c.c)))
            types.append(c.type.name)
        elif isinstance(e, A.Agg):
            arg = None
            if e.arg is not None:
                if not isinstance(e.arg, A.ColumnRef):
                    raise scope.error(e.pos, "an aggregate takes a column (or * for COUNT)")
                arg = scope.column(e.arg)
                if e.func in ("sum", "avg") and arg.base.name not in _NUMERIC:
                    raise scope.error(e.pos, f"{e.func.upper()} needs a number column; "
                                      f"{arg.name} is {arg.type.name}")
                if arg.base.name.startswith("array<"):
                    raise scope.error(e.pos, f"{arg.name} is an array; it cannot be aggregated")
            name = it.alias or f"{e.func}({'*' if arg is None else e.arg.name})"   # type: ignore[union-attr]
            items.append((name, ("agg", e.func, arg)))
            types.append(_agg_type(e.func, arg))
        else:
            raise scope.error(getattr(e, "pos", 0),
                              "a selected item must be a column, t.*, * or an aggregate")
    return items, grouped, types


def _agg_type(func: str, arg: Any) -> str:
    """The type name of an aggregate's value (its column's for MIN and MAX)."""
    if func == "count":
        return "u64"
    if func == "avg":
        return "f64"
    assert arg is not None
    if func == "sum":
        b = arg.base.name
        return "f64" if b in ("f32", "f64") else "u64" if b.startswith("u") else "i64"
    return str(arg.type.name)


_NUMERIC = frozenset(("i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "f32", "f64", "timestamp"))


def _getter(ti: int, ci: int) -> Callable[[tuple], Any]:
    return lambda c: c[ti][ci]


def _group(st: A.Select, scope: Scope, items: list[tuple[str, Any]], rows: list[tuple]) -> list[Row]:
    gcols = [scope.column(g) for g in st.group_by]         # type: ignore[arg-type]
    groups: dict[tuple, list[tuple]] = {}
    for c in rows:
        groups.setdefault(tuple(c[g.t][g.c] for g in gcols), []).append(c)
    if not gcols and not groups:
        groups[()] = []                                      # aggregates over nothing: one row
    out = []
    for key, members in groups.items():
        vals = []
        for _, spec in items:
            if spec[0] == "col":
                c = spec[1]
                vals.append(key[[(g.t, g.c) for g in gcols].index((c.t, c.c))])
            else:
                _, func, arg = spec
                xs = [None] * len(members) if arg is None else [m[arg.t][arg.c] for m in members]
                vals.append(_agg(func, xs, arg is None))
        out.append(tuple(vals))
    return out


def _order_items(st: A.Select, scope: Scope, items: list[tuple[str, Any]],
                 grouped: bool) -> list[tuple[int, Any, bool]]:
    """(output position or -1, extractor of a combo, descending) per ORDER BY term."""
    out: list[tuple[int, Any, bool]] = []
    names = [n for n, _ in items]
    for o in st.order_by:
        e = o.expr
        if grouped:
            pos = -1
            if isinstance(e, A.ColumnRef) and e.table is None and e.name in names:
                pos = names.index(e.name)
            elif isinstance(e, A.ColumnRef):
                c = scope.column(e)
                for i, (_, spec) in enumerate(items):
                    if spec[0] == "col" and (spec[1].t, spec[1].c) == (c.t, c.c):
                        pos = i
            elif isinstance(e, A.Agg):
                arg = scope.column(e.arg) if isinstance(e.arg, A.ColumnRef) else None
                for i, (_, spec) in enumerate(items):
                    if spec[0] == "agg" and spec[1] == e.func and spec[2] == arg:
                        pos = i
            if pos < 0:
                raise scope.error(getattr(e, "pos", 0), "with GROUP BY, ORDER BY takes a selected column "
                                  "or aggregate")
            out.append((pos, None, o.desc))
            continue
        if isinstance(e, A.ColumnRef) and e.table is None and e.name in names and \
                not any(e.name in s.column_names for s in scope.schemas):
            i = names.index(e.name)                           # an alias
            out.append((i, items[i][1], o.desc))
            continue
        if not isinstance(e, A.ColumnRef):
            raise scope.error(getattr(e, "pos", 0), "ORDER BY takes columns")
        c = scope.column(e)
        out.append((-1, _getter(c.t, c.c), o.desc))
    return out
