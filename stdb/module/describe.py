"""The module description (docs/abi.md, "Module description"): parse and validate it.

A module says what tables and reducers it has as UTF-8 JSON.  Everything is checked here,
before anything is created: unknown keys, wrong types, bad names, duplicate reducers or
lifecycle kinds, schedule tables without their columns, scheduled reducers whose parameters
are not the table's columns.  Problems are collected and reported together.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

from stdb._core.codec import RowCodec
from stdb._core.schema import Column, IndexDef, TableSchema
from stdb.errors import ModuleError, StdbError
from stdb.query.visibility import VisibilityFilter, by_table, parse_filter

__all__ = ["ABI_VERSION", "LIFECYCLES", "ModuleSchema", "ReducerDef", "parse_description"]

ABI_VERSION = 1
LIFECYCLES = ("init", "client_connected", "client_disconnected")
SCHEDULE_COLUMNS = (("scheduled_id", "u64"), ("scheduled_at", "timestamp"), ("repeat_us", "u64"))
MAX_DESCRIPTION_BYTES = 4 << 20


@dataclass(frozen=True)
class ReducerDef:
    name: str
    params: tuple[Column, ...]
    lifecycle: str | None = None

    @property
    def param_types(self) -> tuple[str, ...]:
        return tuple(c.type.name for c in self.params)

    def codec(self) -> RowCodec:
        return RowCodec(f"reducer {self.name}", [c.name for c in self.params], list(self.param_types))


@dataclass(frozen=True)
class ModuleSchema:
    tables: tuple[TableSchema, ...]
    reducers: tuple[ReducerDef, ...]
    schedules: dict[str, str]               # schedule table -> reducer it drives
    # table -> its visibility filters (a row is visible to a non-owner if any filter selects it)
    visibility: dict[str, tuple[VisibilityFilter, ...]] = field(default_factory=dict)

    def reducer_index(self, name: str) -> int | None:
        return self._reducer_indexes.get(name)

    @functools.cached_property
    def _reducer_indexes(self) -> dict[str, int]:
        # the first reducer of a name wins, as the linear search this replaces did
        out: dict[str, int] = {}
        for i, r in enumerate(self.reducers):
            out.setdefault(r.name, i)
        return out

    def lifecycle(self, kind: str) -> int | None:
        for i, r in enumerate(self.reducers):
            if r.lifecycle == kind:
                return i
        return None

    def table(self, name: str) -> TableSchema | None:
        for t in self.tables:
            if t.name == name:
                return t
        return None


def _keys(obj: Any, where: str, required: set[str], optional: set[str], problems: list[str]) -> bool:
    if not isinstance(obj, dict):
        problems.append(f"{where}: expected an object, got {type(obj).__name__}")
        return False
    missing = required - obj.keys()
    unknown = obj.keys() - required - optional
    for k in sorted(missing):
        problems.append(f"{where}: missing key '{k}'")
    for k in sorted(unknown):
        problems.append(f"{where}: unknown key '{k}'")
    return not missing


def _list(obj: Any, where: str, problems: list[str]) -> list:
    if not isinstance(obj, list):
        problems.append(f"{where}: expected a list, got {type(obj).__name__}")
        return []
    return obj


def _column(c: Any, where: str, problems: list[str]) -> Column | None:
    if not _keys(c, where, {"name", "type"}, {"auto_inc"}, problems):
        return None
    try:
        return Column(c["name"], c["type"], auto_inc=_bool(c.get("auto_inc", False), where, problems))
    except (StdbError, TypeError) as e:
        problems.append(f"{where}: {getattr(e, 'detail', e)}")
        return None


def _bool(v: Any, where: str, problems: list[str]) -> bool:
    if not isinstance(v, bool):
        problems.append(f"{where}: expected true or false, got {v!r}")
        return False
    return v


def _table(t: Any, where: str, problems: list[str]) -> tuple[TableSchema | None, str | None]:
    if not _keys(t, where, {"name", "columns"}, {"public", "primary_key", "indexes", "scheduled"}, problems):
        return None, None
    where = f"table {t['name']!r}" if isinstance(t["name"], str) else where
    cols = [_column(c, f"{where}, column {i}", problems)
            for i, c in enumerate(_list(t["columns"], where, problems))]
    idx = []
    for i, d in enumerate(_list(t.get("indexes", []), f"{where}, indexes", problems)):
        w = f"{where}, index {i}"
        if not _keys(d, w, {"name", "columns"}, {"kind", "unique"}, problems):
            continue
        try:
            idx.append(IndexDef(d["name"], tuple(_list(d["columns"], w, problems)), d.get("kind", "btree"),
                                unique=_bool(d.get("unique", False), w, problems)))
        except (StdbError, TypeError) as e:
            problems.append(f"{w}: {getattr(e, 'detail', e)}")
    pk = t.get("primary_key", [])
    public = _bool(t.get("public", False), where, problems)
    scheduled = t.get("scheduled")
    if scheduled is not None and not isinstance(scheduled, str):
        problems.append(f"{where}: 'scheduled' must name a reducer, got {scheduled!r}")
        scheduled = None
    if any(c is None for c in cols):
        return None, scheduled
    try:
        schema = TableSchema(t["name"], [c for c in cols if c is not None],
                             primary_key=_list(pk, f"{where}, primary_key", problems),
                             indexes=idx, public=public)
    except (StdbError, TypeError) as e:
        problems.append(f"{where}: {getattr(e, 'detail', e)}")
        return None, scheduled
    if scheduled is not None:
        head = tuple((c.name, c.type.name) for c in schema.columns[:3])
        if head != SCHEDULE_COLUMNS or not schema.columns[0].auto_inc or \
                schema.primary_key != ("scheduled_id",):
            problems.append(f"{where}: a schedule table starts with the columns scheduled_id u64 "
                            "(auto_inc, primary key), scheduled_at timestamp, repeat_us u64")
    return schema, scheduled


def parse_description(raw: bytes) -> ModuleSchema:
    """Parse and check a module description; ModuleError listing every problem otherwise."""
    if len(raw) > MAX_DESCRIPTION_BYTES:
        raise ModuleError(f"the module description is {len(raw)} bytes (at most {MAX_DESCRIPTION_BYTES})")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ModuleError(f"the module description is not UTF-8 JSON: {e}") from None
    problems: list[str] = []
    if not _keys(doc, "description", {"abi", "tables", "reducers"}, {"visibility"}, problems):
        raise ModuleError("bad module description: " + "; ".join(problems))
    if doc["abi"] != ABI_VERSION:
        raise ModuleError(f"the module is built for ABI version {doc['abi']!r}; this host speaks "
                          f"version {ABI_VERSION}", hint="rebuild the module with a matching SDK")
    tables: list[TableSchema] = []
    schedules: dict[str, str] = {}
    for i, t in enumerate(_list(doc["tables"], "tables", problems)):
        schema, scheduled = _table(t, f"table {i}", problems)
        if schema is None:
            continue
        if any(x.name == schema.name for x in tables):
            problems.append(f"table {schema.name!r} is declared twice")
            continue
        tables.append(schema)
        if scheduled is not None:
            schedules[schema.name] = scheduled
    reducers: list[ReducerDef] = []
    for i, r in enumerate(_list(doc["reducers"], "reducers", problems)):
        where = f"reducer {i}"
        if not _keys(r, where, {"name", "params"}, {"lifecycle"}, problems):
            continue
        name = r["name"]
        if not isinstance(name, str) or not name or len(name) > 128 or not name.isprintable():
            problems.append(f"{where}: bad reducer name {name!r}")
            continue
        where = f"reducer {name!r}"
        params = [_column(c, f"{where}, param {j}", problems)
                  for j, c in enumerate(_list(r["params"], where, problems))]
        if any(p is None for p in params):
            continue
        names = [p.name for p in params if p is not None]
        if len(set(names)) != len(names):
            problems.append(f"{where}: parameter names repeat")
        life = r.get("lifecycle")
        if life is not None and life not in LIFECYCLES:
            problems.append(f"{where}: unknown lifecycle {life!r} (one of {', '.join(LIFECYCLES)})")
            life = None
        if life is not None and params:
            problems.append(f"{where}: lifecycle reducers take no parameters")
        if any(x.name == name for x in reducers):
            problems.append(f"reducer {name!r} is declared twice")
        if life is not None and any(x.lifecycle == life for x in reducers):
            problems.append(f"two reducers are the {life} lifecycle reducer")
        reducers.append(ReducerDef(name, tuple(p for p in params if p is not None), life))
    for table, reducer in schedules.items():
        rd = next((r for r in reducers if r.name == reducer), None)
        schema = next(t for t in tables if t.name == table)
        if rd is None:
            problems.append(f"schedule table {table!r} drives reducer {reducer!r}, which does not exist")
        elif tuple(c.type.name for c in rd.params) != tuple(c.type.name for c in schema.columns):
            problems.append(f"reducer {reducer!r}, driven by schedule table {table!r}, must take the "
                            f"table's columns ({', '.join(c.type.name for c in schema.columns)}) "
                            "as parameters")
    filters = []
    by_name = {t.name: t for t in tables}
    for i, sql in enumerate(_list(doc.get("visibility", []), "visibility", problems)):
        try:
            filters.append(parse_filter(sql, by_name.get))
        except StdbError as e:
            problems.append(f"visibility filter {i}: {e.detail}")
    if problems:
        raise ModuleError("bad module description: " + "; ".join(problems))
    return ModuleSchema(tuple(tables), tuple(reducers), schedules, by_table(filters))
