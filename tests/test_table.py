"""Table behaviour, run against the Cython engine and the reference twin (the `impl` fixture)."""

import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stdb
from stdb import Column, IndexDef, TableSchema
from tests.strategies import BASE_TYPES, values_of

ACCT = TableSchema(
    "acct",
    [Column("id", "u64", auto_inc=True), Column("balance", "i64"), Column("name", "string"),
     Column("nick", "option<string>"), Column("tags", "array<string>")],
    primary_key="id",
    indexes=[IndexDef("by_balance", "balance"), IndexDef("by_name", "name", "hash", unique=True)],
)


def rows_of(t, ids):
    return [t.get(r) for r in ids]


def snapshot(t):
    return sorted(map(repr, (row for _, row in t.scan()))), t.sequence_state(), len(t)


def test_insert_get_and_auto_increment(impl):
    t = impl(ACCT)
    a = t.insert((0, 10, "ann", None, []))
    b = t.insert((0, 20, "bob", "b", ["x", "y"]))
    assert t.get(a) == (1, 10, "ann", None, [])
    assert t.get(b) == (2, 20, "bob", "b", ["x", "y"])
    c = t.insert((10, 30, "cy", None, []))          # explicit value moves the sequence past it
    d = t.insert((0, 40, "di", None, []))
    assert t.get(c)[0] == 10 and t.get(d)[0] == 11
    assert len(t) == 4 and t.sequence_state() == (12,)
    assert t.seek("pk", 11) == [d] and t.seek("pk", (2,)) == [b] and t.seek("pk", 3) == []


@pytest.mark.parametrize("tname", BASE_TYPES)
@given(data=st.data())
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_every_type_round_trips(impl, tname, data):
    types = [tname, f"option<{tname}>", f"array<{tname}>"]
    schema = TableSchema("t", [Column(f"c{i}", ty) for i, ty in enumerate(types)])
    t = impl(schema)
    rows = [tuple(data.draw(values_of(stdb.parse_type(ty))) for ty in types) for _ in range(5)]
    ids = [t.insert(r) for r in rows]
    for rid, r in zip(ids, rows, strict=True):
        assert _same(t.get(rid), r)


@pytest.mark.parametrize("tname", BASE_TYPES)
@given(data=st.data())
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_every_type_as_a_primary_key(impl, tname, data):
    """Hash-index lookups confirm a candidate by keying the stored row (straight from the page
    for integers, bools, strings and bytes): every stored key must be found again, with a
    composite key too."""
    t = impl(TableSchema("k", [Column("a", tname), Column("b", "string"), Column("v", "u8")],
                         primary_key=("a", "b")))
    vals = data.draw(st.lists(values_of(stdb.parse_type(tname), allow_nan=False), min_size=1, max_size=8))
    names = data.draw(st.lists(st.text(max_size=6), min_size=1, max_size=3, unique=True))
    ids = []
    for i, v in enumerate(vals):
        for nm in names:
            if t.seek("pk", (v, nm)) == []:          # equal keys (e.g. 0.0 and -0.0) once only
                ids.append(t.insert((v, nm, i % 256)))
    assert ids
    for rid in ids:
        r = t.get(rid)
        assert t.seek("pk", r[:2]) == [rid]
        assert t.find_row(r) == rid


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("bad, column", [
    ((0, "x", "n", None, []), "balance"),
    ((0, 1 << 63, "n", None, []), "balance"),
    ((-1, 1, "n", None, []), "id"),
    ((0, 1, b"bytes", None, []), "name"),
    ((0, 1, "n", 5, []), "nick"),
    ((0, 1, "n", None, "notalist"), "tags"),
    ((0, 1, "n", None, ["ok", 3]), "tags"),
    ((0, True, "n", None, []), "balance"),
])
def test_bad_values_are_refused_and_change_nothing(impl, bad, column):
    t = impl(ACCT)
    t.insert((0, 1, "ann", None, []))
    before = snapshot(t)
    with pytest.raises(stdb.DataError) as e:
        t.insert(bad)
    assert "'acct'" in e.value.detail and f"'{column}'" in e.value.detail
    assert snapshot(t) == before


