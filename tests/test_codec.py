"""Row codec and key codec (docs/row-format.md): vectors, round trips, hostile input, order.

The vectors in tests/vectors/row_codec.json and tests/vectors/key_codec.json are checked
against the codec and against the tables printed in docs/row-format.md, so the three cannot
drift apart.
"""

from __future__ import annotations

import enum
import functools
import html
import json
import math
import pathlib
import re
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stdb
from stdb._core.codec import encode_key, parse_type, prefix_successor, read_framed
from tests.strategies import BASE_TYPES, base_values, column_types, typed_rows, values_of

HERE = pathlib.Path(__file__).parent
ROW_FILE = json.loads((HERE / "vectors" / "row_codec.json").read_text(encoding="utf-8"))
ROW_VECTORS = ROW_FILE["vectors"]
KEY_VECTORS = json.loads((HERE / "vectors" / "key_codec.json").read_text(encoding="utf-8"))
DOC = (HERE.parent / "docs" / "row-format.md").read_text(encoding="utf-8")

ALL_TYPES = [*BASE_TYPES, *(f"option<{b}>" for b in BASE_TYPES), *(f"array<{b}>" for b in BASE_TYPES)]
CANONICAL_NAN = 0x7FF8000000000000
FLT_MAX = struct.unpack("<f", bytes.fromhex("ffff7f7f"))[0]


# ---------------------------------------------------------------- helpers

def _bits(x: float) -> int:
    return struct.unpack(">Q", struct.pack(">d", x))[0]


def from_json(v):
    """A vector value in the JSON notation (see row_codec.json "notation") as a Python value."""
    if isinstance(v, dict):
        if "hex" in v:
            return bytes.fromhex(v["hex"])
        if "f64_bits" in v:
            return struct.unpack(">d", bytes.fromhex(v["f64_bits"]))[0]
        return float(v["f"])
    if isinstance(v, list):
        return [from_json(x) for x in v]
    return v


def to_json(v):
    """Inverse of :func:`from_json` (used to generate the vectors)."""
    if isinstance(v, float):
        if math.isnan(v):
            return {"f": "nan"} if _bits(v) == CANONICAL_NAN else {"f64_bits": f"{_bits(v):016x}"}
        if math.isinf(v) or (v == 0.0 and math.copysign(1.0, v) < 0):
            return {"f": repr(v)}
        return v
    if isinstance(v, (bytes, bytearray)):
        return {"hex": bytes(v).hex()}
    if isinstance(v, (list, tuple)):
        return [to_json(x) for x in v]
    return v


def render(v) -> str:
    """A value as printed in the doc's vector tables (Python literals; bytes as x'hex')."""
    if isinstance(v, float):
        if math.isnan(v):
            return "nan" if _bits(v) == CANONICAL_NAN else f"nan(0x{_bits(v):016x})"
        return repr(v)
    if isinstance(v, bytes):
        return f"x'{v.hex()}'"
    if isinstance(v, list):
        return "[" + ", ".join(render(x) for x in v) + "]"
    return repr(v)


def render_row(json_row) -> str:
    return ", ".join(render(from_json(x)) for x in json_row)


def codec_for(types, table="v"):
    return stdb.RowCodec(table, [f"c{i}" for i in range(len(types))], types)


def same(a, b) -> bool:
    """Equal values of equal types; NaN equals NaN; -0.0 differs from 0.0."""
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _cmp(x, y) -> int:
    return (x > y) - (x < y)


def value_cmp(t, a, b) -> int:
    """The documented value order of the key codec, written independently of the engine."""
    name = t.name
    if name.startswith("option<"):
        if a is None or b is None:
            return _cmp(a is not None, b is not None)
        return value_cmp(t.inner, a, b)
    if name.startswith("array<"):
        for x, y in zip(a, b, strict=False):
            c = value_cmp(t.inner, x, y)
            if c:
                return c
        return _cmp(len(a), len(b))
    if name in ("f32", "f64"):
        if math.isnan(a) or math.isnan(b):
            return _cmp(math.isnan(a), math.isnan(b))     # NaN == NaN, above +inf
        return _cmp(a, b)                                 # -0.0 == 0.0
    if name == "string":
        return _cmp(a.encode("utf-8"), b.encode("utf-8"))
    return _cmp(a, b)                                     # bool, ints, bytes, identity


