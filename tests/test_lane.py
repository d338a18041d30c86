"""The CallReducer lane (stdb/server/_lane.pyx) against the general path it stands in for
(stdb/server/lane_reference.py): whenever the lane reads a message, it reads exactly what the
general path would; it reads the plain calls a client sends; its answer is ``encode``'s bytes."""

from __future__ import annotations

import math

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from stdb._core.codec import RowCodec
from stdb.protocol import encode
from stdb.server._lane import CallLane
from stdb.server.lane_reference import reference_parse

PARAMS = {
    "transfer": ("u64", "u64", "u64"),
    "everything": ("bool", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "f64", "string", "bytes",
                   "identity", "timestamp"),
    "wrapped": ("option<u32>", "option<string>", "array<i16>", "array<string>", "array<f64>"),
    "floats32": ("f32", "array<f32>"),
    "none": (),
}
REDUCERS = {name: (i, RowCodec(name, [f"a{k}" for k in range(len(t))], list(t)))
            for i, (name, t) in enumerate(PARAMS.items())}
LANE = CallLane(REDUCERS)

_INT = {"i8": 8, "i16": 16, "i32": 32, "i64": 64, "timestamp": 64}
_UINT = {"u8": 8, "u16": 16, "u32": 32, "u64": 64}


def friendly(t: str) -> st.SearchStrategy:
    """Values of type ``t`` the lane reads itself (the plain ones a client sends)."""
    if t.startswith("option<"):
        return st.none() | friendly(t[7:-1])
    if t.startswith("array<"):
        return st.lists(friendly(t[6:-1]), max_size=5)
    if t == "bool":
        return st.booleans()
    if t in _INT:
        b = _INT[t]
        return st.integers(-(1 << (b - 1)), (1 << (b - 1)) - 1)
    if t in _UINT:
        return st.integers(0, (1 << _UINT[t]) - 1)
    if t == "f64":
        return st.floats(allow_nan=False)
    if t == "f32":                          # (the lane leaves f32 to the codec: not in plain calls)
        return st.floats(width=32, allow_nan=False)
    if t == "string":
        return st.text(st.characters(max_codepoint=127), max_size=20)
    if t == "bytes":
        return st.binary(max_size=20)
    if t == "identity":
        return st.binary(min_size=32, max_size=32)
    return st.nothing()


ANY = st.recursive(st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats()
                   | st.text(max_size=8) | st.binary(max_size=40),
                   lambda inner: st.lists(inner, max_size=4), max_leaves=8)


def value(t: str) -> st.SearchStrategy:
    return friendly(t) | ANY


@st.composite
def call_message(draw: st.DrawFn, plain: bool = False) -> bytes:
    name = draw(st.sampled_from(sorted(PARAMS)))
    types = PARAMS[name]
    if plain:
        args = [draw(friendly(t)) for t in types if t not in ("f32", "array<f32>")]
        if len(args) != len(types):
            args = []
            name = "none"
    else:
        args = [draw(value(t)) for t in types]
        if draw(st.integers(0, 9)) == 0:
            args = args[:-1] if args else [1]
    fields = {"type": "CallReducer", "request_id": draw(st.integers(0, (1 << 64) - 1)), "reducer": name,
              "args": args}
    if not plain:
        k = draw(st.integers(0, 19))
        if k == 0:
            fields.pop(draw(st.sampled_from(sorted(fields))))
        elif k == 1:
            fields["extra"] = 1
        elif k == 2:
            fields["type"] = "OneOffQuery"
        elif k == 3:
            fields["reducer"] = draw(st.text(max_size=140))
        elif k == 4:
            fields["request_id"] = draw(ANY)
    keys = draw(st.permutations(sorted(fields)))
    data = cbor2.dumps({k: fields[k] for k in keys})
    if not plain and draw(st.integers(0, 4)) == 0:          # a damaged message
        pos = draw(st.integers(0, len(data)))
        data = data[:pos] + draw(st.binary(max_size=3)) + data[pos + draw(st.integers(0, 3)):]
    return data


@settings(max_examples=3000, deadline=None)
@given(call_message())
def test_the_lane_reads_exactly_what_the_general_path_reads_or_leaves_it_to_it(data):
    got = LANE.parse(data)
    if got is not None:
        assert got == reference_parse(REDUCERS, data)


@settings(max_examples=1000, deadline=None)
@given(call_message(plain=True))
def test_the_lane_reads_the_plain_calls_a_client_sends(data):
    want = reference_parse(REDUCERS, data)
    assert want is not None
    assert LANE.parse(data) == want


@given(st.binary(max_size=64))
def test_arbitrary_bytes(data):
    got = LANE.parse(data)
    assert got is None or got == reference_parse(REDUCERS, data)


def test_what_the_lane_leaves_to_the_general_path():
    def msg(**over):
        f = {"type": "CallReducer", "request_id": 7, "reducer": "transfer", "args": [1, 2, 3]}
        f.update(over)
        return cbor2.dumps(f)
    assert LANE.parse(msg()) == (7, 0, "transfer", (1).to_bytes(8, "little") + (2).to_bytes(8, "little")
                                 + (3).to_bytes(8, "little"))
    assert LANE.parse(msg()[:-1]) is None                           # truncated
    assert LANE.parse(msg() + b"\x00") is None                      # something after the message
    assert LANE.parse(msg(args=[1, 2, -3])) is None                 # out of range: the error is the codec's
    assert LANE.parse(msg(args=[1, 2])) is None                     # too few
    assert LANE.parse(msg(reducer="nope")) is None                  # no such reducer
    assert LANE.parse(msg(reducer="floats32", args=[1.5, []])) is None   # f32 rounding: the codec's
    assert LANE.parse(msg(reducer="everything", args=[True, 0, 0, 0, 0, 0, 0, 0, 0, math.nan, "", b"",
                                                      bytes(32), 0])) is None       # a NaN
    assert LANE.parse(msg(reducer="everything", args=[True, 0, 0, 0, 0, 0, 0, 0, 0, 1.0, "é", b"",
                                                      bytes(32), 0])) is None       # not ASCII
    assert LANE.parse(bytearray(msg())) is None                     # not bytes
    assert LANE.parse("text") is None


@given(st.none() | st.integers(0, (1 << 64) - 1), st.integers(-(1 << 63), (1 << 63) - 1),
       st.text(max_size=30), st.binary(min_size=32, max_size=32), st.integers(0, (1 << 64) - 1))
def test_committed_writes_what_encode_writes(offset, timestamp, reducer, caller, rid):
    want = encode("TransactionUpdate", offset=offset, timestamp=timestamp, reducer=reducer, caller=caller,
                  status="committed", message=None, request_id=rid, updates=[], more=False)
    assert LANE.committed(offset, timestamp, reducer, caller, rid) == want
