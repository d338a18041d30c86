"""The client protocol: CBOR messages over a websocket (docs/protocol.md).

Shared by the server and the client SDK (the client never loads the engine).  A message is one
websocket binary frame holding one CBOR map with a ``"type"`` and that type's fields.
``decode_client`` checks everything a client sends — the frame is CBOR, a map, of a known type,
every field present with the right type and within limits, nothing unknown — and raises a
ProtocolError naming the problem otherwise; the server answers it with an ``Error`` and changes
nothing.  ``encode`` builds a message from fields (the sender's values are trusted).
``split_message`` cuts a result larger than a client's ``max_message`` into parts and
``join_parts`` puts them back together (docs/protocol.md, "Large results: parts").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cbor2

from stdb.errors import ProtocolError, QueryError

__all__ = ["SUBPROTOCOL", "VERSION", "CLIENT_MESSAGES", "SERVER_MESSAGES", "MAX_MESSAGE_BYTES",
           "MIN_MAX_MESSAGE", "PARTED", "encode", "decode_client", "decode_server", "check_value",
           "check_max_message", "split_message", "join_parts"]

VERSION = 1
SUBPROTOCOL = f"v{VERSION}.cbor.stdb"      # the websocket subprotocol a client must ask for
MAX_MESSAGE_BYTES = 16 << 20               # one frame / message, either way
MIN_MAX_MESSAGE = 64 << 10                 # the smallest ?max_message a client may announce
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
    "SubscribeApplied": ("request_id", "queries", "more"),
    "UnsubscribeApplied": ("request_id", "query_ids"),
    "TransactionUpdate": ("offset", "timestamp", "reducer", "caller", "status", "message", "request_id",
                          "updates", "more"),
    "OneOffQueryResult": ("request_id", "columns", "rows", "plan", "more"),
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


# ---- large results: parts (docs/protocol.md, "Large results: parts")

# the messages the server may send in parts: type -> (the field that is cut, the row lists of
# each of its entries; () when the field holds the rows themselves).  Each part has the same
# other fields; ``more`` is true on every part but the last.
PARTED: dict[str, tuple[str, tuple[str, ...]]] = {
    "OneOffQueryResult": ("rows", ()),
    "SubscribeApplied": ("queries", ("rows",)),
    "TransactionUpdate": ("updates", ("deletes", "inserts")),
}
_ENTRY_KEY = "query_id"         # an entry continued across a cut has the same one on both sides


def check_max_message(v: Any) -> int:
    """A client's ``max_message`` (the URL parameter's text, or an int): a whole number of
    bytes from MIN_MAX_MESSAGE to MAX_MESSAGE_BYTES; ProtocolError naming the range otherwise."""
    n = v
    if type(v) is str:
        n = int(v) if v.isascii() and v.isdigit() and len(v) <= 12 else None
    if type(n) is not int or not MIN_MAX_MESSAGE <= n <= MAX_MESSAGE_BYTES:
        raise ProtocolError(f"max_message must be a whole number of bytes from {MIN_MAX_MESSAGE:,} to "
                            f"{MAX_MESSAGE_BYTES:,}, got {str(v)[:40]!r}")
    return n


def _head(major: int, n: int) -> bytes:
    """A CBOR head in its shortest form (as cbor2 writes it)."""
    if n < 24:
        return bytes((major << 5 | n,))
    for ai, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * width):
            return bytes((major << 5 | ai,)) + n.to_bytes(width, "big")
    raise ProtocolError(f"a CBOR length of {n} does not fit 64 bits")


def _head_len(n: int) -> int:
    return 1 if n < 24 else 2 if n < 0x100 else 3 if n < 0x10000 else 5 if n < 1 << 32 else 9


def _pair(key: str, value: Any) -> bytes:
    return cbor2.dumps(key) + cbor2.dumps(value)


def split_message(type_: str, fields: dict[str, Any], max_message: int) -> list[bytes]:
    """``encode(type_, **fields, more=...)`` cut into parts of at most ``max_message`` bytes each
    (one part, the whole message, when it fits).  The rows are encoded once and their sizes
    place the cuts; each part is exactly what ``encode`` writes for its fields.  QueryError
    when a row, with what must go along with it, is larger than ``max_message`` on its own."""
    return _Cutter(type_, fields, max_message).parts()


class _Cutter:
    """One message laid out for cutting.  It is a run of tokens — each row, and in a message
    of entries (PARTED: SubscribeApplied's queries, TransactionUpdate's updates) each entry's
    own fields before its rows — and a part is a range of them.  A part's size is exact: the
    message's other fields, the array heads, and each entry it touches in full (an entry cut
    in two repeats its fields in both parts)."""

    def __init__(self, type_: str, fields: dict[str, Any], limit: int) -> None:
        field, lists = PARTED[type_]
        self.limit = limit
        self.nested = bool(lists)
        keys = list(fields)
        at = keys.index(field)
        self.before = _head(5, len(keys) + 2) + b"".join(_pair(k, fields[k]) for k in keys[:at]) \
            + cbor2.dumps(field)
        after = b"".join(_pair(k, fields[k]) for k in keys[at + 1:])
        self.after = {more: after + _pair("more", more) + _pair("type", type_) for more in (True, False)}
        self.fixed = len(self.before) + len(self.after[False]) + (1 if self.nested else 0)
        # per entry: its bytes between row lists (bytes) and where each list goes (int), their
        # constant size, its query id, each list's encoded rows and first token
        self.segs: list[list[bytes | int]] = []
        self.const: list[int] = []
        self.key: list[Any] = []
        self.rows: list[list[list[bytes]]] = []
        self.first: list[list[int]] = []
        # per token: its entry, its list (-1: the entry's own fields), its size
        self.ent: list[int] = []
        self.lst: list[int] = []
        self.size: list[int] = []
        self.nlists = max(1, len(lists))
        if self.nested:
            for entry in fields[field]:
                self._add_entry(entry, lists)
        else:
            self._add_rows(0, 0, fields[field])
            self.segs.append([0])
            self.const.append(0)
            self.key.append(None)

    def _add_entry(self, entry: dict[str, Any], lists: tuple[str, ...]) -> None:
        e = len(self.segs)
        self.ent.append(e)
        self.lst.append(-1)
        self.size.append(0)
        segs: list[bytes | int] = []
        const = bytearray(_head(5, len(entry)))
        for k, v in entry.items():
            if k in lists:
                const += cbor2.dumps(k)
                segs += [bytes(const), lists.index(k)]
                const = bytearray()
            else:
                const += _pair(k, v)
        segs.append(bytes(const))
        self.segs.append(segs)
        self.const.append(sum(len(s) for s in segs if type(s) is bytes))
        self.key.append(entry.get(_ENTRY_KEY))
        for j, name in enumerate(lists):
            self._add_rows(e, j, entry[name])

    def _add_rows(self, e: int, j: int, rows: list) -> None:
        if j == 0:
            self.rows.append([])
            self.first.append([])
        enc = [cbor2.dumps(r) for r in rows]
        self.rows[e].append(enc)
        self.first[e].append(len(self.ent))
        self.ent += [e] * len(enc)
        self.lst += [j] * len(enc)
        self.size += map(len, enc)

    def parts(self) -> list[bytes]:
        ranges = []
        a, n = 0, len(self.ent)
        empty = self.fixed + (0 if self.nested else 1)
        if empty > self.limit:
            raise QueryError(f"the message without its rows is {empty:,} bytes: over the client's "
                             f"max_message of {self.limit:,} bytes")
        if not n:
            ranges.append((0, 0))
        while a < n:
            b = self._cut(a, self._fits(a))
            ranges.append((a, b))
            a = b
        return [self._encode(a, b, i + 1 < len(ranges)) for i, (a, b) in enumerate(ranges)]

    def _fits(self, a: int) -> int:
        """The end of the longest run of tokens from ``a`` that fits in one part."""
        ent, lst, size, limit, nested = self.ent, self.lst, self.size, self.limit, self.nested
        total = self.fixed
        pieces, cur = 0, -1
        counts = [0] * self.nlists
        for b in range(a, len(ent)):
            e = ent[b]
            add = 0
            if e != cur:            # the entry's fields (again, when it continues a cut one)
                cur = e
                counts = [0] * self.nlists
                pieces += 1
                add = self.const[e] + self.nlists
                if nested:
                    add += _head_len(pieces) - _head_len(pieces - 1)
            j = lst[b]
            if j >= 0:
                c = counts[j]
                counts[j] = c + 1
                add += size[b] + _head_len(c + 1) - _head_len(c)
            if total + add > limit:
                return b
            total += add
        return len(ent)

    def _cut(self, a: int, b: int) -> int:
        """Where the part from ``a`` ends, given that ``b`` is as far as it fits: not right after
        an entry's own fields when its rows follow, and never between two entries with the same
        query id (a reader would take them for one entry continued)."""
        if b == len(self.ent):
            return b
        if b == a:
            raise self._too_big(a)
        lst = self.lst
        c = b
        if self.nested and lst[c - 1] == -1 and lst[c] != -1 and c - 1 > a:
            c -= 1
        while c > a and self.nested and lst[c] == -1 and self.key[self.ent[c]] == self.key[self.ent[c] - 1]:
            c -= 1
        if c == a:
            raise QueryError(f"two entries side by side with the same {_ENTRY_KEY} ({self.key[self.ent[b]]}) "
                             f"cannot be sent in parts of at most {self.limit:,} bytes: the part between "
                             "them would need both their own fields and a row",
                             hint="connect with a larger max_message, or name a query once per Subscribe")
        return c

    def _too_big(self, a: int) -> QueryError:
        need = len(self._encode(a, a + 1, False))
        if self.lst[a] == -1:
            what = f"entry {self.ent[a]}'s own fields (e.g. its SQL text) take {need:,} bytes"
        else:
            what = f"a row of {self.size[a]:,} bytes ({need:,} with the message's other fields)"
        return QueryError(f"{what}: over the client's max_message of {self.limit:,} bytes, and a row "
                          "is never cut", hint="connect with a larger max_message (at most "
                          f"{MAX_MESSAGE_BYTES:,}), or select fewer or smaller columns")

    def _encode(self, a: int, b: int, more: bool) -> bytes:
        out = [self.before]
        if self.nested:
            out.append(_head(4, self.ent[b - 1] - self.ent[a] + 1 if b > a else 0))
        for e in range(self.ent[a], self.ent[b - 1] + 1) if b > a else (() if self.nested else (0,)):
            for seg in self.segs[e]:
                if isinstance(seg, bytes):
                    out.append(seg)
                    continue
                rows = self.rows[e][seg]
                lo = self.first[e][seg]
                r0 = min(max(a - lo, 0), len(rows))
                r1 = max(min(b - lo, len(rows)), r0)
                out.append(_head(4, r1 - r0))
                out += rows[r0:r1]
        out.append(self.after[more])
        return b"".join(out)


def join_parts(parts: list[dict]) -> dict:
    """The message that ``parts`` (decoded, in order; ``more`` true on all but the last) were
    cut from: the rows concatenated, an entry continued across a cut made whole again (the
    first entry of a part continues the previous part's last when their query ids are equal)."""
    msg = dict(parts[0])
    msg["more"] = False
    field, lists = PARTED[msg["type"]]
    if not lists:
        msg[field] = [r for p in parts for r in p[field]]
        return msg
    entries: list[dict] = []
    for i, p in enumerate(parts):
        items = p[field]
        if i and items and entries and items[0].get(_ENTRY_KEY) == entries[-1].get(_ENTRY_KEY):
            for name in lists:
                entries[-1][name].extend(items[0][name])
            items = items[1:]
        entries += ({k: list(v) if k in lists else v for k, v in x.items()} for x in items)
    msg[field] = entries
    return msg