def _doc_table(heading: str) -> list[list[str]]:
    """The body rows of the table under ``heading`` in docs/row-format.md: code cells without
    their backticks, text cells HTML-unescaped (``&lt;`` keeps ``option<u8>`` visible)."""
    assert heading in DOC, f"docs/row-format.md has no section {heading!r}"
    section = DOC.split(heading, 1)[1].split("\n#", 1)[0]
    lines = [ln.strip() for ln in section.splitlines() if ln.strip().startswith("|")]
    rows = []
    for ln in lines[2:]:                                   # skip the header and the --- row
        cells = [c.strip() for c in ln[1:-1].split(" | ")]
        rows.append([c[1:-1] if c.startswith("`") and c.endswith("`") else html.unescape(c) for c in cells])
    return rows


# ---------------------------------------------------------------- vectors: code == JSON == doc

def test_vector_file_is_versioned():
    assert ROW_FILE["format"] == "stdb row codec" and ROW_FILE["version"] == 1
    assert "row codec version 1" in DOC.lower()


@pytest.mark.parametrize("vec", ROW_VECTORS, ids=[v["name"] for v in ROW_VECTORS])
def test_row_vector(vec):
    c = codec_for(vec["types"])
    row = tuple(from_json(v) for v in vec["row"])
    raw = bytes.fromhex(vec["hex"])
    assert c.encode(row).hex() == vec["hex"]
    assert same(c.decode(raw), row)
    assert c.encode(c.decode(raw)) == raw                  # bit-exact, NaN payloads included
    assert c.encode_many([row, row]) == raw + raw


@pytest.mark.parametrize("vec", ROW_VECTORS, ids=[v["name"] for v in ROW_VECTORS])
def test_row_vector_every_truncation_and_extension_is_refused(vec):
    c = codec_for(vec["types"])
    raw = bytes.fromhex(vec["hex"])
    for cut in range(len(raw)):
        with pytest.raises(stdb.DataError, match="table 'v', column 'c"):
            c.decode(raw[:cut])
    for extra in (b"\x00", b"\x01\x02"):
        with pytest.raises(stdb.DataError, match="trailing bytes"):
            c.decode(raw + extra)


def test_doc_row_table_matches_vectors():
    expected = [[v["name"], ", ".join(v["types"]), render_row(v["row"]), v["hex"]] for v in ROW_VECTORS]
    assert _doc_table("### Row test vectors") == expected


def test_doc_row_table_covers_every_type_and_edge():
    schema = {t for v in ROW_VECTORS for t in v["types"]}
    assert set(BASE_TYPES) <= schema
    assert any(t.startswith("option<") for t in schema) and any(t.startswith("array<") for t in schema)
    rows = [tuple(from_json(x) for x in v["row"]) for v in ROW_VECTORS]
    flat = [x for r in rows for x in r] + [y for r in rows for x in r if isinstance(x, list) for y in x]
    assert None in flat and [] in flat
    for want in (-2**63, 2**63 - 1, 2**64 - 1, -128, 255, "", "a\x00\U0001F600"):
        assert want in flat, want
    floats = [x for x in flat if isinstance(x, float)]
    assert any(math.isnan(x) and _bits(x) != CANONICAL_NAN for x in floats)
    assert any(x == 0.0 and math.copysign(1.0, x) < 0 for x in floats)
    assert math.inf in floats and -math.inf in floats
    assert any(len(v["types"]) >= 3 and len(set(v["types"])) >= 3 for v in ROW_VECTORS)