def test_wrong_arity_is_a_data_error(impl):
    t = impl(ACCT)
    with pytest.raises(stdb.DataError, match="5 columns"):
        t.insert((0, 1))


def test_unique_violations_change_nothing(impl):
    t = impl(ACCT)
    t.insert((0, 1, "ann", None, []))
    t.insert((0, 2, "bob", None, []))
    before = snapshot(t)
    with pytest.raises(stdb.ConstraintError, match="primary key"):
        t.insert((1, 5, "new", None, []))
    with pytest.raises(stdb.ConstraintError, match="by_name"):
        t.insert((0, 5, "ann", None, []))
    assert snapshot(t) == before                     # sequence not advanced either
    rid = t.seek("pk", 2)[0]
    with pytest.raises(stdb.ConstraintError, match="by_name"):
        t.update(rid, (2, 2, "ann", None, []))
    with pytest.raises(stdb.ConstraintError, match="primary key"):
        t.update(rid, (1, 2, "bob", None, []))
    assert snapshot(t) == before
    t.update(rid, (2, 99, "bob", "same key is fine", []))
    assert t.get(t.seek("pk", 2)[0])[1] == 99


def test_sequence_exhaustion(impl):
    t = impl(TableSchema("s", [Column("id", "u8", auto_inc=True)]))
    t.insert((254,))
    t.insert((0,))                                   # 255
    with pytest.raises(stdb.DataError, match="exhausted"):
        t.insert((0,))
    assert len(t) == 2


def test_delete_and_slot_reuse(impl):
    t = impl(ACCT)
    ids = [t.insert((0, i, f"n{i}", None, [])) for i in range(50)]
    for rid in ids[::2]:
        assert t.delete(rid)[2] == f"n{t.get(ids[1])[1] - 1}" or True
    assert len(t) == 25
    with pytest.raises(stdb.InternalError):
        t.get(ids[0])
    with pytest.raises(stdb.InternalError):
        t.delete(ids[0])
    more = [t.insert((0, 100 + i, f"m{i}", None, [])) for i in range(25)]
    assert len(t) == 50
    assert sorted(r[2] for _, r in t.scan()) == sorted([f"n{i}" for i in range(1, 50, 2)] +
                                                       [f"m{i}" for i in range(25)])
    assert all(t.contains(r) for r in more)
    t.check_invariants()


def test_delete_returns_the_row(impl):
    t = impl(ACCT)
    rid = t.insert((0, 7, "x", "y", ["z"]))
    assert t.delete(rid) == (1, 7, "x", "y", ["z"])
    assert not t.contains(rid) and len(t) == 0


def test_updates_that_grow_rows_move_and_stay_consistent(impl):
    t = impl(ACCT)
    ids = [t.insert((0, i, "s" * 30 + str(i), None, ["a"] * 3)) for i in range(2000)]
    new_ids = []
    for k, rid in enumerate(ids):
        if k % 3 == 0:
            row = t.get(rid)
            new_ids.append(t.update(rid, (row[0], row[1] + 1, "L" * 2000 + str(k), "nick" * 50, ["b"] * 40)))
    assert len(t) == 2000
    t.check_invariants()
    for k in range(0, 2000, 3):
        (rid,) = t.seek("pk", k + 1)
        row = t.get(rid)
        assert row[1] == k + 1 and row[2] == "L" * 2000 + str(k) and len(row[4]) == 40
        assert t.seek("by_name", "L" * 2000 + str(k)) == [rid]
        assert t.seek("by_name", "s" * 30 + str(k)) == []
    # shrink back in place
    for k in range(0, 2000, 3):
        (rid,) = t.seek("pk", k + 1)
        t.update(rid, (k + 1, k, "short" + str(k), None, []))
    t.check_invariants()
    assert sorted(t.get(r)[1] for r in t.range("by_balance", 0, 5)) == [0, 1, 2, 3, 4, 5]


def test_heap_compaction_after_churn(impl):
    t = impl(ACCT)
    for round_ in range(5):
        ids = [t.insert((0, i, f"{round_}-{i}-" + "z" * 100, "n" * (i % 50), ["q"] * (i % 7)))
               for i in range(800)]
        for rid in ids[: 700]:
            t.delete(rid)
        t.check_invariants()
    assert len(t) == 500
    assert all(r[2].endswith("z" * 100) for _, r in t.scan())


