"""Name binding, literal typing and predicate compilation.

A query's tables form a ``Scope``; each column reference resolves to (table position, column
position, type).  Predicates compile to Python functions of one row per table in scope,
generated as source once per query (``compile_predicate``), with SQL's three-valued logic
where a column is an option (NULL): a comparison with NULL is *unknown*, NOT unknown is
unknown, and a row is selected only when the whole condition is true.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from stdb._core.codec import ColumnType, parse_type
from stdb._core.schema import TableSchema
from stdb.errors import DataError, QueryError
from stdb.query import ast as A
from stdb.query.parser import position_text

__all__ = ["Col", "Scope", "Sarg", "compile_predicate", "conjuncts", "index_for", "merge_ranges", "sargs",
           "typed_literal"]

_INTS = frozenset(("i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "timestamp"))
_FLOATS = frozenset(("f32", "f64"))


@dataclass(frozen=True)
class Col:
    t: int                     # table position in the scope
    c: int                     # column position in the table
    type: ColumnType           # the column's type (option<T> kept)
    name: str                  # table.column as the scope names it

    @property
    def nullable(self) -> bool:
        return self.type.name.startswith("option<")

    @property
    def base(self) -> ColumnType:
        inner = self.type.inner
        return inner if self.nullable and inner is not None else self.type


class Scope:
    """The tables a query reads, in FROM/JOIN order, and the text for error positions."""

    def __init__(self, sql: str, refs: Sequence[A.TableRef],
                 schemas: Callable[[str], TableSchema | str | None], params: dict[str, Any]) -> None:
        self.sql = sql
        self.params = params
        self.refs = list(refs)
        self.schemas: list[TableSchema] = []
        seen: set[str] = set()
        for r in refs:
            s = schemas(r.name)
            if s is None:
                raise self.error(r.pos, f"no table named '{r.name}'")
            if isinstance(s, str):                 # the lookup's reason this table is not readable
                raise self.error(r.pos, s)
            if r.ref in seen:
                raise self.error(r.pos, f"'{r.ref}' names two tables in this query; give one an alias")
            seen.add(r.ref)
            self.schemas.append(s)

    def error(self, pos: int, msg: str, hint: str | None = None) -> QueryError:
        return QueryError(f"SQL error at {position_text(self.sql, pos)}: {msg}", hint=hint)

    def column(self, ref: A.ColumnRef) -> Col:
        hits = []
        for ti, (r, s) in enumerate(zip(self.refs, self.schemas, strict=True)):
            if ref.table is not None and ref.table != r.ref:
                continue
            if ref.name in s.column_names:
                hits.append((ti, s.column_names.index(ref.name), r.ref))
        if ref.table is not None and ref.table not in {r.ref for r in self.refs}:
            raise self.error(ref.pos, f"no table '{ref.table}' in this query",
                             hint="tables here: " + ", ".join(r.ref for r in self.refs))
        if not hits:
            where = f"table '{ref.table}'" if ref.table else "any table of this query"
            cols = ", ".join(c for s in self.schemas for c in s.column_names)
            raise self.error(ref.pos, f"no column '{ref.name}' in {where}", hint=f"columns: {cols}")
        if len(hits) > 1:
            raise self.error(ref.pos, f"column '{ref.name}' is ambiguous: it is in "
                             + " and ".join(f"'{h[2]}'" for h in hits), hint="qualify it as table.column")
        ti, ci, tref = hits[0]
        return Col(ti, ci, self.schemas[ti].columns[ci].type, f"{tref}.{ref.name}")

    def value(self, e: A.Literal | A.Param) -> Any:
        if isinstance(e, A.Param):
            if e.name not in self.params:
                raise self.error(e.pos, f"unknown parameter ':{e.name}'",
                                 hint="parameters: " + ", ".join(f":{p}" for p in self.params))
            return self.params[e.name]
        return e.value


def index_for(schema: TableSchema, col: str, btree: bool) -> str | None:
    """An index whose first column is ``col``: one that ranges over it (``btree``), or one that
    can look rows up by one value of it (a btree, or a single-column hash index)."""
    for ix in schema.all_indexes():
        if ix.columns[0] != col:
            continue
        if ix.kind == "btree" or (not btree and len(ix.columns) == 1):
            return ix.name
    return None


def conjuncts(e: A.Expr | None) -> list[A.Expr]:
    """The top-level AND terms of a condition (nested ANDs flattened)."""
    if e is None:
        return []
    if isinstance(e, A.And):
        out: list[A.Expr] = []
        for it in e.items:
            out.extend(conjuncts(it))
        return out
    return [e]


def typed_literal(scope: Scope, col: Col, e: A.Expr) -> Any:
    """The literal or parameter ``e`` as a value comparable with column ``col`` (QueryError if
    its type cannot be)."""
    if not isinstance(e, (A.Literal, A.Param)):
        raise scope.error(getattr(e, "pos", 0), "expected a value here")
    v = scope.value(e)
    pos = e.pos
    if v is None:
        raise scope.error(pos, "comparing with NULL is never true", hint="write IS NULL / IS NOT NULL")
    t = col.base.name
    if t.startswith("array<"):
        raise scope.error(pos, f"column {col.name} is an array; arrays cannot be compared")
    ok = False
    if t in _INTS:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    elif t in _FLOATS:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        if ok:
            if isinstance(v, float) and math.isnan(v):
                raise scope.error(pos, "NaN cannot be compared")
            v = float(v)
            if t == "f32":
                try:
                    v = parse_type("f32").check(v)
                except DataError:
                    pass              # out of f32 range: keep it (compares as it is)
    elif t == "bool":
        ok = isinstance(v, bool)
    elif t == "string":
        ok = isinstance(v, str)
    elif t == "bytes":
        ok = isinstance(v, bytes)
    elif t == "identity":
        ok = isinstance(v, bytes) and len(v) == 32
    if not ok:
        shown = f"X'{v.hex()}'" if isinstance(v, bytes) else repr(v)
        what = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
                bytes: f"{len(v)} bytes" if isinstance(v, bytes) else "bytes"}.get(type(v), type(v).__name__)
        raise scope.error(pos, f"column {col.name} is {col.type.name}; {shown} is {what}",
                          hint="identities are written as X'<64 hex digits>'" if t == "identity" else None)
    return v


# ---- three-valued helpers used by generated code

def _and3(*xs: Any) -> bool | None:
    unknown = False
    for x in xs:
        if x is False:
            return False
        if x is None:
            unknown = True
    return None if unknown else True


def _or3(*xs: Any) -> bool | None:
    unknown = False
    for x in xs:
        if x is True:
            return True
        if x is None:
            unknown = True
    return None if unknown else False


def _not3(x: Any) -> bool | None:
    return None if x is None else not x


_PY_OP = {"=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_FLIP = {"=": "=", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


class _Gen:
    """Generates the source of one predicate; constants go into the namespace, never the text."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.consts: dict[str, Any] = {}
        self.tmp = 0

    def const(self, v: Any) -> str:
        name = f"k{len(self.consts)}"
        self.consts[name] = v
        return name

    def col(self, c: Col) -> str:
        return f"r{c.t}[{c.c}]"

    def expr(self, e: A.Expr) -> tuple[str, bool]:
        """(source, may be None)."""
        s = self.scope
        if isinstance(e, A.And) or isinstance(e, A.Or):
            parts = [self.expr(x) for x in e.items]
            if any(n for _, n in parts):
                fn = "_and3" if isinstance(e, A.And) else "_or3"
                return f"{fn}({', '.join(p for p, _ in parts)})", True
            j = " and " if isinstance(e, A.And) else " or "
            return "(" + j.join(f"({p})" for p, _ in parts) + ")", False
        if isinstance(e, A.Not):
            p, n = self.expr(e.item)
            return (f"_not3({p})", True) if n else (f"(not {p})", False)
        if isinstance(e, A.Compare):
            return self.compare(e)
        if isinstance(e, A.Between):
            c = self.column_of(e.expr)
            lo = self.const(typed_literal(s, c, e.lo))
            hi = self.const(typed_literal(s, c, e.hi))
            return self.guard(c, f"({lo} <= {{v}} <= {hi})", e.negated)
        if isinstance(e, A.InList):
            c = self.column_of(e.expr)
            vals = frozenset(typed_literal(s, c, v) for v in e.values)
            return self.guard(c, f"({{v}} in {self.const(vals)})", e.negated)
        if isinstance(e, A.IsNull):
            c = self.column_of(e.expr)
            return f"({self.col(c)} is {'not ' if e.negated else ''}None)", False
        if isinstance(e, A.ColumnRef):
            c = s.column(e)
            if c.base.name != "bool":
                raise s.error(e.pos, f"column {c.name} is {c.type.name}, not a condition",
                              hint="compare it with a value, e.g. x = 1")
            return (f"{self.col(c)}", c.nullable)
        if isinstance(e, A.Literal) and isinstance(e.value, bool):
            return ("True" if e.value else "False"), False
        if isinstance(e, A.Agg):
            raise s.error(e.pos, "an aggregate cannot be used in a condition")
        raise s.error(getattr(e, "pos", 0), "expected a condition here")

    def column_of(self, e: A.Expr) -> Col:
        if not isinstance(e, A.ColumnRef):
            raise self.scope.error(getattr(e, "pos", 0), "expected a column here")
        return self.scope.column(e)

    def guard(self, c: Col, template: str, negated: bool) -> tuple[str, bool]:
        """``template`` reads the column as ``{v}``: bind it once, NULL-aware for options."""
        body = f"(not {template})" if negated else template
        if c.nullable:
            v = f"v{self.tmp}"
            self.tmp += 1
            return f"(None if ({v} := {self.col(c)}) is None else {body.format(v=v)})", True
        return body.format(v=self.col(c)), False

    def compare(self, e: A.Compare) -> tuple[str, bool]:
        s = self.scope
        lcol = isinstance(e.left, A.ColumnRef)
        rcol = isinstance(e.right, A.ColumnRef)
        if lcol and rcol:
            a, b = s.column(e.left), s.column(e.right)          # type: ignore[arg-type]
            if _kind(a) != _kind(b):
                raise s.error(e.pos, f"cannot compare {a.name} ({a.type.name}) with {b.name} ({b.type.name})")
            src = f"({self.col(a)} {_PY_OP[e.op]} {self.col(b)})"
            if a.nullable or b.nullable:
                return (f"(None if {self.col(a)} is None or {self.col(b)} is None else {src})", True)
            return src, False
        if not lcol and not rcol:
            raise s.error(e.pos, "a comparison needs a column on at least one side")
        op = e.op if lcol else _FLIP[e.op]
        colref, lit = (e.left, e.right) if lcol else (e.right, e.left)
        c = s.column(colref)                                    # type: ignore[arg-type]
        k = self.const(typed_literal(s, c, lit))
        return self.guard(c, f"({{v}} {_PY_OP[op]} {k})", False)


