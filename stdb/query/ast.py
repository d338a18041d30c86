"""Syntax tree of the SQL subset (what the parser produces, before names are bound).

Every node keeps ``pos``, the character offset in the query text where it starts, so that
errors found later (an unknown column, a literal of the wrong type) can point at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Expr", "ColumnRef", "Literal", "Param", "Compare", "And", "Or", "Not", "InList", "IsNull",
    "Between", "Agg", "Star", "SelectItem", "TableRef", "Join", "OrderItem", "Select", "Insert",
    "Update", "Delete", "Explain", "Statement", "COMPARE_OPS", "AGG_FUNCS",
]

COMPARE_OPS = ("=", "!=", "<", "<=", ">", ">=")
AGG_FUNCS = ("count", "sum", "min", "max", "avg")


@dataclass(frozen=True)
class ColumnRef:
    table: str | None          # qualifier as written (a table name or alias), or None
    name: str
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Literal:
    value: Any                 # int, float, str, bytes, bool or None (NULL)
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Param:
    name: str                  # "sender"
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Compare:
    op: str                    # one of COMPARE_OPS
    left: Expr
    right: Expr
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Not:
    item: Expr
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class InList:
    expr: Expr
    values: tuple[Expr, ...]
    negated: bool = False
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class IsNull:
    expr: Expr
    negated: bool = False      # IS NOT NULL
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Between:
    expr: Expr
    lo: Expr
    hi: Expr
    negated: bool = False
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Agg:
    func: str                  # one of AGG_FUNCS
    arg: Expr | None           # None: COUNT(*)
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Star:
    table: str | None          # t.* or *
    pos: int = field(default=0, compare=False)


Expr = ColumnRef | Literal | Param | Compare | And | Or | Not | InList | IsNull | Between | Agg


@dataclass(frozen=True)
class SelectItem:
    expr: Expr | Star
    alias: str | None = None


@dataclass(frozen=True)
class TableRef:
    name: str
    alias: str | None = None
    pos: int = field(default=0, compare=False)

    @property
    def ref(self) -> str:
        """The name columns qualify it by."""
        return self.alias or self.name


@dataclass(frozen=True)
class Join:
    table: TableRef
    on: Expr


@dataclass(frozen=True)
class OrderItem:
    expr: Expr
    desc: bool = False


@dataclass(frozen=True)
class Select:
    items: tuple[SelectItem, ...]
    table: TableRef
    joins: tuple[Join, ...] = ()
    where: Expr | None = None
    group_by: tuple[Expr, ...] = ()
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None


@dataclass(frozen=True)
class Insert:
    table: TableRef
    columns: tuple[str, ...] | None        # None: every column in order
    rows: tuple[tuple[Expr, ...], ...]


@dataclass(frozen=True)
class Update:
    table: TableRef
    assignments: tuple[tuple[str, Expr], ...]
    where: Expr | None = None


@dataclass(frozen=True)
class Delete:
    table: TableRef
    where: Expr | None = None


@dataclass(frozen=True)
class Explain:
    """``EXPLAIN <statement>``: the plan of a SELECT and its estimated rows, without running it
    (DML is refused when it is explained)."""

    statement: Select | Insert | Update | Delete
    pos: int = field(default=0, compare=False)


Statement = Select | Insert | Update | Delete | Explain
