"""The client protocol: CBOR messages over a websocket (docs/protocol.md).

Shared by the server and the client SDK (the client never loads the engine).  A message is one
websocket binary frame holding one CBOR map with a ``"type"`` and that type's fields.
``decode_client`` checks everything a client sends — the frame is CBOR, a map, of a known type,
every field present with the right type and within limits, nothing unknown — and raises a
ProtocolError naming the problem otherwise; the server answers it with an ``Error`` and changes
nothing.  ``encode`` builds a message from fields (the sender's values are trusted).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cbor2

from stdb.errors import ProtocolError

__all__ = ["SUBPROTOCOL", "VERSION", "CLIENT_MESSAGES", "SERVER_MESSAGES", "MAX_MESSAGE_BYTES",
           "encode", "decode_client", "decode_server", "check_value"]

VERSION = 1
SUBPROTOCOL = f"v{VERSION}.cbor.stdb"      # the websocket subprotocol a client must ask for
MAX_MESSAGE_BYTES = 16 << 20               # one frame / message, either way
MAX_QUERIES = 256                          # queries in one Subscribe
MAX_ITEMS = 1 << 16                        # elements of any list a client sends
MAX_DEPTH = 16                             # nesting of reducer argument values
MAX_U64 = (1 << 64) - 1

Check = Callable[[str, Any], None]


def _fail(field: str, want: str, v: Any) -> ProtocolError:
    got = type(v).__name__ if not isinstance(v, (int, str)) or isinstance(v, bool) else repr(v)[:40]
    return ProtocolError(f"field '{field}' must be {want}, got {got}")


def _uint(field: str, v: Any) -> None:
    if type(v) is not int or not 0 <= v <= MAX_U64:
        raise _fail(field, "an unsigned 64-bit integer", v)


def _str(limit: int) -> Check:
    def check(field: str, v: Any) -> None:
        if type(v) is not str:
            raise _fail(field, "a text string", v)
        if len(v) > limit:
            raise ProtocolError(f"field '{field}' is {len(v):,} characters long; at most {limit:,}")
    return check


def _bytes(field: str, v: Any) -> None:
    if type(v) is not bytes:
        raise _fail(field, "a byte string", v)


def _list(item: Check, limit: int = MAX_ITEMS, min_len: int = 0) -> Check:
    def check(field: str, v: Any) -> None:
        if type(v) is not list:
            raise _fail(field, "an array", v)
        if not min_len <= len(v) <= limit:
            raise ProtocolError(f"field '{field}' has {len(v):,} items; {min_len} to {limit:,} allowed")
        for i, x in enumerate(v):
            item(f"{field}[{i}]", x)
    return check


_SCALARS = frozenset((type(None), bool, int, float, str, bytes))


def check_value(field: str, v: Any, depth: int = 0) -> None:
    """A reducer argument: null, bool, integer, float, text, bytes, or an array of those."""
    t = type(v)
    if t in _SCALARS:
        return
    if t is list:
        if depth >= MAX_DEPTH:
            raise ProtocolError(f"field '{field}' is nested more than {MAX_DEPTH} deep")
        if len(v) > MAX_ITEMS:
            raise ProtocolError(f"field '{field}' has {len(v):,} items; at most {MAX_ITEMS:,}")
        for i, x in enumerate(v):
            if type(x) not in _SCALARS:         # (a scalar needs no check, nor a name)
                check_value(f"{field}[{i}]", x, depth + 1)
        return
    raise ProtocolError(f"field '{field}': a {t.__name__} is not a value stdb stores",
                        hint="arguments are null, booleans, integers, floats, text, bytes or arrays")


def _bool(field: str, v: Any) -> None:
    if type(v) is not bool:
        raise _fail(field, "a boolean", v)


def _args(field: str, v: Any) -> None:
    if type(v) is not list:
        raise _fail(field, "an array of the reducer's arguments", v)
    check_value(field, v)


def _settings(field: str, v: Any) -> None:
    if type(v) is not dict:
        raise _fail(field, "a map of setting → number or null", v)
    if len(v) > 64:
        raise ProtocolError(f"field '{field}' has {len(v):,} entries; at most 64")
    for k, x in v.items():
        if type(k) is not str or len(k) > 64:
            raise _fail(f"{field} key", "a setting's name (text, at most 64 characters)", k)
        if x is not None and (type(x) not in (int, float)):
            raise _fail(f"{field}[{k[:40]!r}]", "a number or null", x)


_NAME = _str(128)
_SQL = _str(64 * 1024)

# type -> {field: check}; every field is required ("request_id" answers name the request)
CLIENT_MESSAGES: dict[str, dict[str, Check]] = {
    "Subscribe": {"request_id": _uint, "queries": _list(_SQL, MAX_QUERIES, 1)},
    "Unsubscribe": {"request_id": _uint, "query_ids": _list(_uint, min_len=1)},
    "CallReducer": {"request_id": _uint, "reducer": _NAME, "args": _args},
    "OneOffQuery": {"request_id": _uint, "sql": _SQL},
    "Publish": {"request_id": _uint, "wasm": _bytes},
    "Describe": {"request_id": _uint},
    "Logs": {"request_id": _uint, "limit": _uint, "follow": _bool},
    "DeleteDatabase": {"request_id": _uint},
    "Snapshot": {"request_id": _uint},
    "Settings": {"request_id": _uint, "set": _settings},
}

# the fields each server message has (documentation and the client's check)
SERVER_MESSAGES: dict[str, tuple[str, ...]] = {
    "IdentityToken": ("identity", "token", "connection_id", "database"),
    "SubscribeApplied": ("request_id", "queries"),
    "UnsubscribeApplied": ("request_id", "query_ids"),
    "TransactionUpdate": ("offset", "timestamp", "reducer", "caller", "status", "message", "request_id",
                          "updates"),
    "OneOffQueryResult": ("request_id", "columns", "rows", "plan"),
    "PublishResult": ("request_id", "created_tables", "altered_tables", "reducers", "unsubscribed"),
    "DescribeResult": ("request_id", "database", "module"),
    "LogsResult": ("request_id", "entries"),
    "DeleteResult": ("request_id", "database"),
    "SnapshotResult": ("request_id", "offset", "rows", "bytes"),
    "SettingsResult": ("request_id", "settings"),
    "Error": ("request_id", "code", "detail", "hint"),
}


def encode(type_: str, **fields: Any) -> bytes:
    """One message as CBOR bytes (tuples go out as arrays)."""
    fields["type"] = type_
    try:
        return cbor2.dumps(fields)
    except (cbor2.CBOREncodeError, TypeError, ValueError) as e:
        raise ProtocolError(f"cannot encode a {type_} message: {e}") from None


def _loads(data: Any) -> dict:
    if isinstance(data, str):
        raise ProtocolError("text frames are not part of the protocol; send CBOR in binary frames")
    if not isinstance(data, (bytes, bytearray)):
        raise ProtocolError(f"a message is bytes, got {type(data).__name__}")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"the message is {len(data):,} bytes; at most {MAX_MESSAGE_BYTES:,}")
    try:
        # no tag decoding beyond cbor2's defaults can produce a known message shape: anything
        # that decodes to other types is refused by the field checks below
        msg = cbor2.loads(bytes(data))
    except Exception as e:            # cbor2 raises CBORDecodeError, but also ValueError & co.
        raise ProtocolError(f"the message is not valid CBOR: {type(e).__name__}: {str(e)[:200]}") from None
    if type(msg) is not dict:
        raise ProtocolError(f"a message is a CBOR map, got {type(msg).__name__}")
    t = msg.get("type")
    if type(t) is not str:
        raise ProtocolError("a message needs a text field 'type'")
    return msg


def decode_client(data: Any) -> dict:
    """A client's message, checked (see the module docstring); ProtocolError otherwise.  When
    the error is raised after ``request_id`` was read, the error carries it as ``request_id``."""
    msg = _loads(data)
    t = msg["type"]
    spec = CLIENT_MESSAGES.get(t)
    if spec is None:
        raise ProtocolError(f"unknown message type {t[:40]!r}", hint="one of " + ", ".join(CLIENT_MESSAGES))
    rid = msg.get("request_id")
    try:
        for k in msg:
            if k != "type" and k not in spec:
                raise ProtocolError(f"{t}: unknown field {str(k)[:40]!r}",
                                    hint="fields: " + ", ".join(spec))
        for k, check in spec.items():
            if k not in msg:
                raise ProtocolError(f"{t}: missing field '{k}'")
            check(k, msg[k])
    except ProtocolError as e:
        detail = e.detail if e.detail.startswith(f"{t}:") else f"{t}: {e.detail}"
        raise ProtocolError(detail, hint=e.hint, request_id=rid if type(rid) is int else None) from None
    return msg


def decode_server(data: Any) -> dict:
    """A server's message (the client side): CBOR map of a known type with its fields."""
    msg = _loads(data)
    fields = SERVER_MESSAGES.get(msg["type"])
    if fields is None:
        raise ProtocolError(f"unknown server message type {msg['type'][:40]!r}")
    missing = [f for f in fields if f not in msg]
    if missing:
        raise ProtocolError(f"{msg['type']}: missing field(s) {', '.join(missing)}")
    return msg
