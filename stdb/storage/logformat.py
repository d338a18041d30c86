"""Commit-log records: encoding, decoding and integrity checks (docs/log-format.md).

A record is stored in LMDB under its tx offset (u64 big-endian) as::

    header (12 bytes): u8 version | u8 kind | u16 flags (0) | u32 body length | u32 CRC32C
    body            : depends on kind

The CRC32C covers the first 8 header bytes and the body, so a torn, truncated or
bit-flipped record never decodes.  All integers are little-endian.

kind 1, TX (a committed transaction)::

    u64 offset | i64 timestamp (µs since epoch)
    u8 has_caller | [32-byte caller identity]
    u16 reducer-name length | reducer name (UTF-8; empty when not from a reducer)
    u32 args length | args (row codec of the reducer's parameters)
    u16 table count, then per table:
        u16 name length | name | u32 deletes | u32 inserts |
        (u32 row length | row in the row codec) × (deletes + inserts), deletes first

kind 2, CREATE TABLE::   u64 offset | i64 timestamp | u32 length | schema as JSON (UTF-8)
kind 3, DROP TABLE::     u64 offset | i64 timestamp | u16 length | table name
"""

from __future__ import annotations

import functools
import json
import struct
from dataclasses import dataclass, field

import crc32c

from stdb._core.codec import read_framed
from stdb._core.logrec import record_kind, tx_body
from stdb._core.schema import TableSchema, schema_from_dict, schema_to_dict
from stdb.errors import DataError, SchemaError, StorageError

__all__ = [
    "FORMAT_VERSION", "KIND_TX", "KIND_CREATE_TABLE", "KIND_DROP_TABLE", "KIND_ALTER_TABLE", "HEADER_SIZE",
    "LogRecord", "TableChange", "encode_record", "tx_changes_start", "decode_record", "offset_key",
    "key_offset", "find_record_inside",
]

FORMAT_VERSION = 1
KIND_TX = 1
KIND_CREATE_TABLE = 2
KIND_DROP_TABLE = 3
KIND_ALTER_TABLE = 4
KIND_NAMES = {KIND_TX: "tx", KIND_CREATE_TABLE: "create_table", KIND_DROP_TABLE: "drop_table",
              KIND_ALTER_TABLE: "alter_table"}

_HEAD = struct.Struct("<BBHII")
HEADER_SIZE = _HEAD.size  # 12
_OFF_TS = struct.Struct("<Qq")
_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_TBL = struct.Struct("<II")
_KEY = KEY_STRUCT = struct.Struct(">Q")


def offset_key(offset: int) -> bytes:
    """The LMDB key of a tx offset: u64 big-endian, so keys sort by offset."""
    return _KEY.pack(offset)


def key_offset(key: bytes) -> int:
    if len(key) != 8:
        raise StorageError(f"commit log key of {len(key)} bytes (must be 8)")
    return _KEY.unpack(key)[0]


@dataclass
class TableChange:
    """Rows (row-codec bytes) deleted from and inserted into one table."""

    table: str
    deletes: list[bytes] = field(default_factory=list)
    inserts: list[bytes] = field(default_factory=list)


@dataclass
class LogRecord:
    offset: int
    timestamp: int
    kind: int = KIND_TX
    caller: bytes | None = None
    reducer: str = ""
    args: bytes = b""
    changes: list[TableChange] = field(default_factory=list)
    schema: TableSchema | None = None       # CREATE TABLE
    table: str = ""                         # DROP TABLE

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, str(self.kind))

    @property
    def row_ops(self) -> int:
        return sum(len(c.deletes) + len(c.inserts) for c in self.changes)


def _name(b: bytes | str) -> bytes:
    raw = b.encode() if isinstance(b, str) else b
    if len(raw) > 0xFFFF:
        raise StorageError("name longer than 65535 bytes in a log record")
    return _U16.pack(len(raw)) + raw


_name_cached = functools.lru_cache(maxsize=1024)(_name)   # table and reducer names repeat


def _framed(kind: int, body: bytes) -> bytes:
    head8 = _HEAD.pack(FORMAT_VERSION, kind, 0, len(body), 0)[:8]
    return head8 + _U32.pack(crc32c.crc32c(body, crc32c.crc32c(head8))) + body


