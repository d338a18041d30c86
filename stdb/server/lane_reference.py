"""The reference of the CallReducer lane (stdb/server/_lane.pyx): what the server's general path
makes of a message — ``decode_client``, then the reducer's parameter codec — in the lane's terms.

``reference_parse(reducers, data)`` is ``(request_id, reducer number, name, argument bytes)``
when the general path would call a reducer with those arguments, and None when it would answer
an error instead (or the message is not a CallReducer).  The lane must return either None or
exactly this (tests/test_lane.py, fuzz/fuzz_lane.py).
"""

from __future__ import annotations

from typing import Any

from stdb._core.codec import RowCodec
from stdb.errors import StdbError
from stdb.protocol import decode_client

__all__ = ["reference_parse"]


def reference_parse(reducers: dict[str, tuple[int, RowCodec]],
                    data: Any) -> tuple[int, int, str, bytes] | None:
    try:
        msg = decode_client(data)
    except StdbError:
        return None
    if msg["type"] != "CallReducer":
        return None
    found = reducers.get(msg["reducer"])
    if found is None:
        return None
    idx, codec = found
    try:
        raw = codec.encode(tuple(msg["args"]))
    except StdbError:
        return None
    return msg["request_id"], idx, msg["reducer"], raw
