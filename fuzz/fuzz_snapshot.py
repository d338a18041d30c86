"""Fuzz target: the snapshot reader (stdb/storage/snapshot.py) through recovery.

Input: one flags byte and the manifest (JSON), then chunks, each after ``SEP`` as a table
number byte, a chunk number byte and the chunk's bytes (``u32 length ‖ row`` records).  The
harness stores them in an LMDB environment (one per process, emptied for every input) the way
``write_snapshot`` does, under the offset the manifest names.  Random bytes never match the
BLAKE2b content hash, so with flag bit 0 set the harness writes the right hash into the
manifest first — the fuzzer then reaches the row decoding and the table inserts.

* ``list_snapshots``, ``verify_snapshot`` and ``recover`` (which loads the newest snapshot that
  verifies and skips a damaged one) raise nothing but ``StorageError``;
* a snapshot that loads gives tables whose row counts are the manifest's.

    python -m fuzz.fuzz_snapshot fuzz/corpus/snapshot -max_total_time=60
"""

from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import struct
import tempfile
from typing import Any

from fuzz._harness import fuzz, instrument_module, instrumented

with instrumented(__name__ == "__main__"):
    from stdb.errors import StorageError
    from stdb.storage import snapshot as sn
    from stdb.storage.lmdbenv import SNAP_DB, SNAPMETA_DB, Env
    from stdb.storage.recovery import recover

SEP = b"\n#chunk#\n"
FIX_HASH = 1
_OFF = struct.Struct(">Q")
_CHUNK_KEY = struct.Struct(">QHI")

_env: Env | None = None


def env() -> Env:
    global _env
    if _env is None:
        path = tempfile.mkdtemp(prefix="stdb-fuzz-snapshot-")
        atexit.register(shutil.rmtree, path, True)
        _env = Env(path, durable=False)
    return _env


def split(data: bytes) -> tuple[int, bytes, list[tuple[int, int, bytes]]]:
    """(flags, manifest bytes, [(table number, chunk number, chunk)]) of an input."""
    head, *parts = data.split(SEP)
    flags, manifest = (head[0], head[1:]) if head else (0, b"")
    chunks = [(p[0], p[1], p[2:]) for p in parts if len(p) >= 2]
    return flags, manifest, chunks


def join(flags: int, manifest: bytes, chunks: list[tuple[int, int, bytes]]) -> bytes:
    """The input that ``split`` turns into these parts (seed corpus files are made by this)."""
    return SEP.join([bytes([flags]) + manifest] + [bytes([t, c]) + d for t, c, d in chunks])


def with_hash(manifest: bytes, chunks: list[tuple[int, int, bytes]]) -> bytes:
    """The manifest with the content hash verify_snapshot computes, when it is a JSON object
    with a list of tables; otherwise unchanged."""
    try:
        m = json.loads(manifest)
    except ValueError:
        return manifest
    if not isinstance(m, dict) or not isinstance(m.get("tables"), list):
        return manifest
    h = hashlib.blake2b(digest_size=32)
    h.update(sn._canonical(m))
    for tno in range(len(m["tables"])):
        for _, data in sorted((c, d) for t, c, d in chunks if t == tno):
            h.update(data)
    m["hash"] = h.hexdigest()
    return json.dumps(m, sort_keys=True).encode()


def _offset(manifest: bytes) -> int:
    try:
        off: Any = json.loads(manifest).get("offset")
    except (ValueError, AttributeError):
        return 0
    return off if type(off) is int and 0 <= off < 1 << 64 else 0


def TestOneInput(data: bytes) -> None:
    flags, manifest, chunks = split(data)
    if flags & FIX_HASH:
        manifest = with_hash(manifest, chunks)
    offset = _offset(manifest)
    e = env()

    def store(txn: Any) -> None:
        meta, cdb = e.db(SNAPMETA_DB), e.db(SNAP_DB)
        txn.drop(meta, delete=False)
        txn.drop(cdb, delete=False)
        txn.put(_OFF.pack(offset), manifest, db=meta)
        for tno, cno, chunk in chunks:
            txn.put(_CHUNK_KEY.pack(offset, tno, cno), chunk, db=cdb)

    e.write(store)
    try:
        sn.list_snapshots(e)
    except StorageError:
        pass
    try:
        m = sn.verify_snapshot(e, offset)
    except StorageError:
        m = None
    try:
        res = recover(e, repair=False)
    except StorageError:
        return
    if res.snapshot_offset is None:
        return
    assert m is not None, "recovery loaded a snapshot that does not verify"
    tables = res.datastore._tables
    for tm in m["tables"]:
        t = tables[tm["schema"]["name"]]
        assert len(list(t.scan())) == tm["rows"]


instrument_module(globals(), __name__ == "__main__")


def main() -> None:
    fuzz(TestOneInput)


if __name__ == "__main__":
    main()
