"""Row codec and key codec: documented vectors, round trips, hostile input, order."""

import json
import math
import pathlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stdb
from stdb._core.codec import encode_key, parse_type, prefix_successor, read_framed
from stdb._core.reference import sort_key
from tests.strategies import BASE_TYPES, base_values, column_types, typed_rows, values_of

HERE = pathlib.Path(__file__).parent
ROW_VECTORS = json.loads((HERE / "vectors" / "row_codec.json").read_text())
KEY_VECTORS = json.loads((HERE / "vectors" / "key_codec.json").read_text())
DOC = (HERE.parent / "docs" / "row-format.md").read_text()


def _value(v):
    if isinstance(v, dict):
        if "hex" in v:
            return bytes.fromhex(v["hex"])
        return float(v["f"])
    if isinstance(v, list):
        return [_value(x) for x in v]
    return v


def codec_for(types):
    return stdb.RowCodec("v", [f"c{i}" for i in range(len(types))], types)


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("vec", ROW_VECTORS, ids=[v["name"] for v in ROW_VECTORS])
def test_row_vectors(vec):
    c = codec_for(vec["types"])
    row = tuple(_value(v) for v in vec["row"])
    assert c.encode(row).hex() == vec["hex"]
    assert same(c.decode(bytes.fromhex(vec["hex"])), row)
    assert f"`{vec['hex']}`" in DOC, "the vector is missing from docs/row-format.md"


@pytest.mark.parametrize("vec", KEY_VECTORS, ids=[v["name"] for v in KEY_VECTORS])
def test_key_vectors(vec):
    t = parse_type(vec["type"])
    assert encode_key((t,), (_value(vec["value"]),)).hex() == vec["hex"]
    assert f"`{vec['hex']}`" in DOC


def _doc_vector_hex(heading):
    """The hex column of the vector table under ``heading`` in docs/row-format.md."""
    section = DOC.split(heading, 1)[1].split("\n#", 1)[0]
    return [line.split("`")[-2] for line in section.splitlines()
            if line.startswith("| ") and line.rstrip().endswith("` |")]


def test_doc_tables_hold_exactly_the_vectors():
    assert _doc_vector_hex("### Row test vectors") == [v["hex"] for v in ROW_VECTORS]
    assert _doc_vector_hex("### Key test vectors") == [v["hex"] for v in KEY_VECTORS]


@given(typed_rows())
@settings(max_examples=400)
def test_round_trip(case):
    types, row = case
    c = codec_for(types)
    data = c.encode(row)
    assert same(c.decode(data), c.check_row(row))
    assert same(c.decode(memoryview(data)), c.check_row(row))
    assert c.encode(c.decode(data)) == data


@given(typed_rows(), st.data())
@settings(max_examples=200)
def test_every_truncation_is_refused(case, data):
    types, row = case
    c = codec_for(types)
    raw = c.encode(row)
    cut = data.draw(st.integers(0, max(0, len(raw) - 1)))
    if len(raw) == 0:
        return
    with pytest.raises(stdb.DataError):
        c.decode(raw[:cut])
    with pytest.raises(stdb.DataError, match="trailing"):
        c.decode(raw + b"\x00")


@given(st.lists(column_types(), min_size=1, max_size=4), st.binary(max_size=64))
@settings(max_examples=500)
def test_random_bytes_decode_or_refuse(types, raw):
    c = codec_for(types)
    try:
        row = c.decode(raw)
    except stdb.DataError as e:
        assert "'v'" in e.detail
        return
    assert c.encode(row) == raw or any(t.name in ("f32", "option<f32>", "array<f32>") for t in types)


@pytest.mark.parametrize("types, raw, what", [
    (["bool"], "02", "bad bool"),
    (["option<u8>"], "0207", "bad option tag"),
    (["string"], "02000000ff00", "UTF-8"),
    (["array<u8>"], "ffffff7f", "array count"),
    (["u32"], "0102", "truncated"),
])
def test_malformed_input_names_the_problem(types, raw, what):
    with pytest.raises(stdb.DataError, match=what) as e:
        codec_for(types).decode(bytes.fromhex(raw))
    assert "column 'c0'" in e.value.detail


@pytest.mark.parametrize("t, bad", [
    ("bool", 1), ("i32", True), ("u8", 256), ("u8", -1), ("i8", 128), ("i64", 2**63), ("f32", 1e39),
    ("identity", b"x" * 31), ("string", "\ud800"), ("array<u8>", "abc"), ("option<i32>", "x"),
    ("bytes", "text"), ("timestamp", 1.5), ("f64", "1.0"), ("array<i8>", [1, 1000]),
])
def test_check_rejects(t, bad):
    c = codec_for([t])
    with pytest.raises(stdb.DataError) as e:
        c.check_row((bad,))
    assert "column 'c0'" in e.value.detail
    with pytest.raises(stdb.DataError):
        c.encode((bad,))


def test_check_normalises():
    c = codec_for(["f64", "f32", "bytes", "identity", "array<u8>"])
    row = c.check_row((3, 0.1, bytearray(b"ab"), memoryview(bytes(32)), (1, 2)))
    assert row == (3.0, struct.unpack("<f", struct.pack("<f", 0.1))[0], b"ab", bytes(32), [1, 2])
    assert type(row[0]) is float and type(row[2]) is bytes


def test_schema_rejects_bad_types():
    for bad in ["int", "option<option<i32>>", "array<array<u8>>", "option<>", 5]:
        with pytest.raises(stdb.SchemaError):
            parse_type(bad)


def _sign(x):
    return (x > 0) - (x < 0)


@pytest.mark.parametrize("tname", BASE_TYPES)
@given(data=st.data())
@settings(max_examples=60)
def test_key_order_matches_value_order(tname, data):
    for t in (parse_type(tname), parse_type(f"option<{tname}>"), parse_type(f"array<{tname}>")):
        a = data.draw(values_of(t))
        b = data.draw(values_of(t))
        ka, kb = encode_key((t,), (a,)), encode_key((t,), (b,))
        sa, sb = sort_key(t, a), sort_key(t, b)
        assert _sign((ka > kb) - (ka < kb)) == _sign((sa > sb) - (sa < sb)), (t, a, b)


@given(st.lists(st.tuples(base_values("i16"), base_values("string")), min_size=2, max_size=20))
def test_multi_column_keys_sort_like_tuples(pairs):
    types = (parse_type("i16"), parse_type("string"))
    by_key = sorted(pairs, key=lambda p: encode_key(types, p))
    assert [(a, b.encode()) for a, b in by_key] == sorted((a, b.encode()) for a, b in pairs)


@given(st.binary(max_size=12), st.binary(max_size=12))
def test_prefix_successor(k, suffix):
    succ = prefix_successor(k)
    if k and k.strip(b"\xff"):
        assert k <= k + suffix < succ
    else:
        assert succ == b""


def test_read_framed():
    buf = b"\x02\x00\x00\x00ab\x00\x00\x00\x00\x01\x00\x00\x00c"
    assert read_framed(buf, 0, 3) == ([b"ab", b"", b"c"], len(buf))
    with pytest.raises(stdb.DataError):
        read_framed(buf, 0, 4)
    with pytest.raises(stdb.DataError):
        read_framed(buf[:-1], 0, 3)
