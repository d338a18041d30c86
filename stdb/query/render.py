"""Canonical SQL text of a parsed statement (parameters replaced by their values).

Two queries that differ only in spacing, keyword case or redundant parentheses render the
same, so the subscription engine evaluates them once (``normalize``).
"""

from __future__ import annotations

from typing import Any

from stdb.query import ast as A
from stdb.query.parser import KEYWORDS

__all__ = ["render", "render_expr", "literal_sql"]


def literal_sql(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, bytes):
        return f"X'{v.hex()}'"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return repr(v)


def _ident(name: str) -> str:
    if name.isidentifier() and name.isascii() and name.lower() not in KEYWORDS:
        return name
    return '"' + name.replace('"', '""') + '"'


_ATOMS = (A.ColumnRef, A.Literal, A.Param, A.Agg, A.Star)


def render_expr(e: A.Expr | A.Star, params: dict[str, Any]) -> str:
    def r(x: A.Expr | A.Star) -> str:
        # an operand that is itself a condition keeps its parentheses, so that the text parses
        # back to the same tree (the binder refuses such operands, but the text must not lie)
        s = render_expr(x, params)
        return s if isinstance(x, _ATOMS) or isinstance(e, (A.And, A.Or, A.Not)) else f"({s})"
    if isinstance(e, A.Star):
        return f"{_ident(e.table)}.*" if e.table else "*"
    if isinstance(e, A.ColumnRef):
        return f"{_ident(e.table)}.{_ident(e.name)}" if e.table else _ident(e.name)
    if isinstance(e, A.Literal):
        return literal_sql(e.value)
    if isinstance(e, A.Param):
        return literal_sql(params[e.name]) if e.name in params else f":{e.name}"
    if isinstance(e, A.Compare):
        return f"{r(e.left)} {e.op} {r(e.right)}"
    if isinstance(e, A.And):
        return " AND ".join(f"({r(x)})" for x in e.items)
    if isinstance(e, A.Or):
        return " OR ".join(f"({r(x)})" for x in e.items)
    if isinstance(e, A.Not):
        return f"NOT ({r(e.item)})"
    if isinstance(e, A.InList):
        return f"{r(e.expr)} {'NOT ' if e.negated else ''}IN ({', '.join(r(v) for v in e.values)})"
    if isinstance(e, A.IsNull):
        return f"{r(e.expr)} IS {'NOT ' if e.negated else ''}NULL"
    if isinstance(e, A.Between):
        return f"{r(e.expr)} {'NOT ' if e.negated else ''}BETWEEN {r(e.lo)} AND {r(e.hi)}"
    if isinstance(e, A.Agg):
        return f"{e.func.upper()}({'*' if e.arg is None else r(e.arg)})"
    raise TypeError(f"cannot render {type(e).__name__}")


def _operand(e: A.Expr | A.Star, params: dict[str, Any]) -> str:
    """A select item, grouping, ordering, assigned or inserted value: parenthesised unless it is
    a column, a value or an aggregate."""
    s = render_expr(e, params)
    return s if isinstance(e, _ATOMS) else f"({s})"


def _table(t: A.TableRef) -> str:
    return _ident(t.name) + (f" AS {_ident(t.alias)}" if t.alias else "")


def render(st: A.Statement, params: dict[str, Any] | None = None) -> str:
    p = params or {}
    if isinstance(st, A.Explain):
        return "EXPLAIN " + render(st.statement, p)
    if isinstance(st, A.Select):
        items = ", ".join(_operand(i.expr, p) + (f" AS {_ident(i.alias)}" if i.alias else "")
                          for i in st.items)
        out = f"SELECT {items} FROM {_table(st.table)}"
        for j in st.joins:
            out += f" JOIN {_table(j.table)} ON {render_expr(j.on, p)}"
        if st.where is not None:
            out += f" WHERE {render_expr(st.where, p)}"
        if st.group_by:
            out += " GROUP BY " + ", ".join(_operand(g, p) for g in st.group_by)
        if st.order_by:
            out += " ORDER BY " + ", ".join(_operand(o.expr, p) + (" DESC" if o.desc else "")
                                            for o in st.order_by)
        if st.limit is not None:
            out += f" LIMIT {st.limit}"
        return out
    if isinstance(st, A.Insert):
        cols = f" ({', '.join(map(_ident, st.columns))})" if st.columns is not None else ""
        rows = ", ".join("(" + ", ".join(_operand(v, p) for v in row) + ")" for row in st.rows)
        return f"INSERT INTO {_table(st.table)}{cols} VALUES {rows}"
    if isinstance(st, A.Update):
        sets = ", ".join(f"{_ident(c)} = {_operand(v, p)}" for c, v in st.assignments)
        where = f" WHERE {render_expr(st.where, p)}" if st.where is not None else ""
        return f"UPDATE {_table(st.table)} SET {sets}{where}"
    where = f" WHERE {render_expr(st.where, p)}" if st.where is not None else ""
    return f"DELETE FROM {_table(st.table)}{where}"
