"""Fuzz target: the row codec (stdb/_core/codec.pyx) decoding arbitrary bytes.

Input: one byte choosing a schema from ``SCHEMAS``, then the row bytes.  For every input:

* ``RowCodec.decode`` either returns a row or raises ``DataError`` — nothing else, no crash —
  and does the same for a ``bytes`` and a ``memoryview`` of the same bytes;
* it agrees with ``reference_decode``, a plain reading of docs/row-format.md written here: both
  accept or both refuse, and the values are equal bit for bit (floats compared by their bits);
* an accepted row re-encodes to exactly the input (NaN payloads included, signalling f32 NaNs
  too), passes ``check_row`` unchanged, and its index key (``encode_key``) can be built;
* ``read_framed`` over the same bytes (position and count taken from the input) returns
  frames that re-frame to the bytes it consumed, or raises ``DataError``.

    python -m fuzz.fuzz_rowcodec fuzz/corpus/rowcodec -max_total_time=60
"""

from __future__ import annotations

import math
import struct
from typing import Any

from fuzz._harness import fuzz, instrument_module, instrumented

with instrumented(__name__ == "__main__"):
    from stdb._core.codec import RowCodec, encode_key, read_framed
    from stdb.errors import DataError

BASE = ("bool", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "f32", "f64",
        "string", "bytes", "identity", "timestamp")

SCHEMAS: list[tuple[str, ...]] = [
    BASE,
    tuple(f"option<{t}>" for t in BASE),
    tuple(f"array<{t}>" for t in BASE),
    ("u64", "i64", "string"),                                               # account
    ("u32", "option<string>", "array<u8>", "bool", "f64", "identity"),      # player
    ("string",),
    ("array<string>", "option<bytes>"),
    ("f32", "array<f32>", "option<f32>"),
    (),                                                                     # a reducer without params
]
CODECS = [RowCodec("fuzz", [f"c{i}" for i in range(len(s))], list(s)) for s in SCHEMAS]

_FIXED = {"f32": "<f", "i8": "<b", "i16": "<h", "i32": "<i", "i64": "<q", "u8": "<B", "u16": "<H",
          "u32": "<I", "u64": "<Q", "timestamp": "<q", "f64": "<d"}


class RefError(Exception):
    """The reference decoder refuses the input."""


def _take(data: bytes, pos: int, n: int) -> bytes:
    if pos + n > len(data):
        raise RefError("truncated")
    return data[pos:pos + n]


def _ref_value(t: str, data: bytes, pos: int) -> tuple[Any, int]:
    """One value of type ``t`` at ``pos``: (value, next position)."""
    if t.startswith("option<"):
        tag = _take(data, pos, 1)[0]
        if tag > 1:
            raise RefError("option tag")
        if tag == 0:
            return None, pos + 1
        return _ref_value(t[7:-1], data, pos + 1)
    if t.startswith("array<"):
        (count,) = struct.unpack("<I", _take(data, pos, 4))
        if count > len(data) - pos - 4:
            raise RefError("array count")
        pos += 4
        items = []
        for _ in range(count):
            v, pos = _ref_value(t[6:-1], data, pos)
            items.append(v)
        return items, pos
    if t == "bool":
        b = _take(data, pos, 1)[0]
        if b > 1:
            raise RefError("bool")
        return b == 1, pos + 1
    if t in _FIXED:
        s = struct.Struct(_FIXED[t])
        return s.unpack(_take(data, pos, s.size))[0], pos + s.size
    if t in ("string", "bytes"):
        (n,) = struct.unpack("<I", _take(data, pos, 4))
        raw = _take(data, pos + 4, n)
        if t == "bytes":
            return raw, pos + 4 + n
        try:
            return raw.decode("utf-8"), pos + 4 + n
        except UnicodeDecodeError:
            raise RefError("utf-8") from None
    if t == "identity":
        return _take(data, pos, 32), pos + 32
    raise AssertionError(f"unknown type {t}")


def reference_decode(types: tuple[str, ...], data: bytes) -> tuple:
    """The row by docs/row-format.md, or RefError."""
    pos = 0
    row = []
    for t in types:
        v, pos = _ref_value(t, data, pos)
        row.append(v)
    if pos != len(data):
        raise RefError("trailing bytes")
    return tuple(row)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _check_framed(data: bytes) -> None:
    if len(data) < 2:
        return
    pos, count = data[0] % (len(data) + 1), data[1] % 8
    try:
        frames, end = read_framed(data, pos, count)
    except DataError:
        return
    assert len(frames) == count
    assert b"".join(struct.pack("<I", len(f)) + f for f in frames) == data[pos:end]


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    sel = data[0] % len(SCHEMAS)
    types, codec, row = SCHEMAS[sel], CODECS[sel], data[1:]
    try:
        expected = reference_decode(types, row)
    except RefError:
        expected = None
    outcomes = []
    for buf in (row, memoryview(bytearray(row))):
        try:
            outcomes.append(codec.decode(buf))
        except DataError as e:
            assert e.detail.startswith("table 'fuzz'"), e.detail
            outcomes.append(None)
    got = outcomes[0]
    assert (got is None) == (outcomes[1] is None), "bytes and memoryview decode differently"
    if expected is None:
        assert got is None, f"decoded a row the format refuses: {got!r}"
    else:
        assert got is not None, "refused a row the format accepts"
        assert _same(list(got), list(expected)), (got, expected)
        assert _same(list(outcomes[1]), list(got))
        assert codec.encode(got) == row, "re-encoding differs"
        assert _same(list(codec.check_row(got)), list(got))
        encode_key(codec.types, got)
    _check_framed(data)


instrument_module(globals(), __name__ == "__main__")


def main() -> None:
    fuzz(TestOneInput)


if __name__ == "__main__":
    main()