def encode_tx(offset: int, timestamp: int, caller: bytes | None, reducer: str, args: bytes,
              changes: list[TableChange]) -> bytes:
    """The stored bytes of a transaction record (``encode_record`` of a KIND_TX LogRecord,
    without building one: the commit path calls this for every commit)."""
    if caller is None:
        who = b"\x00"
    else:
        if len(caller) != 32:
            raise StorageError(f"caller identity of {len(caller)} bytes (must be 32)")
        who = b"\x01" + bytes(caller)
    u32 = _U32.pack
    parts = [_OFF_TS.pack(offset, timestamp), who, _name_cached(reducer), u32(len(args)), args,
             _U16.pack(len(changes))]
    append = parts.append
    for ch in changes:
        append(_name_cached(ch.table))
        append(_TBL.pack(len(ch.deletes), len(ch.inserts)))
        for row in ch.deletes:
            append(u32(len(row)))
            append(row)
        for row in ch.inserts:
            append(u32(len(row)))
            append(row)
    return _framed(KIND_TX, b"".join(parts))


def tx_changes_start(rec: LogRecord) -> int:
    """Where the table sections of transaction record ``rec``'s encoding begin (after its
    number of tables)."""
    return (HEADER_SIZE + 8 + 8 + 1 + (32 if rec.caller is not None else 0) + 2 + len(rec.reducer.encode())
            + 4 + len(rec.args) + 2)


def encode_record(rec: LogRecord) -> bytes:
    """The stored bytes of a record (header + body)."""
    if rec.kind == KIND_TX:
        return encode_tx(rec.offset, rec.timestamp, rec.caller, rec.reducer, rec.args, rec.changes)
    parts = [_OFF_TS.pack(rec.offset, rec.timestamp)]
    if rec.kind in (KIND_CREATE_TABLE, KIND_ALTER_TABLE):
        if rec.schema is None:
            raise StorageError(f"a {KIND_NAMES[rec.kind]} record needs a schema")
        js = json.dumps(schema_to_dict(rec.schema), separators=(",", ":"), sort_keys=True).encode()
        parts.append(_U32.pack(len(js)))
        parts.append(js)
    elif rec.kind == KIND_DROP_TABLE:
        parts.append(_name(rec.table))
    else:
        raise StorageError(f"unknown log record kind {rec.kind}")
    return _framed(rec.kind, b"".join(parts))


class _Reader:
    __slots__ = ("buf", "pos", "offset")

    def __init__(self, buf: memoryview, offset: int) -> None:
        self.buf = buf
        self.pos = 0
        self.offset = offset

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.buf):
            raise StorageError(f"log record at offset {self.offset} is truncated: needs {n} bytes at "
                               f"body byte {self.pos}, {len(self.buf) - self.pos} left")
        v = self.buf[self.pos:self.pos + n]
        self.pos += n
        return v

    def unpack(self, s: struct.Struct) -> tuple:
        return s.unpack(self.take(s.size))

    def name(self) -> str:
        (n,) = self.unpack(_U16)
        try:
            return str(self.take(n), "utf-8")
        except UnicodeDecodeError:
            raise StorageError(f"log record at offset {self.offset}: a name is not UTF-8") from None


def check_header(offset: int, value: bytes | memoryview) -> tuple[int, memoryview]:
    """Verify version, length and CRC; return (kind, body).  StorageError names what is wrong."""
    mv = memoryview(value)
    kind = record_kind(mv)           # the fast path (C); when it fails, the checks below say why
    if kind:
        return kind, mv[HEADER_SIZE:]
    if len(mv) < HEADER_SIZE:
        raise StorageError(f"log record at offset {offset} is {len(mv)} bytes, shorter than its header")
    version, kind, flags, length, crc = _HEAD.unpack(mv[:HEADER_SIZE])
    if version != FORMAT_VERSION:
        raise StorageError(f"log record at offset {offset} has format version {version}; "
                           f"this build reads version {FORMAT_VERSION}")
    if length != len(mv) - HEADER_SIZE:
        raise StorageError(f"log record at offset {offset}: header says {length} body bytes, "
                           f"{len(mv) - HEADER_SIZE} present (torn or truncated write)")
    body = mv[HEADER_SIZE:]
    actual = crc32c.crc32c(body, crc32c.crc32c(mv[:8]))
    if actual != crc:
        raise StorageError(f"log record at offset {offset} fails its CRC32C "
                           f"(stored {crc:#010x}, computed {actual:#010x})")
    if kind not in KIND_NAMES or flags != 0:
        raise StorageError(f"log record at offset {offset} has unknown kind {kind} / flags {flags}")
    return kind, body


