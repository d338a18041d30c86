"""The native lane's row codec (stdb/_core/rowbytes.pyx) against its Python reference
(stdb/_core/codec.pyx): the same bytes accepted and refused with the same words, the same
index keys, the same repr of values in messages."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stdb import DataError, RowCodec
from stdb._core.codec import encode_key
from stdb._core.rowbytes import RowChecker, float_repr, utf8_reason
from tests.strategies import typed_rows


def pair(types):
    names = [f"c{i}" for i in range(len(types))]
    return RowChecker("v", names, types), RowCodec("v", names, types)


@given(typed_rows())
def test_valid_rows_are_accepted_with_their_column_starts(tr):
    types, row = tr
    native, codec = pair(types)
    data = codec.encode(row)
    starts = native.check(data)
    assert starts == native.walk(data)
    assert starts[0] == 0 and starts[-1] == len(data)
    # each column's bytes are that column's own encoding
    for i, t in enumerate(types):
        one = RowCodec("x", ["a"], [t])
        assert data[starts[i]:starts[i + 1]] == one.encode((codec.decode(data)[i],))
    if native.fixed_len >= 0:
        assert native.fixed_len == len(data)


@given(typed_rows(), st.data())
def test_damaged_rows_get_the_reference_verdict_and_message(tr, data):
    types, row = tr
    native, codec = pair(types)
    raw = bytearray(codec.encode(row))
    how = data.draw(st.sampled_from(["cut", "flip", "extend", "splice"]))
    if how == "cut" and raw:
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    elif how == "flip" and raw:
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    elif how == "extend":
        raw += data.draw(st.binary(min_size=1, max_size=4))
    else:
        i = data.draw(st.integers(0, len(raw)))
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=6))
    raw = bytes(raw)
    try:
        codec.decode(raw)
        want = None
    except DataError as e:
        want = str(e)
    try:
        native.check(raw)
        got = None
    except DataError as e:
        got = str(e)
    assert got == want


@given(typed_rows())
def test_keys_from_bytes_equal_the_key_codec(tr):
    types, row = tr
    native, codec = pair(types)
    data = codec.encode(row)
    checked = codec.check_row(row)
    for k in range(1, len(types) + 1):
        assert native.key(data, k) == encode_key(tuple(codec.types[:k]), checked[:k])


@given(typed_rows())
def test_values_are_written_as_python_writes_them(tr):
    types, row = tr
    native, codec = pair(types)
    data = codec.encode(row)
    values = codec.decode(data)
    want = ", ".join(repr(v) for v in values)

    def texts(v):
        if isinstance(v, str):
            yield v
        elif isinstance(v, list):
            for x in v:
                yield from texts(x)
    if any(not ch.isprintable() and ord(ch) >= 128 for v in values for t in texts(v) for ch in t):
        return      # Python escapes non-printable code points above 0x7f; messages keep them
    assert native.repr_values(data) == want


@given(st.floats(allow_nan=True, allow_infinity=True) | st.floats(width=32))
def test_float_repr_is_pythons(x):
    assert float_repr(x) == repr(x)


@pytest.mark.parametrize("x", [0.1, 1e16, 1e15, 123.0, -0.0, 1e-5, 0.0001, 5e-324, 1e22, 1.5e300,
                               12345678901234.0, 2.5e-7, 9007199254740993.0])
def test_float_repr_cases(x):
    assert float_repr(x) == repr(x)


@given(st.binary(max_size=30))
def test_utf8_reason_is_the_decoders(b):
    try:
        b.decode("utf-8")
        want = None
    except UnicodeDecodeError as e:
        want = e.reason
    assert utf8_reason(b) == want


@pytest.mark.parametrize("raw", [b"\xed\xa0\x80", b"\xe0\x80\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf",
                                 b"\xf0\x9f\x98", b"\xe2\x82", b"a\xff", b"\xf0\x80", "é😀".encode()])
def test_utf8_edge_cases(raw):
    try:
        raw.decode("utf-8")
        want = None
    except UnicodeDecodeError as e:
        want = e.reason
    assert utf8_reason(raw) == want


def test_a_prefix_of_columns_is_a_key_row():
    native, codec = pair(["u8", "string", "i64"])
    key = RowCodec("k", ["c0", "c1"], ["u8", "string"]).encode((3, "ab"))
    assert native.check(key, 2) == [0, 1, 7]
    with pytest.raises(DataError, match="trailing"):
        native.check(key + b"\x00", 2)


def test_nan_keys_are_one_key():
    native, codec = pair(["f64"])
    a = native.key(struct.pack("<d", math.nan))
    b = native.key(bytes.fromhex("010000000000f07f"))       # a signalling NaN
    assert a == b == encode_key((codec.types[0],), (math.nan,))
    assert native.key(struct.pack("<d", -0.0)) == native.key(struct.pack("<d", 0.0))
