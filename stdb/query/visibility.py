"""Row-level security: a module's visibility filters.

A module may declare, per public table, filters of the form ``SELECT * FROM t WHERE cond``,
where ``cond`` may use ``:sender`` (the identity asking).  For everyone but the database's
owner, table ``t`` then holds only the rows that satisfy at least one of its filters, in every
subscription and one-off query: ``restrict`` ANDs the disjunction of the filters into the
query's WHERE before it is planned, once per occurrence of the table (under its alias).  The
rewritten query is an ordinary query, so the planner, the matcher and the join delta rule need
nothing of their own, and the subscription's normalized text (its deduplication key) carries
the sender wherever a filter uses it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stdb._core.schema import TableSchema
from stdb.errors import QueryError
from stdb.query import ast as A
from stdb.query.bind import Scope, compile_predicate
from stdb.query.parser import parse

__all__ = ["VisibilityFilter", "parse_filter", "restrict", "by_table"]

_ANY_SENDER = bytes(32)


@dataclass(frozen=True)
class VisibilityFilter:
    table: str
    sql: str
    ref: str                   # the name the filter's columns are qualified by (table or alias)
    where: A.Expr | None       # None: every row is visible


def parse_filter(sql: str, schemas: Callable[[str], TableSchema | str | None]) -> VisibilityFilter:
    """Parse and type-check one filter; QueryError naming the problem otherwise."""
    if not isinstance(sql, str):
        raise QueryError(f"a visibility filter is SQL text, not {type(sql).__name__}")
    st = parse(sql)
    if not isinstance(st, A.Select) or st.joins or st.group_by or st.order_by or st.limit is not None \
            or len(st.items) != 1 or not isinstance(st.items[0].expr, A.Star):
        raise QueryError("a visibility filter is SELECT * FROM table WHERE condition (one table, "
                         "no GROUP BY, ORDER BY or LIMIT)", hint=f"got: {sql}")
    scope = Scope(sql, [st.table], schemas, {"sender": _ANY_SENDER})
    star = st.items[0].expr
    if star.table is not None and star.table != st.table.ref:
        raise scope.error(star.pos, f"no table '{star.table}' in this query")
    if not scope.schemas[0].public:
        raise scope.error(st.table.pos, f"table '{st.table.name}' is private: only its owner sees it, "
                          "so a filter has nothing to narrow", hint="make the table public")
    compile_predicate(scope, st.where)          # binds every name and literal, or raises
    return VisibilityFilter(st.table.name, sql, st.table.ref, st.where)


def by_table(filters: Sequence[VisibilityFilter]) -> dict[str, tuple[VisibilityFilter, ...]]:
    out: dict[str, tuple[VisibilityFilter, ...]] = {}
    for f in filters:
        out[f.table] = out.get(f.table, ()) + (f,)
    return out


def _requalify(e: Any, old: str, new: A.TableRef) -> Any:
    """``e`` with its column references qualified by ``new`` and every position at ``new``
    (so that an error points at the table in the user's query)."""
    if isinstance(e, A.ColumnRef):
        if e.table is not None and e.table != old:      # parse_filter allows no other table
            raise QueryError(f"visibility filter refers to unknown table '{e.table}'")
        return A.ColumnRef(new.ref, e.name, new.pos)
    if isinstance(e, tuple):
        return tuple(_requalify(x, old, new) for x in e)
    if dataclasses.is_dataclass(e) and not isinstance(e, type):
        changes = {f.name: _requalify(getattr(e, f.name), old, new)
                   for f in dataclasses.fields(e) if f.name != "pos"}
        return dataclasses.replace(e, **changes, pos=new.pos)
    return e


def restrict(st: A.Select, filters: Mapping[str, tuple[VisibilityFilter, ...]]) -> A.Select:
    """``st`` with each filtered table's visibility condition ANDed into its WHERE."""
    if not filters:
        return st
    extra: list[A.Expr] = []
    for ref in [st.table] + [j.table for j in st.joins]:
        fs = filters.get(ref.name)
        if not fs or any(f.where is None for f in fs):
            continue
        alts = tuple(_requalify(f.where, f.ref, ref) for f in fs)
        extra.append(alts[0] if len(alts) == 1 else A.Or(alts, ref.pos))
    if not extra:
        return st
    terms = extra if st.where is None else [st.where, *extra]
    return dataclasses.replace(st, where=terms[0] if len(terms) == 1 else A.And(tuple(terms)))