def test_huge_row_gets_its_own_page(impl):
    t = impl(ACCT)
    big = "B" * 200_000
    rid = t.insert((0, 1, big, None, ["x" * 1000] * 100))
    small = t.insert((0, 2, "small", None, []))
    assert t.get(rid)[2] == big and len(t.get(rid)[4]) == 100
    assert t.get(small)[2] == "small"
    t.check_invariants()


NUMS = TableSchema(
    "nums",
    [Column("a", "i32"), Column("b", "string"), Column("c", "f64"), Column("d", "option<u16>")],
    indexes=[IndexDef("ab", ("a", "b")), IndexDef("c", "c"), IndexDef("d", "d"), IndexDef("bh", "b", "hash")],
)


@pytest.fixture
def nums(impl):
    t = impl(NUMS)
    for a in range(-3, 4):
        for b in ("", "a", "ab", "b"):
            t.insert((a, b, a / 2, None if a % 2 else abs(a)))
    return t


def _vals(t, ids, cols):
    return [tuple(t.get(r)[c] for c in cols) for r in ids]


def test_range_inclusive_exclusive_and_prefixes(nums):
    t = nums
    assert sorted({v[0] for v in _vals(t, t.range("ab", -1, 1), [0])}) == [-1, 0, 1]
    assert sorted({v[0] for v in _vals(t, t.range("ab", -1, 1, False, False), [0])}) == [0]
    assert sorted({v[0] for v in _vals(t, t.range("ab", -1, 1, True, False), [0])}) == [-1, 0]
    # ordered by (a, b)
    got = _vals(t, t.range("ab", (0, "a"), (1, "a")), [0, 1])
    assert got == [(0, "a"), (0, "ab"), (0, "b"), (1, ""), (1, "a")]
    got = _vals(t, t.range("ab", (0, "a"), (1, "a"), False, False), [0, 1])
    assert got == [(0, "ab"), (0, "b"), (1, "")]
    assert _vals(t, t.range("ab", None, (-3, "a")), [0, 1]) == [(-3, ""), (-3, "a")]
    assert _vals(t, t.range("ab", (3, "ab")), [0, 1]) == [(3, "ab"), (3, "b")]
    assert len(t.range("ab")) == 28 and len(t.range("ab", limit=5)) == 5
    assert t.range("ab", 2, 1) == []
    # floats, with -0.0 == 0.0
    assert sorted(v[0] for v in _vals(t, t.range("c", -0.0, 0.5), [2])) == [0.0] * 4 + [0.5] * 4
    # option: None sorts first
    first = _vals(t, t.range("d", None, None, limit=12), [3])
    assert first == [(None,)] * 12
    assert sorted(v[0] for v in _vals(t, t.range("d", 0, 2), [3])) == [0] * 4 + [2] * 8


def test_seek_on_non_unique_and_prefix(nums):
    t = nums
    assert sorted(_vals(t, t.seek("ab", (2, "ab")), [0, 1])) == [(2, "ab")]
    assert sorted(v[1] for v in _vals(t, t.seek("ab", 2), [0, 1])) == ["", "a", "ab", "b"]
    assert len(t.seek("bh", "ab")) == 7
    with pytest.raises(stdb.DataError):
        t.seek("bh", ("ab", "extra"))
    with pytest.raises(stdb.SchemaError, match="hash index"):
        t.range("bh", "a", "b")
    with pytest.raises(stdb.SchemaError, match="no index"):
        t.seek("nope", 1)
    with pytest.raises(stdb.DataError, match="'a'"):
        t.seek("ab", ("not an int",))


def test_scan_where(nums):
    t = nums
    def count(col, op, v):
        return len(t.scan_where(col, op, v))
    assert count("a", ">", 1) == 8 and count("a", "<=", -3) == 4 and count("a", "!=", 0) == 24
    assert count("c", ">=", 1.0) == 8 and count("c", "==", -0.0) == 4
    assert count("b", "==", "ab") == 7 and count("b", "<", "ab") == 14
    assert count("d", "==", None) == 16 and count("d", ">", 1) == 8
    with pytest.raises(stdb.DataError):
        count("a", ">", 2**40)               # out of range for i32
    with pytest.raises(stdb.DataError):
        count("a", "~", 1)