def _kind(c: Col) -> str:
    t = c.base.name
    if t in _INTS or t in _FLOATS:
        return "number"
    return t


def compile_predicate(scope: Scope, e: A.Expr | None) -> Callable[..., bool]:
    """A function of one row per scope table that is True exactly when ``e`` is true."""
    n = len(scope.refs)
    args = ", ".join(f"r{i}" for i in range(n))
    if e is None:
        src = f"lambda {args}: True"
        return eval(src, {})                                    # noqa: S307 (our own text)
    g = _Gen(scope)
    body, nullable = g.expr(e)
    if nullable:
        body = f"({body}) is True"
    src = f"lambda {args}: {body}"
    ns: dict[str, Any] = {"_and3": _and3, "_or3": _or3, "_not3": _not3, **g.consts}
    fn = eval(compile(src, f"<query {scope.sql[:40]!r}>", "eval"), ns)   # noqa: S307
    fn.__doc__ = src
    return fn


# ---- search arguments: the conditions an index or the matcher can use

_RANGE_OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}
_MIRROR = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "="}


@dataclass(frozen=True)
class Sarg:
    """One top-level conjunct of the form ``column = v``, ``column IN (...)``, ``column op v``
    or ``column BETWEEN a AND b`` (values typed for the column)."""

    term: int                  # its position among the conjuncts
    col: Col
    values: tuple = ()         # equality / IN
    lo: Any = None             # range bounds (None: unbounded)
    lo_incl: bool = False
    hi: Any = None
    hi_incl: bool = False

    @property
    def is_eq(self) -> bool:
        return bool(self.values)


