"""Fuzz target: the server's CallReducer lane (stdb/server/_lane.pyx) on arbitrary bytes.

Input: one client message as it arrives in a websocket frame.  For every input
``CallLane.parse`` returns None (the general path takes the message) or exactly what the
general path makes of it — ``decode_client`` and the reducer's parameter codec
(``stdb.server.lane_reference.reference_parse``): the request id, the reducer and the argument
bytes.  Reducers of every parameter type the lane reads, and some it leaves alone (f32).

    python -m fuzz.fuzz_lane fuzz/corpus/lane -max_total_time=60
"""

from __future__ import annotations

from fuzz._harness import fuzz, instrument_module, instrumented

with instrumented(__name__ == "__main__"):
    from stdb._core.codec import RowCodec
    from stdb.server._lane import CallLane
    from stdb.server.lane_reference import reference_parse

PARAMS = {
    "transfer": ("u64", "u64", "u64"),
    "everything": ("bool", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "f64", "string", "bytes",
                   "identity", "timestamp"),
    "wrapped": ("option<u32>", "option<string>", "array<i16>", "array<string>", "array<f64>",
                "option<identity>", "array<bool>"),
    "floats32": ("f32", "array<f32>"),
    "none": (),
}
REDUCERS = {name: (i, RowCodec(name, [f"a{k}" for k in range(len(t))], list(t)))
            for i, (name, t) in enumerate(PARAMS.items())}
LANE = CallLane(REDUCERS)


def TestOneInput(data: bytes) -> None:
    got = LANE.parse(data)
    if got is not None:
        want = reference_parse(REDUCERS, data)
        assert got == want, (data, got, want)


instrument_module(globals(), __name__ == "__main__")


def main() -> None:
    fuzz(TestOneInput)


if __name__ == "__main__":
    main()