def find_record_inside(damaged: bytes | memoryview) -> int | None:
    """The offset claimed by the first intact record starting at byte 1 or later of
    ``damaged`` (a piece of a log value that fails its checks), or None.

    Recovery uses it to tell a torn tail from damage in the middle of a value: a record that
    passes its CRC after the damage was committed, so the damage is not a torn write."""
    data = bytes(damaged)
    n = len(data)
    version = bytes([FORMAT_VERSION])
    p = data.find(version, 1)
    while 0 <= p <= n - HEADER_SIZE - _OFF_TS.size:
        _, kind, flags, length, crc = _HEAD.unpack_from(data, p)
        end = p + HEADER_SIZE + length
        if kind in KIND_NAMES and flags == 0 and _OFF_TS.size <= length and end <= n:
            if crc32c.crc32c(data[p + HEADER_SIZE:end], crc32c.crc32c(data[p:p + 8])) == crc:
                return int(_OFF_TS.unpack_from(data, p + HEADER_SIZE)[0])
        p = data.find(version, p + 1)
    return None


def decode_record(offset: int, value: bytes | memoryview) -> LogRecord:
    """Decode and verify a stored record; StorageError on any damage, never a partial record."""
    kind, body = check_header(offset, value)
    if kind == KIND_TX:
        # the fast path (C); a body it cannot parse is parsed again by _decode_body, which
        # says what is wrong
        fast = tx_body(body)
        if fast is not None and fast[0] == offset:
            off, ts, caller, reducer, args, changes = fast
            return LogRecord(offset=off, timestamp=ts, kind=kind, caller=caller, reducer=reducer,
                             args=args, changes=[TableChange(*ch) for ch in changes])
    return _decode_body(offset, kind, body)


def _decode_body(offset: int, kind: int, body: memoryview) -> LogRecord:
    """The body of a record whose header checked out, parsed step by step (every error names
    the offset and what is wrong)."""
    r = _Reader(body, offset)
    off, ts = r.unpack(_OFF_TS)
    if off != offset:
        raise StorageError(f"log record stored under offset {offset} says it is offset {off}")
    rec = LogRecord(offset=off, timestamp=ts, kind=kind)
    if kind == KIND_TX:
        (has_caller,) = r.unpack(_U8)
        if has_caller > 1:
            raise StorageError(f"log record at offset {offset}: bad caller flag {has_caller}")
        rec.caller = bytes(r.take(32)) if has_caller else None
        rec.reducer = r.name()
        (nargs,) = r.unpack(_U32)
        rec.args = bytes(r.take(nargs))
        (ntables,) = r.unpack(_U16)
        for _ in range(ntables):
            name = r.name()
            nd, ni = r.unpack(_TBL)
            try:
                dels, r.pos = read_framed(body, r.pos, nd)
                ins, r.pos = read_framed(body, r.pos, ni)
            except DataError as e:
                raise StorageError(f"log record at offset {offset}, table '{name}': {e.detail}") from None
            rec.changes.append(TableChange(name, dels, ins))
    elif kind in (KIND_CREATE_TABLE, KIND_ALTER_TABLE):
        (n,) = r.unpack(_U32)
        try:
            rec.schema = schema_from_dict(json.loads(bytes(r.take(n))))
        except (ValueError, SchemaError) as e:
            raise StorageError(f"log record at offset {offset}: bad table schema ({e})") from None
    else:
        rec.table = r.name()
    if r.pos != len(body):
        raise StorageError(f"log record at offset {offset}: {len(body) - r.pos} bytes after its end")
    return rec
