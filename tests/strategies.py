"""Hypothesis strategies shared by the test suite."""

from __future__ import annotations

import struct

from hypothesis import strategies as st

from stdb import ColumnType, parse_type

BASE_TYPES = ("bool", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "f32", "f64",
              "string", "bytes", "identity", "timestamp")
_INT_RANGES = {
    "i8": (-(1 << 7), (1 << 7) - 1), "i16": (-(1 << 15), (1 << 15) - 1),
    "i32": (-(1 << 31), (1 << 31) - 1), "i64": (-(1 << 63), (1 << 63) - 1),
    "u8": (0, (1 << 8) - 1), "u16": (0, (1 << 16) - 1), "u32": (0, (1 << 32) - 1),
    "u64": (0, (1 << 64) - 1), "timestamp": (-(1 << 63), (1 << 63) - 1),
}


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def base_values(name: str, *, allow_nan: bool = True) -> st.SearchStrategy:
    """Valid values of a base type, as the engine returns them (f32 already rounded)."""
    if name == "bool":
        return st.booleans()
    if name in _INT_RANGES:
        lo, hi = _INT_RANGES[name]
        return st.integers(lo, hi)
    if name == "f32":
        return st.floats(width=32, allow_nan=allow_nan).map(_f32)
    if name == "f64":
        return st.floats(allow_nan=allow_nan)
    if name == "string":
        return st.text(max_size=40)
    if name == "bytes":
        return st.binary(max_size=40)
    if name == "identity":
        return st.binary(min_size=32, max_size=32)
    raise ValueError(name)


def column_types(*, nested: bool = True) -> st.SearchStrategy[ColumnType]:
    """Any column type: a base type, or option<T> / array<T> of one."""
    base = st.sampled_from(BASE_TYPES)
    if not nested:
        return base.map(parse_type)
    return st.one_of(
        base.map(parse_type),
        base.map(lambda b: parse_type(f"option<{b}>")),
        base.map(lambda b: parse_type(f"array<{b}>")),
    )


def values_of(t: ColumnType, *, allow_nan: bool = True) -> st.SearchStrategy:
    """Valid values of any column type."""
    if t.name.startswith("option<"):
        return st.none() | base_values(t.inner.name, allow_nan=allow_nan)
    if t.name.startswith("array<"):
        return st.lists(base_values(t.inner.name, allow_nan=allow_nan), max_size=6)
    return base_values(t.name, allow_nan=allow_nan)


@st.composite
def typed_rows(draw, max_cols: int = 6):
    """(types, row): a random row schema and a row of it."""
    types = draw(st.lists(column_types(), min_size=1, max_size=max_cols))
    row = tuple(draw(values_of(t)) for t in types)
    return types, row


# ---- the differential test's fixed schema and its (collision-prone) values

DIFF_NAMES = st.sampled_from(["a", "b", "c", "d", "e", "", "\x00", "é"])
DIFF_FLOATS = st.sampled_from([0.0, -0.0, 1.5, -2.25, float("inf"), float("-inf"), float("nan"), 1e300])


DIFF_IDS = st.integers(0, 12)


@st.composite
def diff_rows(draw, ids=DIFF_IDS):
    """Rows of the differential test's table, sometimes invalid on purpose."""
    row = [
        draw(ids),                                           # id u64 auto_inc (0 = assign)
        draw(st.integers(-4, 4)),                            # n i32
        draw(st.none() | DIFF_NAMES),                        # opt option<string>
        draw(DIFF_NAMES),                                    # name string, unique
        draw(DIFF_FLOATS),                                   # f f64
        draw(st.lists(st.integers(-3, 3), max_size=3)),      # arr array<i16>
    ]
    if draw(st.integers(0, 19)) == 0:                        # 5%: a wrong type or range somewhere
        col = draw(st.integers(0, 5))
        row[col] = draw(st.sampled_from(["str", -1, 2**70, None, 1.5, [70000]]))
    return tuple(row)


# ---- SQL: random schemas, data, conditions and queries (tests/test_query_oracle.py)

SQL_TYPES = ("i64", "i32", "u16", "string", "bool", "f64", "option<i64>", "option<string>")


@st.composite
def sql_schemas(draw):
    """Three tables a, b, c: ``id u64`` primary key, a join column ``k i64`` (btree index on
    a and b, none on c) and 1-3 more columns of random types."""
    from stdb import Column, IndexDef, TableSchema
    out = []
    for name in ("a", "b", "c"):
        types = draw(st.lists(st.sampled_from(SQL_TYPES), min_size=1, max_size=3))
        cols = [Column("id", "u64"), Column("k", "i64")]
        cols += [Column(f"{name}{i}", t) for i, t in enumerate(types)]
        idx = [IndexDef(f"{name}_k", "k")] if name != "c" else []
        out.append(TableSchema(name, cols, primary_key="id", indexes=idx, public=True))
    return out