@pytest.mark.parametrize("vec", KEY_VECTORS, ids=[v["name"] for v in KEY_VECTORS])
def test_key_vector(vec):
    t = parse_type(vec["type"])
    assert encode_key((t,), (from_json(vec["value"]),)).hex() == vec["hex"]


def test_doc_key_table_matches_vectors():
    expected = [[v["name"], v["type"], render(from_json(v["value"])), v["hex"]] for v in KEY_VECTORS]
    assert _doc_table("### Key test vectors") == expected


# ---------------------------------------------------------------- round trips

@given(typed_rows())
@settings(max_examples=300)
def test_round_trip(case):
    types, row = case
    c = codec_for(types)
    data = c.encode(row)
    checked = c.check_row(row)
    assert same(c.decode(data), checked)
    assert same(c.decode(memoryview(data)), checked)
    assert same(c.decode(bytearray(data)), checked)
    assert c.encode(c.decode(data)) == data
    assert c.encode_many([row, list(row)]) == data + data


@given(typed_rows())
@settings(max_examples=150)
def test_every_truncation_is_refused(case):
    types, row = case
    c = codec_for(types)
    raw = c.encode(row)
    for cut in range(len(raw)):
        with pytest.raises(stdb.DataError) as e:
            c.decode(raw[:cut])
        assert "table 'v', column 'c" in e.value.detail and "byte" in e.value.detail


@given(typed_rows(), st.binary(min_size=1, max_size=8))
@settings(max_examples=150)
def test_trailing_bytes_are_refused(case, extra):
    types, row = case
    c = codec_for(types)
    raw = c.encode(row)
    with pytest.raises(stdb.DataError, match=rf"table 'v': {len(extra)} trailing bytes .*byte {len(raw)} of"):
        c.decode(raw + extra)


@given(st.lists(column_types(), max_size=4), st.binary(max_size=64))
@settings(max_examples=500)
def test_random_bytes_decode_exactly_or_refuse(types, raw):
    c = codec_for(types)
    try:
        row = c.decode(raw)
    except stdb.DataError as e:
        assert e.detail.startswith("table 'v'") and "byte" in e.detail
        assert "column 'c" in e.detail or "trailing" in e.detail
        return
    again = c.encode(row)
    assert again == raw, (types, raw.hex(), again.hex())     # every bit pattern, f32 NaNs too


@given(typed_rows(), st.data())
@settings(max_examples=250)
def test_mutated_encodings_decode_exactly_or_refuse(case, data):
    types, row = case
    c = codec_for(types)
    raw = bytearray(c.encode(row))
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.sampled_from([0, 1, 2, 0x7F, 0x80, 0xFF]))
    raw = bytes(raw)
    try:
        got = c.decode(raw)
    except stdb.DataError as e:
        assert e.detail.startswith("table 'v'") and "byte" in e.detail
        return
    again = c.encode(got)
    assert again == raw, (types, raw.hex(), again.hex())