def sargs(scope: Scope, terms: Sequence[A.Expr]) -> list[Sarg]:
    out: list[Sarg] = []
    for i, t in enumerate(terms):
        if isinstance(t, A.Compare) and (t.op == "=" or t.op in _RANGE_OPS):
            if isinstance(t.left, A.ColumnRef) and not isinstance(t.right, A.ColumnRef):
                col, op, lit = scope.column(t.left), t.op, t.right
            elif isinstance(t.right, A.ColumnRef) and not isinstance(t.left, A.ColumnRef):
                col, op, lit = scope.column(t.right), _MIRROR[t.op], t.left
            else:
                continue
            v = typed_literal(scope, col, lit)
            if op == "=":
                out.append(Sarg(i, col, (v,)))
            elif op in (">", ">="):
                out.append(Sarg(i, col, lo=v, lo_incl=op == ">="))
            else:
                out.append(Sarg(i, col, hi=v, hi_incl=op == "<="))
        elif isinstance(t, A.InList) and not t.negated and isinstance(t.expr, A.ColumnRef):
            col = scope.column(t.expr)
            out.append(Sarg(i, col, tuple(dict.fromkeys(typed_literal(scope, col, v) for v in t.values))))
        elif isinstance(t, A.Between) and not t.negated and isinstance(t.expr, A.ColumnRef):
            col = scope.column(t.expr)
            out.append(Sarg(i, col, lo=typed_literal(scope, col, t.lo), lo_incl=True,
                            hi=typed_literal(scope, col, t.hi), hi_incl=True))
    return out


def merge_ranges(pieces: Sequence[Sarg]) -> tuple[Any, bool, Any, bool]:
    """The intersection of range sargs on one column: (lo, lo_incl, hi, hi_incl)."""
    lo = hi = None
    lo_incl = hi_incl = False
    for p in pieces:
        if p.lo is not None and (lo is None or p.lo > lo or (p.lo == lo and not p.lo_incl)):
            lo, lo_incl = p.lo, p.lo_incl
        if p.hi is not None and (hi is None or p.hi < hi or (p.hi == hi and not p.hi_incl)):
            hi, hi_incl = p.hi, p.hi_incl
    return lo, lo_incl, hi, hi_incl