def sql_value(t: str):
    """Values that SQLite represents exactly (no NaN/inf, no NUL in text, i64 range)."""
    if t.startswith("option<"):
        return st.none() | sql_value(t[7:-1])
    if t == "string":
        return st.text(alphabet=st.sampled_from("abcxyz' é"), max_size=4)
    if t == "bool":
        return st.booleans()
    if t == "f64":
        return st.sampled_from([-2.5, -1.0, 0.0, 0.5, 1.0, 3.25, 7.0])
    lo, hi = {"i64": (-5, 5), "i32": (-5, 5), "u16": (0, 9), "u64": (0, 40)}[t]
    return st.integers(lo, hi)


def sql_literal(v) -> str:
    from stdb.query.render import literal_sql
    return literal_sql(v)


@st.composite
def sql_conditions(draw, schema, qual: str | None = None, depth: int = 2, others=()):
    """A random WHERE condition over ``schema``'s columns (and ``others``' when joining)."""
    tables = [(schema, qual)] + list(others)
    sch, q = draw(st.sampled_from(tables))
    col = draw(st.sampled_from(sch.columns))
    t = col.type.name
    name = f"{q}.{col.name}" if q else col.name
    base = t[7:-1] if t.startswith("option<") else t
    kinds = ["cmp", "in", "null"] if t.startswith("option<") else ["cmp", "in"]
    if base not in ("bool", "string"):
        kinds.append("between")
    if depth > 0:
        kinds += ["and", "or", "not"]
    kind = draw(st.sampled_from(kinds))
    if kind in ("and", "or"):
        parts = draw(st.lists(sql_conditions(schema, qual, depth - 1, others), min_size=2, max_size=3))
        return "(" + f" {kind.upper()} ".join(parts) + ")"
    if kind == "not":
        return f"NOT ({draw(sql_conditions(schema, qual, depth - 1, others))})"
    if kind == "null":
        return f"{name} IS {draw(st.sampled_from(['', 'NOT ']))}NULL"
    val = sql_value(base)
    if kind == "cmp":
        op = draw(st.sampled_from(["=", "!=", "<", "<=", ">", ">="] if base != "bool" else ["=", "!="]))
        return f"{name} {op} {sql_literal(draw(val))}"
    if kind == "in":
        vals = draw(st.lists(val, min_size=1, max_size=3))
        return f"{name} {draw(st.sampled_from(['', 'NOT ']))}IN ({', '.join(map(sql_literal, vals))})"
    lo, hi = sorted([draw(val), draw(val)])
    return f"{name} {draw(st.sampled_from(['', 'NOT ']))}BETWEEN {sql_literal(lo)} AND {sql_literal(hi)}"


@st.composite
def sql_rows(draw, schema, ids):
    """Rows of ``schema`` with distinct ids drawn from ``ids``."""
    keys = draw(st.lists(st.sampled_from(ids), unique=True, max_size=len(ids)))
    return [tuple([k] + [draw(sql_value(c.type.name)) for c in schema.columns[1:]]) for k in keys]


def draw_sql_tables(data):
    """Random tables (``sql_schemas``) in a Datastore, with random rows (ids 1 to 12) in each:
    (schemas, datastore).  ``data``: hypothesis's ``st.data()``."""
    from stdb import Datastore
    schemas = data.draw(sql_schemas())
    ds = Datastore()
    for s in schemas:
        ds.create_table(s)
    with ds.begin() as tx:
        for s in schemas:
            for r in data.draw(sql_rows(s, list(range(1, 13)))):
                tx.insert(s.name, r)
    return schemas, ds


@st.composite
def one_off_queries(draw, schemas):
    a, b, c = schemas
    shape = draw(st.sampled_from(["filter", "join2", "join3", "group"]))
    if shape == "filter":
        cond = draw(sql_conditions(a))
        cols = draw(st.lists(st.sampled_from(a.column_names), min_size=1, max_size=3, unique=True))
        order = draw(st.sampled_from(a.column_names))
        desc = draw(st.sampled_from(["", " DESC"]))
        limit = draw(st.sampled_from(["", " LIMIT 3"]))
        # id last in ORDER BY: a total order, so LIMIT picks the same rows in both
        return (f"SELECT {', '.join(cols + ['id'])} FROM a WHERE {cond} ORDER BY {order}{desc}, id{limit}",
                True)
    if shape == "join2":
        cond = draw(sql_conditions(a, "a", others=[(b, "b")]))
        return f"SELECT a.id, b.id, a.k FROM a JOIN b ON a.k = b.k WHERE {cond}", False
    if shape == "join3":
        cond = draw(sql_conditions(b, "b", others=[(a, "a"), (c, "c")]))
        return (f"SELECT a.id, b.id, c.id FROM a JOIN b ON a.k = b.k JOIN c ON c.k = b.k "
                f"WHERE {cond}"), False
    cond = draw(sql_conditions(a))
    num = [col.name for col in a.columns if col.type.name in ("i64", "i32", "u16", "option<i64>")]
    agg_col = draw(st.sampled_from(num))
    return (f"SELECT k, COUNT(*), SUM({agg_col}), MIN({agg_col}), MAX(id), AVG({agg_col}) "
            f"FROM a WHERE {cond} GROUP BY k ORDER BY k"), True
