"""Snapshots: every table's rows at one tx offset, in chunks, with a content hash.

Stored in the database's LMDB environment (docs/log-format.md, "Snapshots"):

* ``snapshots`` sub-database: key = offset (u64 big-endian) → manifest, UTF-8 JSON::

      {"format": 1, "offset": N, "created_us": T, "hash": "<blake2b-256 hex>",
       "tables": [{"schema": {...}, "sequences": [...], "rows": R, "chunks": C, "bytes": B}, ...]}

* ``snapshot_chunks`` sub-database: key = offset (u64 BE) ‖ table number (u16 BE) ‖
  chunk number (u32 BE) → chunk = (u32 LE length ‖ row in the row codec) repeated.

The hash is BLAKE2b-256 over the canonical JSON of the manifest without its "hash" field,
then every chunk in key order.  A snapshot whose hash does not verify is never loaded.
"""

from __future__ import annotations

import hashlib
import json
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from stdb._core.codec import count_framed
from stdb._core.schema import TableSchema, schema_from_dict, schema_to_dict
from stdb.errors import SchemaError, StdbError, StorageError
from stdb.storage.lmdbenv import SNAP_DB, SNAPMETA_DB, Env

__all__ = ["SnapshotInfo", "write_snapshot", "list_snapshots", "load_snapshot", "delete_snapshot",
           "verify_snapshot", "CHUNK_BYTES"]

FORMAT = 1
CHUNK_BYTES = 1 << 20
_OFF = struct.Struct(">Q")
_CHUNK_KEY = struct.Struct(">QHI")


@dataclass
class SnapshotInfo:
    offset: int
    created_us: int
    hash: str
    tables: list[dict[str, Any]]
    manifest_bytes: int

    @property
    def rows(self) -> int:
        return sum(t["rows"] for t in self.tables)

    @property
    def bytes(self) -> int:
        return sum(t["bytes"] for t in self.tables)


