"""Table schemas: columns, indexes, primary key, auto-increment, visibility.

Plain Python objects, validated on construction so that every engine component can
trust them.  Both the Cython engine and the reference twin build from these.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from stdb._core.codec import ColumnType, parse_type
from stdb.errors import SchemaError

__all__ = ["Column", "IndexDef", "TableSchema", "schema_from_dict", "schema_to_dict"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
INDEX_KINDS = ("hash", "btree")


def _check_name(what: str, name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise SchemaError(
            f"invalid {what} name {name!r}",
            hint="names start with a letter or _, then letters, digits or _, at most 63 characters",
        )
    return name


@dataclass(frozen=True)
class Column:
    """One column: a name, a type (name string or ColumnType) and the auto-increment flag."""

    name: str
    type: ColumnType
    auto_inc: bool = False

    def __init__(self, name: str, type: str | ColumnType, auto_inc: bool = False) -> None:
        object.__setattr__(self, "name", _check_name("column", name))
        object.__setattr__(self, "type", parse_type(type))
        object.__setattr__(self, "auto_inc", bool(auto_inc))
        if self.auto_inc and not self.type.is_integer:
            raise SchemaError(
                f"column '{name}' is auto_inc but has type {self.type.name}",
                hint="auto-increment needs an integer column (i8..i64, u8..u64)",
            )


@dataclass(frozen=True)
class IndexDef:
    """An index over one or more columns.

    ``kind`` is ``"hash"`` (point lookups only) or ``"btree"`` (ordered: point lookups and
    range scans).  ``unique`` makes it a constraint.
    """

    name: str
    columns: tuple[str, ...]
    kind: str = "btree"
    unique: bool = False

    def __init__(self, name: str, columns: Sequence[str] | str, kind: str = "btree",
                 unique: bool = False) -> None:
        if isinstance(columns, str):
            columns = (columns,)
        object.__setattr__(self, "name", _check_name("index", name))
        object.__setattr__(self, "columns", tuple(columns))
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "unique", bool(unique))
        if kind not in INDEX_KINDS:
            raise SchemaError(f"index '{name}' has unknown kind {kind!r}", hint="use 'hash' or 'btree'")
        if not self.columns:
            raise SchemaError(f"index '{name}' names no columns")
        if len(set(self.columns)) != len(self.columns):
            raise SchemaError(f"index '{name}' names a column twice: {', '.join(self.columns)}")


@dataclass(frozen=True)
class TableSchema:
    """A table: ordered columns, an optional primary key, secondary indexes, visibility.

    The primary key becomes a unique hash index named ``pk``.
    """

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    indexes: tuple[IndexDef, ...] = field(default=())
    public: bool = True

    def __init__(self, name: str, columns: Iterable[Column | tuple], primary_key: Sequence[str] | str = (),
                 indexes: Iterable[IndexDef] = (), public: bool = True) -> None:
        cols = tuple(c if isinstance(c, Column) else Column(*c) for c in columns)
        if isinstance(primary_key, str):
            primary_key = (primary_key,)
        object.__setattr__(self, "name", _check_name("table", name))
        object.__setattr__(self, "columns", cols)
        object.__setattr__(self, "primary_key", tuple(primary_key))
        object.__setattr__(self, "indexes", tuple(indexes))
        object.__setattr__(self, "public", bool(public))
        self._validate()

    def _validate(self) -> None:
        if not self.columns:
            raise SchemaError(f"table '{self.name}' has no columns")
        names = [c.name for c in self.columns]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise SchemaError(f"table '{self.name}' has duplicate columns: {', '.join(dup)}")
        if len(self.columns) > 255:
            raise SchemaError(f"table '{self.name}' has {len(self.columns)} columns; at most 255")
        for c in self.primary_key:
            if c not in names:
                raise SchemaError(f"table '{self.name}': primary key column '{c}' does not exist")
        if len(set(self.primary_key)) != len(self.primary_key):
            raise SchemaError(f"table '{self.name}': primary key names a column twice")
        seen = {"pk"} if self.primary_key else set()
        for ix in self.indexes:
            if not isinstance(ix, IndexDef):
                raise SchemaError(f"table '{self.name}': indexes must be IndexDef, got {type(ix).__name__}")
            if ix.name in seen:
                raise SchemaError(f"table '{self.name}': index name '{ix.name}' is used twice"
                                  + (" ('pk' is the primary key's)" if ix.name == "pk" else ""))
            seen.add(ix.name)
            for c in ix.columns:
                if c not in names:
                    raise SchemaError(f"table '{self.name}': index '{ix.name}' names missing column '{c}'")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def column_types(self) -> tuple[ColumnType, ...]:
        return tuple(c.type for c in self.columns)

    def column_index(self, name: str) -> int:
        for i, c in enumerate(self.columns):
            if c.name == name:
                return i
        raise SchemaError(f"table '{self.name}' has no column '{name}'",
                          hint=f"columns are {', '.join(self.column_names)}")

    def all_indexes(self) -> tuple[IndexDef, ...]:
        """The primary key (as a unique hash index named ``pk``) first, then the others."""
        if self.primary_key:
            return (IndexDef("pk", self.primary_key, "hash", unique=True),) + self.indexes
        return self.indexes

    def index(self, name: str) -> IndexDef:
        for ix in self.all_indexes():
            if ix.name == name:
                return ix
        raise SchemaError(f"table '{self.name}' has no index '{name}'",
                          hint="indexes are " + (", ".join(i.name for i in self.all_indexes()) or "none"))


def schema_to_dict(schema: TableSchema) -> dict:
    """A JSON-ready description of a table schema (stored in the commit log and snapshots)."""
    return {
        "name": schema.name,
        "columns": [{"name": c.name, "type": c.type.name, "auto_inc": c.auto_inc} for c in schema.columns],
        "primary_key": list(schema.primary_key),
        "indexes": [{"name": i.name, "columns": list(i.columns), "kind": i.kind, "unique": i.unique}
                    for i in schema.indexes],
        "public": schema.public,
    }


def schema_from_dict(d: dict) -> TableSchema:
    """Inverse of :func:`schema_to_dict`; SchemaError on anything malformed."""
    try:
        return TableSchema(
            d["name"],
            [Column(c["name"], c["type"], bool(c.get("auto_inc", False))) for c in d["columns"]],
            primary_key=tuple(d.get("primary_key", ())),
            indexes=[IndexDef(i["name"], tuple(i["columns"]), i.get("kind", "btree"), bool(i.get("unique")))
                     for i in d.get("indexes", ())],
            public=bool(d.get("public", True)),
        )
    except SchemaError:
        raise
    except (KeyError, TypeError, AttributeError) as e:
        raise SchemaError(f"malformed table schema description: {e!r}") from None