def test_f64_nan_payloads_round_trip():
    c = codec_for(["f64"])
    for bits in (0x7FF0000000000001, 0xFFF8000000000001, 0x7FF7FFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
        raw = struct.pack("<Q", bits)
        assert c.encode(c.decode(raw)) == raw


def test_f32_signalling_nan_round_trips():
    c = codec_for(["f32"])
    for bits in (0x7F800001, 0xFF800001, 0x7FA00000, 0x7FBFFFFF):
        raw = struct.pack("<I", bits)
        assert c.encode(c.decode(raw)) == raw


def test_f32_nan_payloads_survive_a_table_page():
    """A page stores an f32 column in a packed float array: the bits must come back too."""
    from stdb import Column, TableSchema
    from stdb._core.table import Table

    c = codec_for(["u64", "f32"])
    t = Table(TableSchema("v", [Column("c0", "u64"), Column("c1", "f32")], primary_key="c0"))
    for i, bits in enumerate((0x7F800001, 0xFFBFFFFF, 0x7FC00001)):
        raw = struct.pack("<QI", i, bits)
        rid = t.insert(c.decode(raw))
        assert c.encode(t.get(rid)) == raw


def test_f32_quiet_nan_payloads_round_trip():
    c = codec_for(["f32"])
    for bits in (0x7FC00000, 0xFFC00000, 0x7FC00001, 0x7FFFFFFF):
        raw = struct.pack("<I", bits)
        assert c.encode(c.decode(raw)) == raw


def test_decode_accepts_bytes_like_input():
    c = codec_for(["u8", "string"])
    raw = bytes.fromhex("050200000068" "69")
    for data in (raw, bytearray(raw), memoryview(raw), memoryview(b"xx" + raw)[2:]):
        assert c.decode(data) == (5, "hi")
    empty = codec_for([])
    assert empty.encode(()) == b"" and empty.decode(b"") == () and empty.decode(memoryview(b"")) == ()
    with pytest.raises(stdb.DataError, match="1 trailing bytes"):
        empty.decode(b"\x00")
    with pytest.raises(stdb.DataError, match="truncated u8"):
        c.decode(memoryview(b""))


# ---------------------------------------------------------------- malformed input

@pytest.mark.parametrize("t, tail, what", [
    ("bool", "", r"truncated bool: needs 1 bytes at byte 2, only 0 left"),
    ("bool", "02", r"bad bool byte 2 at byte 2"),
    ("bool", "ff", r"bad bool byte 255 at byte 2"),
    ("option<u8>", "0207", r"bad option tag 2 at byte 2"),
    ("option<string>", "ff", r"bad option tag 255 at byte 2"),
    ("option<i64>", "01010203", r"truncated i64: needs 8 bytes at byte 3, only 3 left"),
    ("string", "02000000ff00", r"string at byte 6 is not valid UTF-8"),
    ("string", "02000000c080", r"string at byte 6 is not valid UTF-8"),      # overlong U+0000
    ("string", "03000000eda080", r"string at byte 6 is not valid UTF-8"),    # encoded surrogate
    ("string", "0200000061e2", r"string at byte 6 is not valid UTF-8"),      # cut mid-character
    ("string", "0200", r"truncated string: needs 4 bytes at byte 2, only 2 left"),
    ("string", "05000000616263", r"truncated string: needs 5 bytes at byte 6, only 3 left"),
    ("bytes", "ffffffff00", r"truncated bytes: needs 4294967295 bytes at byte 6, only 1 left"),
    ("identity", "00" * 31, r"truncated identity: needs 32 bytes at byte 2, only 31 left"),
    ("u32", "0102", r"truncated u32: needs 4 bytes at byte 2, only 2 left"),
    ("timestamp", "00" * 7, r"truncated timestamp: needs 8 bytes at byte 2, only 7 left"),
    ("f64", "0000", r"truncated f64: needs 8 bytes at byte 2"),
    ("array<u8>", "ffffffff", r"array count 4294967295 at byte 2 exceeds the 0 bytes left"),
    ("array<u8>", "0500000001020304", r"array count 5 at byte 2 exceeds the 4 bytes left"),
    ("array<u16>", "020000000100ff", r"truncated u16: needs 2 bytes at byte 8, only 1 left"),
    ("array<bool>", "020000000102", r"bad bool byte 2 at byte 7"),
    ("array<string>", "0100000001000000ff", r"string at byte 10 is not valid UTF-8"),
])
def test_malformed_input_names_table_column_and_byte(t, tail, what):
    c = stdb.RowCodec("players", ["id", "col"], ["u16", t])
    with pytest.raises(stdb.DataError) as e:
        c.decode(bytes.fromhex("0100" + tail))
    assert e.value.detail.startswith("table 'players', column 'col': ")
    assert re.search(what, e.value.detail), e.value.detail


_DOC_ERROR_INPUTS = [                                      # in the order of the doc's table
    ("string", "010005000000616263"),
    ("bool", "01000109"),
    ("string", "010002000000ff00"),
    ("bool", "010002"),
    ("option<u8>", "01000207"),
    ("array<u8>", "0100ffffffff"),
]


def test_doc_error_examples_are_the_real_messages():
    examples = [row[1] for row in _doc_table("### What a decoder must reject")]
    assert len(examples) == len(_DOC_ERROR_INPUTS)
    for (t, raw), message in zip(_DOC_ERROR_INPUTS, examples, strict=True):
        with pytest.raises(stdb.DataError) as e:
            stdb.RowCodec("players", ["id", "col"], ["u16", t]).decode(bytes.fromhex(raw))
        assert e.value.detail == message


def test_trailing_bytes_name_table_and_offset():
    c = stdb.RowCodec("players", ["id", "flag"], ["u16", "bool"])
    with pytest.raises(stdb.DataError) as e:
        c.decode(bytes.fromhex("01000109"))
    assert e.value.detail == "table 'players': 1 trailing bytes after the row (row ends at byte 3 of 4)"


def test_hostile_array_count_is_refused_before_allocating():
    c = codec_for(["array<string>"])
    with pytest.raises(stdb.DataError, match="array count"):
        c.decode(b"\xff\xff\xff\xff" + b"\x00" * 64)
    with pytest.raises(stdb.DataError, match="truncated string"):     # count fits, elements don't
        c.decode(b"\x03\x00\x00\x00" + b"\x00" * 9)


# ---------------------------------------------------------------- value checks

@pytest.mark.parametrize("t, bad", [
    ("bool", 1), ("bool", 0), ("bool", None), ("bool", "true"),
    ("i8", 128), ("i8", -129), ("i8", 1.0), ("i8", "1"),
    ("i16", 32768), ("i16", -32769),
    ("i32", True), ("i32", 2**31), ("i32", -2**31 - 1),
    ("i64", 2**63), ("i64", -2**63 - 1), ("i64", None),
    ("u8", 256), ("u8", -1), ("u16", 65536), ("u32", 2**32), ("u64", 2**64), ("u64", -1), ("u64", False),
    ("f32", 1e39), ("f32", -1e39), ("f32", math.nextafter(FLT_MAX, math.inf)), ("f32", 10**400),
    ("f32", "1.0"), ("f32", True),
    ("f64", "1.0"), ("f64", True), ("f64", None), ("f64", 10**400), ("f64", 1j),
    ("string", "\ud800"), ("string", "a\udfffb"), ("string", b"x"), ("string", None), ("string", 1),
    ("bytes", "text"), ("bytes", [1, 2]), ("bytes", None),
    ("identity", b"x" * 31), ("identity", b"x" * 33), ("identity", "x" * 32), ("identity", None),
    ("timestamp", 1.5), ("timestamp", 2**63), ("timestamp", -2**63 - 1), ("timestamp", True),
    ("option<i32>", "x"), ("option<i32>", 2**31), ("option<string>", b"x"), ("option<bool>", 1),
    ("array<u8>", "abc"), ("array<u8>", b"ab"), ("array<u8>", None), ("array<u8>", {1, 2}),
    ("array<u8>", [1, 256]), ("array<i8>", [1, 1000]), ("array<string>", ["ok", "\ud800"]),
    ("array<i32>", [None]),
])
def test_check_rejects(t, bad):
    c = stdb.RowCodec("things", ["id", "col"], ["u8", t])
    with pytest.raises(stdb.DataError) as e:
        c.check_row((1, bad))
    assert e.value.detail.startswith("table 'things', column 'col': ")
    with pytest.raises(stdb.DataError):
        c.encode((1, bad))
    with pytest.raises(stdb.DataError):
        c.encode_many([(1, bad)])


@pytest.mark.parametrize("t", ["i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "timestamp"])
def test_integer_range_edges(t):
    bits = {"8": 8, "16": 16, "32": 32, "64": 64, "timestamp": 64}[t.lstrip("iu") or t]
    lo, hi = (0, 2**bits - 1) if t.startswith("u") else (-2**(bits - 1), 2**(bits - 1) - 1)
    c = codec_for([t, t])
    assert c.decode(c.encode((lo, hi))) == (lo, hi)
    for bad in (lo - 1, hi + 1):
        with pytest.raises(stdb.DataError, match=f"out of range for {t}"):
            c.check_row((0, bad))


def test_check_row_shape():
    c = stdb.RowCodec("things", ["a", "b"], ["u8", "u8"])
    assert c.check_row([1, 2]) == (1, 2)
    for bad in ({"a": 1}, "ab", 5, None):
        with pytest.raises(stdb.DataError, match="table 'things': a row is a tuple of 2 values"):
            c.check_row(bad)
    for bad in ((), (1,), (1, 2, 3)):
        with pytest.raises(stdb.DataError, match=r"table 'things' has 2 columns \(a, b\)"):
            c.check_row(bad)


class _Colour(enum.IntEnum):
    RED = 3


def test_check_accepts_and_normalises():
    c = codec_for(["f64", "f32", "f32", "bytes", "bytes", "identity", "array<u8>", "array<f64>",
                   "i32", "option<u8>", "f64"])
    row = c.check_row((3, 0.1, 2**24 + 1, bytearray(b"ab"), memoryview(b"cd"), bytearray(32),
                       (1, 2), [1, 2.5], _Colour.RED, None, 2**1000))
    f32_01 = struct.unpack("<f", struct.pack("<f", 0.1))[0]
    assert same(row, (3.0, f32_01, 16777216.0, b"ab", b"cd", bytes(32), [1, 2], [1.0, 2.5], 3, None,
                      float(2**1000)))
    c = codec_for(["f32"] * 5 + ["bool", "bool"])
    row = c.check_row((FLT_MAX, -FLT_MAX, math.inf, math.nan, -0.0, True, False))
    assert same(row, (FLT_MAX, -FLT_MAX, math.inf, math.nan, -0.0, True, False))


def test_schema_rejects_bad_types():
    for bad in ["int", "option<option<i32>>", "array<array<u8>>", "option<array<u8>>", "option<>",
                "array<>", "option", 5, None]:
        with pytest.raises(stdb.SchemaError):
            parse_type(bad)
    with pytest.raises(stdb.SchemaError):
        stdb.RowCodec("t", ["a", "b"], ["u8"])
    assert parse_type(" Option< String > ").name == "option<string>"


# ---------------------------------------------------------------- key codec

def _key(t, v):
    return encode_key((t,), (v,))


def _pairs(t):
    """Two values of ``t``, the second often equal to (or sharing a prefix with) the first."""
    @st.composite
    def pair(draw):
        a = draw(values_of(t))
        kind = draw(st.integers(0, 3))
        if kind == 0:
            b = a
        elif kind == 1 and isinstance(a, list):
            b = a[:draw(st.integers(0, len(a)))] + draw(st.lists(base_values(t.inner.name), max_size=2))
        else:
            b = draw(values_of(t))
        return a, b
    return pair()


@pytest.mark.parametrize("tname", ALL_TYPES)
@given(data=st.data())
@settings(max_examples=40, deadline=None)
def test_key_order_matches_value_order(tname, data):
    t = parse_type(tname)
    a, b = data.draw(_pairs(t))
    ka, kb = _key(t, a), _key(t, b)
    assert _cmp(ka, kb) == value_cmp(t, a, b), (tname, a, b, ka.hex(), kb.hex())
    if ka != kb:                                           # prefix-free
        assert not kb.startswith(ka) and not ka.startswith(kb)


def test_key_order_edges():
    f64, f32 = parse_type("f64"), parse_type("f32")
    for t in (f64, f32):
        ladder = [-math.inf, -FLT_MAX, -1.0, -1e-45, 0.0, 1e-45, 1.0, FLT_MAX, math.inf, math.nan]
        keys = [_key(t, t.check(x)) for x in ladder]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        assert _key(t, -0.0) == _key(t, 0.0)
        snan = struct.unpack(">d", bytes.fromhex("7ff0000000000001"))[0]
        assert _key(t, math.nan) == _key(t, -math.nan) == _key(t, snan)
        assert len(_key(t, math.nan)) == (8 if t is f64 else 4)
    s = parse_type("string")
    words = ["", "\x00", "\x00\x00", "\x00\x01", "\x01", "a", "a\x00", "a\x00b", "ab", "\xff", "\u0100",
             "\uffff", "\U00010000"]
    assert [_key(s, w) for w in words] == sorted(_key(s, w) for w in words)
    a = parse_type("array<u8>")
    arrays = [[], [0], [0, 0], [0, 1], [1], [255]]
    assert [_key(a, x) for x in arrays] == sorted(_key(a, x) for x in arrays)
    o = parse_type("option<i8>")
    assert _key(o, None) < _key(o, -128) < _key(o, 127)
    widths = {"bool": 1, "i8": 1, "u8": 1, "i16": 2, "u16": 2, "i32": 4, "u32": 4, "f32": 4,
              "i64": 8, "u64": 8, "f64": 8, "timestamp": 8}
    for name, w in widths.items():
        assert len(_key(parse_type(name), parse_type(name).check(0 if name != "bool" else False))) == w
    assert _key(parse_type("identity"), bytes(range(32))) == bytes(range(32))


@given(st.lists(st.tuples(base_values("i16"), base_values("string"), base_values("f64")),
                min_size=2, max_size=20))
@settings(max_examples=100)
def test_multi_column_keys_sort_like_tuples(rows):
    types = tuple(parse_type(n) for n in ("i16", "string", "f64"))

    def row_cmp(x, y):
        for t, a, b in zip(types, x, y, strict=True):
            c = value_cmp(t, a, b)
            if c:
                return c
        return 0

    for x, y in zip(rows, rows[1:], strict=False):
        assert _cmp(encode_key(types, x), encode_key(types, y)) == row_cmp(x, y)


@given(st.data())
@settings(max_examples=300)
def test_any_schema_keys_sort_like_tuples(data):
    types = tuple(data.draw(st.lists(column_types(), min_size=1, max_size=3)))
    a = tuple(data.draw(values_of(t)) for t in types)
    shared = data.draw(st.integers(0, len(types)))          # b often shares a prefix of a's values
    b = a[:shared] + tuple(data.draw(values_of(t)) for t in types[shared:])
    want = next((c for c in (value_cmp(t, x, y) for t, x, y in zip(types, a, b, strict=True)) if c), 0)
    ka, kb = encode_key(types, a), encode_key(types, b)
    assert _cmp(ka, kb) == want, (types, a, b)
    for k in range(len(types) + 1):                          # a's values on k columns bound a's key
        p = encode_key(types[:k], a[:k])
        assert ka.startswith(p) and p <= ka and (prefix_successor(p) == b"" or ka < prefix_successor(p))


@given(st.binary(max_size=12), st.binary(max_size=12), st.binary(max_size=14))
@settings(max_examples=300)
def test_prefix_successor(k, suffix, x):
    succ = prefix_successor(k)
    if k.strip(b"\xff"):
        assert k <= k + suffix < succ
        assert len(succ) <= len(k) and not succ.startswith(k)
        assert (k <= x < succ) == x.startswith(k)          # succ is the least upper bound
    else:
        assert succ == b""                                  # empty or all 0xFF: no upper bound
        assert (x >= k) == x.startswith(k)


def test_prefix_successor_examples():
    assert prefix_successor(b"") == b""
    assert prefix_successor(b"\xff\xff") == b""
    assert prefix_successor(b"a") == b"b"
    assert prefix_successor(b"a\xff\xff") == b"b"
    assert prefix_successor(b"\x00\x00") == b"\x00\x01"


_RANGE_TYPES = tuple(parse_type(n) for n in ("i16", "string", "option<u8>"))


_RANGE_INTS = st.integers(-3, 3) | st.just(32767)          # 32767 is i16's all-0xff key
_RANGE_STRS = st.sampled_from(["", "\x00", "a", "a\x00", "ab", "b"])


@given(st.lists(st.tuples(_RANGE_INTS, _RANGE_STRS, st.none() | st.sampled_from([0, 1, 255])), max_size=25),
       st.integers(1, 2), st.data())
@settings(max_examples=150)
def test_range_bounds_on_a_column_prefix(rows, k, data):
    """The bound table in docs/row-format.md: byte ranges select exactly the value ranges."""
    def prefix_cmp(row, bound):
        for t, a, b in zip(_RANGE_TYPES, row, bound, strict=False):
            c = value_cmp(t, a, b)
            if c:
                return c
        return 0

    lo = data.draw(st.sampled_from(rows)) if rows and data.draw(st.booleans()) else \
        (data.draw(_RANGE_INTS), data.draw(st.sampled_from(["", "a", "a\x00", "c"])), None)
    hi = data.draw(st.sampled_from(rows)) if rows and data.draw(st.booleans()) else \
        (data.draw(st.integers(-4, 4) | st.just(32767)), data.draw(st.sampled_from(["", "a", "b\x00"])), None)
    lo, hi = lo[:k], hi[:k]
    elo, ehi = encode_key(_RANGE_TYPES[:k], lo), encode_key(_RANGE_TYPES[:k], hi)
    keys = {r: encode_key(_RANGE_TYPES, r) for r in rows}

    def in_bytes(key, start, end):                          # start None = empty, end b"" = unbounded
        return start is not None and start <= key and (end == b"" or key < end)

    for lo_incl in (True, False):
        for hi_incl in (True, False):
            start = elo if lo_incl else (prefix_successor(elo) or None)
            end = prefix_successor(ehi) if hi_incl else ehi
            got = {r for r in rows if in_bytes(keys[r], start, end)}
            want = {r for r in rows
                    if (prefix_cmp(r, lo) >= 0 if lo_incl else prefix_cmp(r, lo) > 0)
                    and (prefix_cmp(r, hi) <= 0 if hi_incl else prefix_cmp(r, hi) < 0)}
            assert got == want, (lo, hi, lo_incl, hi_incl)


def test_table_range_exclusive_lower_bound_at_the_largest_key():
    from stdb import Column, IndexDef, TableSchema
    from stdb._core.table import Table

    t = Table(TableSchema("t", [Column("id", "u64", auto_inc=True), Column("b", "u8")], primary_key="id",
                          indexes=[IndexDef("by_b", "b")]))
    for b in (1, 254, 255):
        t.insert((0, b))
    assert [t.get(r)[1] for r in t.range("by_b", 254, None, lo_inclusive=False)] == [255]
    assert list(t.range("by_b", 255, None, lo_inclusive=False)) == []


# ---------------------------------------------------------------- framing helper

def test_read_framed():
    buf = b"\x02\x00\x00\x00ab\x00\x00\x00\x00\x01\x00\x00\x00c"
    assert read_framed(buf, 0, 3) == ([b"ab", b"", b"c"], len(buf))
    assert read_framed(buf, 6, 2) == ([b"", b"c"], len(buf))
    with pytest.raises(stdb.DataError):
        read_framed(buf, 0, 4)
    with pytest.raises(stdb.DataError):
        read_framed(buf[:-1], 0, 3)
    with pytest.raises(stdb.DataError):
        read_framed(b"\xff\xff\xff\xff", 0, 1)


def test_key_helpers_are_consistent_with_sorting():
    """Sorting random values by key equals sorting them by the documented value order."""
    t = parse_type("option<f32>")
    vals = [None, math.nan, -0.0, 0.0, -math.inf, math.inf, 1.5, -1.5, None, math.nan]
    by_key = sorted(vals, key=lambda v: _key(t, v))
    by_value = sorted(vals, key=functools.cmp_to_key(lambda a, b: value_cmp(t, a, b)))
    assert [_key(t, v) for v in by_key] == [_key(t, v) for v in by_value]