def _canonical(manifest: dict) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def write_snapshot(env: Env, offset: int, tables: list[Any]) -> SnapshotInfo:
    """Write a snapshot of ``tables`` (engine tables) as the state after record ``offset``."""
    h = hashlib.blake2b(digest_size=32)
    chunks: list[tuple[bytes, bytes]] = []
    metas = []
    for tno, t in enumerate(tables):
        table_chunks, nrows = t.framed_chunks(CHUNK_BYTES)
        for cno, data in enumerate(table_chunks):
            chunks.append((_CHUNK_KEY.pack(offset, tno, cno), data))
        metas.append({"schema": schema_to_dict(t.schema), "sequences": list(t.sequence_state()),
                      "rows": nrows, "chunks": len(table_chunks), "bytes": sum(map(len, table_chunks))})
    manifest: dict[str, Any] = {"format": FORMAT, "offset": offset,
                                "created_us": time.time_ns() // 1000, "tables": metas}
    h.update(_canonical(manifest))
    for _, data in chunks:
        h.update(data)
    manifest["hash"] = h.hexdigest()
    mbytes = json.dumps(manifest, sort_keys=True).encode()

    def put(txn):
        cdb = env.db(SNAP_DB)
        for key, data in chunks:
            txn.put(key, data, db=cdb)
        txn.put(_OFF.pack(offset), mbytes, db=env.db(SNAPMETA_DB))

    env.write(put)
    return SnapshotInfo(offset, manifest["created_us"], manifest["hash"], metas, len(mbytes))


def _is_count(v: Any) -> bool:
    return type(v) is int and v >= 0


def _parse_manifest(offset: int, raw: bytes) -> dict:
    try:
        m = json.loads(raw)
        if m["format"] != FORMAT or m["offset"] != offset or not isinstance(m["tables"], list):
            raise ValueError("format, offset or tables do not match")
        for i, tm in enumerate(m["tables"]):
            if not (isinstance(tm, dict) and isinstance(tm.get("schema"), dict)
                    and all(_is_count(tm.get(k)) for k in ("rows", "chunks", "bytes"))
                    and isinstance(tm.get("sequences"), list) and all(map(_is_count, tm["sequences"]))):
                raise ValueError(f"table {i} is not schema, sequences, rows, chunks and bytes")
        return m
    except (ValueError, KeyError, TypeError) as e:
        raise StorageError(f"snapshot at offset {offset}: manifest is damaged ({e})") from None


def list_snapshots(env: Env) -> list[SnapshotInfo]:
    """Every snapshot whose manifest parses, newest first (a damaged manifest is skipped here
    and reported by ``verify_snapshot``)."""
    out = []
    with env.read() as txn:
        for key, value in txn.cursor(db=env.db(SNAPMETA_DB)):
            off = _OFF.unpack(bytes(key))[0]
            try:
                m = _parse_manifest(off, bytes(value))
            except StorageError:
                out.append(SnapshotInfo(off, 0, "", [], len(value)))
                continue
            out.append(SnapshotInfo(off, m.get("created_us", 0), m.get("hash", ""), m["tables"], len(value)))
    out.sort(key=lambda s: s.offset, reverse=True)
    return out


def snapshot_offsets(env: Env) -> list[int]:
    with env.read() as txn:
        return sorted((_OFF.unpack(bytes(k))[0] for k, _ in txn.cursor(db=env.db(SNAPMETA_DB))),
                      reverse=True)


def _chunks(txn, env: Env, offset: int, tno: int) -> Iterator[tuple[int, bytes]]:
    cur = txn.cursor(db=env.db(SNAP_DB))
    prefix = struct.pack(">QH", offset, tno)
    if not cur.set_range(prefix):
        return
    for key, value in cur:
        key = bytes(key)
        if not key.startswith(prefix):
            return
        yield _CHUNK_KEY.unpack(key)[2], bytes(value)


def verify_snapshot(env: Env, offset: int) -> dict:
    """Check a snapshot's manifest, chunk numbering, row framing and content hash.

    Returns the manifest; raises StorageError naming what is wrong."""
    with env.read() as txn:
        raw = txn.get(_OFF.pack(offset), db=env.db(SNAPMETA_DB))
        if raw is None:
            raise StorageError(f"no snapshot at offset {offset}")
        m = _parse_manifest(offset, bytes(raw))
        h = hashlib.blake2b(digest_size=32)
        h.update(_canonical(m))
        for tno, tm in enumerate(m["tables"]):
            expect = 0
            rows = 0
            for cno, data in _chunks(txn, env, offset, tno):
                if cno != expect:
                    raise StorageError(f"snapshot at offset {offset}: table {tno} chunk {expect} is missing")
                rows += _count_rows(offset, tno, cno, data)
                h.update(data)
                expect += 1
            if expect != tm["chunks"] or rows != tm["rows"]:
                name = tm["schema"].get("name")
                raise StorageError(f"snapshot at offset {offset}: table '{name}' has {expect} chunks / "
                                   f"{rows} rows, manifest says {tm['chunks']} / {tm['rows']}")
    if h.hexdigest() != m.get("hash"):
        raise StorageError(f"snapshot at offset {offset} fails its content hash")
    return m


def _count_rows(offset: int, tno: int, cno: int, data: bytes) -> int:
    n = count_framed(data)
    if n < 0:
        raise StorageError(f"snapshot at offset {offset}: table {tno} chunk {cno} is truncated")
    return n


def load_snapshot(env: Env, offset: int, make_table: Callable[[TableSchema], Any],
                  on_rows: Callable[[int], None] | None = None) -> list[Any]:
    """Verify, then build the tables of a snapshot with ``make_table(schema)``."""
    m = verify_snapshot(env, offset)
    tables = []
    names: set[str] = set()
    with env.read() as txn:
        for tno, tm in enumerate(m["tables"]):
            try:
                schema = schema_from_dict(tm["schema"])
            except SchemaError as e:
                raise StorageError(f"snapshot at offset {offset}: bad schema ({e.detail})") from None
            if schema.name in names:
                raise StorageError(f"snapshot at offset {offset}: table '{schema.name}' appears twice")
            names.add(schema.name)
            t = make_table(schema)
            # the hash only says the snapshot is what was written: rows that do not decode or
            # fit the table, or sequences of the wrong shape, still make it damaged.  Rows go in
            # exactly as stored (an auto-increment column holding 0 is not given a new value)
            reserve = getattr(t, "reserve", None)     # native tables: indexes sized once
            if reserve is not None:
                reserve(tm["rows"])                     # verified above to be the chunks' count
            try:
                for _, data in _chunks(txn, env, offset, tno):
                    n = t.load_framed(data)
                    if on_rows:
                        on_rows(n)
                t.restore_sequences(tuple(tm["sequences"]))
            except StdbError as e:
                raise StorageError(f"snapshot at offset {offset}: table '{schema.name}' does not load "
                                   f"({e.detail})") from None
            tables.append(t)
    return tables


def delete_snapshot(env: Env, offset: int) -> None:
    def rm(txn):
        txn.delete(_OFF.pack(offset), db=env.db(SNAPMETA_DB))
        cur = txn.cursor(db=env.db(SNAP_DB))
        prefix = _OFF.pack(offset)
        if cur.set_range(prefix):
            while cur.key() and bytes(cur.key()).startswith(prefix):
                if not cur.delete():
                    break

    env.write(rm)