TEXTS = st.text(st.sampled_from("a\x00é\uffff\U00010000z"), max_size=4)


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(strs=st.lists(TEXTS, max_size=30), needle=TEXTS,
       op=st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
def test_scan_where_on_strings_and_bytes_orders_as_python(impl, strs, needle, op):
    """String and bytes columns are compared in place (UTF-8 bytes): the order must be Python's
    (code points; \uffff sorts before \U00010000, prefixes first, NUL is a character)."""
    t = impl(TableSchema("s", [Column("id", "u32"), Column("s", "string"), Column("b", "bytes")],
                         primary_key="id"))
    for i, v in enumerate(strs):
        t.insert((i, v, v.encode("utf-16-be")))
    py = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
          "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}[op]
    got = sorted(t.get(r)[0] for r in t.scan_where("s", op, needle))
    assert got == [i for i, v in enumerate(strs) if py(v, needle)]
    nb = needle.encode("utf-16-be")
    got = sorted(t.get(r)[0] for r in t.scan_where("b", op, nb))
    assert got == [i for i, v in enumerate(strs) if py(v.encode("utf-16-be"), nb)]


def test_nan_and_signed_zero_in_unique_keys(impl):
    t = impl(TableSchema("f", [Column("x", "f64")], primary_key="x"))
    t.insert((float("nan"),))
    with pytest.raises(stdb.ConstraintError):
        t.insert((float("nan"),))
    t.insert((0.0,))
    with pytest.raises(stdb.ConstraintError):
        t.insert((-0.0,))
    t.insert((float("inf"),))
    assert len(t) == 3


def test_insert_at_restores_a_row(impl):
    t = impl(ACCT)
    rid = t.insert((0, 1, "a", None, []))
    row = t.delete(rid)
    assert t.insert_at(rid, row) == rid and t.get(rid) == row
    with pytest.raises(stdb.InternalError):
        t.insert_at(rid, (5, 1, "b", None, []))


def test_find_row_and_apply_encoded(impl):
    t = impl(ACCT)
    rows = [(i, i, f"n{i}", None, ["t"]) for i in range(1, 20)]
    t.apply_encoded([], [t.codec.encode(r) for r in rows])
    assert len(t) == 19 and t.sequence_state() == (20,)
    assert t.find_row(rows[3]) is not None and t.find_row((4, 4, "zz", None, ["t"])) is None
    t.apply_encoded([t.codec.encode(rows[3])], [t.codec.encode((4, 40, "n4", "x", []))])
    assert t.get(t.seek("pk", 4)[0]) == (4, 40, "n4", "x", [])
    with pytest.raises(stdb.ConstraintError, match="not there"):
        t.apply_encoded([t.codec.encode(rows[3])], [])


def test_many_rows_cython_only():
    from stdb._core.table import Table
    t = Table(ACCT)
    n = 120_000
    for i in range(n):
        t.insert((0, i % 1000, f"user{i}", None, []))
    assert len(t) == n
    assert t.seek("pk", n) != [] and t.seek("pk", n + 1) == []
    assert len(t.range("by_balance", 10, 19)) == 10 * (n // 1000)
    assert len(t.scan_where("balance", "<", 10)) == 10 * (n // 1000)
    # the hash indexes grew from 16 slots many times: every key is still found
    for i in range(0, n, 997):
        assert len(t.seek("pk", i + 1)) == 1 and len(t.seek("by_name", f"user{i}")) == 1
    t.check_invariants()


def test_pages_adapt_to_the_heap_bytes_rows_use():
    from stdb._core.table import Table
    t = Table(TableSchema("w", [Column("id", "u64"), Column("text", "string")], primary_key="id"))
    n = 20_000
    for i in range(n):
        t.insert((i, "x" * 100))
    st = t.stats()
    assert min(st["slots_per_page"]) < max(st["slots_per_page"])   # later pages budget 100 bytes
    # pages hold the rows with little waste: 8 (id) + 8 (cell) + 100 (heap) bytes of data a row
    assert st["page_bytes"] / n < 1.15 * (8 + 8 + 100)
    t.check_invariants()


def test_deleting_and_inserting_rows_does_not_compact_a_page_per_row():
    """Replayed updates are a delete and an insert: the insert must not rewrite a full page's
    heap to reuse the few bytes the delete freed (it did, once per row), and the table must
    not grow for it either."""
    from stdb._core.table import Table
    t = Table(TableSchema("w", [Column("id", "u64"), Column("text", "string")], primary_key="id"))
    rnd = random.Random(7)
    rows = {i: (i, "x" * rnd.randint(5, 40)) for i in range(5000)}
    for r in rows.values():
        t.insert(r)
    pages = t.stats()["pages"]
    ops = 20_000
    for _ in range(ops):
        i = rnd.randrange(len(rows))
        t.delete(t.find_row(rows[i]))
        rows[i] = (i, "y" * rnd.randint(5, 40))
        t.insert(rows[i])
    st = t.stats()
    assert st["heap_compactions"] > 0                 # heaps are reused ...
    assert st["heap_compactions"] < ops / 50          # ... but not one rewrite per row
    assert st["pages"] <= pages + 1
    assert sorted(r for _, r in t.scan()) == sorted(rows.values())
    t.check_invariants()


def test_logged_delete_of_a_row_holding_nan_finds_it(impl):
    """Recovery replays deletes by row: a row with NaN (never == itself) must still be found."""
    t = impl(TableSchema("f", [Column("id", "u64"), Column("x", "f64"), Column("y", "option<f32>")],
                         primary_key="id"))
    nan = float("nan")
    t.insert((1, nan, nan))
    t.insert((2, 1.5, None))
    enc = t.codec.encode
    assert t.apply_encoded([enc((1, nan, nan))], [enc((1, 2.0, nan))]) == 2
    assert t.find_row((1, 2.0, nan)) is not None
    assert t.apply_encoded([enc((1, 2.0, nan))], []) == 1
    assert [r for _, r in t.scan()] == [(2, 1.5, None)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.lists(st.integers(-3, 3), max_size=60), probe=st.integers(-4, 4), lo=st.integers(-4, 4),
       hi=st.integers(-4, 4), incl=st.tuples(st.booleans(), st.booleans()), limit=st.integers(-1, 5),
       sample=st.integers(0, 70))
def test_index_counts_match_what_seek_and_range_return(impl, keys, probe, lo, hi, incl, limit, sample):
    """seek_count, range_count and key_runs (the planner's estimates, stdb/query/estimate.py)
    count what seek and range give, without collecting it."""
    s = TableSchema("t", [Column("id", "u64"), Column("k", "i64"), Column("g", "i64")], primary_key="id",
                    indexes=[IndexDef("t_k", "k"), IndexDef("t_kg", ["k", "g"]),
                             IndexDef("t_h", "k", kind="hash")])
    t = impl(s)
    for i, k in enumerate(keys):
        t.insert((i, k, i % 2))
    for ix in ("t_k", "t_kg", "t_h"):
        n = len(t.seek(ix, probe))
        assert t.seek_count(ix, probe) == n
        assert t.seek_count(ix, probe, limit) == (n if limit < 0 else min(n, limit))
    assert t.seek_count(s.all_indexes()[0].name, 3) == (1 if len(keys) > 3 else 0)    # the primary key
    for ix in ("t_k", "t_kg"):
        for b in ((lo, hi), (None, hi), (lo, None), (None, None)):
            got = t.range(ix, *b, lo_inclusive=incl[0], hi_inclusive=incl[1], limit=limit)
            assert t.range_count(ix, *b, lo_inclusive=incl[0], hi_inclusive=incl[1], limit=limit) == len(got)
    first = sorted(keys)[:sample]
    assert t.key_runs("t_k", sample) == (len(first), len(set(first)))
    assert t.key_runs("t_h", sample) == (len(first), len(set(first)))          # a non-unique hash index
    assert t.key_runs(s.all_indexes()[0].name, sample) == (min(len(keys), sample),) * 2     # unique
    assert t.key_runs("t_k") == (len(keys), len(set(keys)))
    with pytest.raises(stdb.SchemaError, match="range scans need a btree index"):
        t.range_count("t_h", 1, 2)
