"""The module description parser refuses anything malformed with a ModuleError (never
another exception) and accepts what docs/abi.md describes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stdb
from stdb.module.describe import parse_description

GOOD = {"abi": 1,
        "tables": [{"name": "t", "public": True,
                    "columns": [{"name": "id", "type": "u64", "auto_inc": True},
                                {"name": "owner", "type": "identity"}],
                    "primary_key": ["id"],
                    "indexes": [{"name": "by_id", "columns": ["id"], "kind": "btree"}]}],
        "reducers": [{"name": "r", "params": [{"name": "x", "type": "option<string>"}]},
                     {"name": "i", "lifecycle": "init", "params": []}],
        "visibility": ["SELECT * FROM t WHERE owner = :sender"]}

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
JSON = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=4) |
                    st.dictionaries(st.text(max_size=8), kids, max_size=4), max_leaves=20)


def test_the_documented_example_parses():
    s = parse_description(json.dumps(GOOD).encode())
    assert [t.name for t in s.tables] == ["t"] and s.tables[0].public
    assert [r.name for r in s.reducers] == ["r", "i"] and s.lifecycle("init") == 1
    assert s.reducers[0].param_types == ("option<string>",)
    [f] = s.visibility["t"]
    assert f.table == "t" and f.sql == GOOD["visibility"][0]


@pytest.mark.parametrize("sql, msg", [
    ("SELECT * FROM nope", "no table named 'nope'"),
    ("SELECT * FROM t WHERE owner = 5", "owner"),
    ("SELECT * FROM t WHERE id = :caller", "unknown parameter ':caller'"),
    ("SELECT id FROM t", "SELECT * FROM table WHERE condition"),
    ("SELECT * FROM t ORDER BY id", "SELECT * FROM table WHERE condition"),
    ("DELETE FROM t", "SELECT * FROM table WHERE condition"),
    ("SELECT * FROM t WHERE", "column 22"),
    ("SELECT * FROM p WHERE id = 1", "private"),
    (7, "SQL text"),
])
def test_bad_visibility_filters_are_refused_at_publish(sql, msg):
    doc = json.loads(json.dumps(GOOD))
    doc["tables"].append({"name": "p", "columns": [{"name": "id", "type": "u64"}]})
    doc["visibility"] = [sql]
    with pytest.raises(stdb.ModuleError) as e:
        parse_description(json.dumps(doc).encode())
    assert "visibility filter 0" in e.value.detail and msg in e.value.detail


def _mutations():
    """GOOD with one part replaced by something of the wrong shape."""
    t0, c0 = ("tables", 0), ("tables", 0, "columns", 0)
    paths = [("abi",), ("tables",), ("reducers",), t0, (*t0, "name"), (*t0, "columns"), c0, (*c0, "type"),
             (*c0, "auto_inc"), (*t0, "primary_key"), (*t0, "indexes", 0, "columns"), (*t0, "public"),
             ("reducers", 0, "params"), ("reducers", 0, "params", 0, "name"), ("reducers", 1, "lifecycle"),
             ("reducers", 0, "name"), ("visibility",), ("visibility", 0)]
    return st.tuples(st.sampled_from(paths), JSON)


@settings(max_examples=400)
@given(_mutations())
def test_malformed_parts_give_a_module_error(mutation):
    path, value = mutation
    doc = json.loads(json.dumps(GOOD))
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    try:
        parse_description(json.dumps(doc).encode())
    except stdb.ModuleError as e:
        assert e.detail
    # some replacements are valid (a different name, public false): then it simply parses


@settings(max_examples=300)
@given(st.one_of(st.binary(max_size=64), JSON.map(lambda v: json.dumps(v).encode())))
def test_arbitrary_bytes_give_a_module_error(raw):
    with pytest.raises(stdb.ModuleError):
        parse_description(raw)


def test_every_problem_is_listed():
    doc = json.loads(json.dumps(GOOD))
    doc["tables"][0]["colour"] = "red"
    doc["tables"][0]["columns"][0]["type"] = "u128"
    doc["reducers"].append({"name": "r", "params": []})
    with pytest.raises(stdb.ModuleError) as e:
        parse_description(json.dumps(doc).encode())
    for part in ("unknown key 'colour'", "u128", "reducer 'r' is declared twice"):
        assert part in e.value.detail
