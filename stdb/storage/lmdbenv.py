"""The one module that talks to LMDB: opening a database's environment, growing its map,
and translating lmdb's exceptions into StorageError."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import lmdb

from stdb.errors import StorageError

__all__ = ["Env", "LOG_DB", "SNAP_DB", "SNAPMETA_DB", "META_DB"]

LOG_DB = b"log"
SNAP_DB = b"snapshot_chunks"
SNAPMETA_DB = b"snapshots"
META_DB = b"meta"
_DBS = (LOG_DB, SNAP_DB, SNAPMETA_DB, META_DB)

INITIAL_MAP = 64 << 20
MAX_MAP = 1 << 40

T = TypeVar("T")


class Env:
    """An LMDB environment holding one database's log, snapshots and metadata.

    ``durable``: every write transaction is fsync'd at commit (LMDB ``sync=True``,
    ``metasync=True``: the data pages are flushed before the meta page that makes them the
    current tree is written, and that write is synchronous too).  Otherwise (LMDB ``MDB_NOSYNC``)
    the caller syncs with :meth:`sync`; a process crash loses nothing LMDB wrote, but a machine
    crash before the sync can lose those transactions and, on a filesystem that does not keep
    the order of writes, leave the file inconsistent (LMDB's documented NOSYNC risk).
    """

    def __init__(self, path: str, *, readonly: bool = False, durable: bool = True,
                 map_size: int = INITIAL_MAP) -> None:
        self.path = path
        self.readonly = readonly
        self.durable = durable and not readonly
        # one write transaction at a time in this process, so that growing the map (which
        # LMDB allows only with no transaction active) never races another writer
        self._wlock = threading.Lock()
        if not readonly:
            os.makedirs(path, exist_ok=True)
        elif not os.path.exists(os.path.join(path, "data.mdb")):
            raise StorageError(f"no database at {path!r} (data.mdb is missing)")
        try:
            self.env = lmdb.open(path, map_size=map_size, max_dbs=8, subdir=True, readonly=readonly,
                                 sync=durable, metasync=durable, lock=True, readahead=False,
                                 map_async=False, max_readers=64)
        except lmdb.Error as e:
            raise StorageError(f"cannot open the database at {path!r}: {e}") from None
        try:
            if readonly:
                self.dbs = {name: self.env.open_db(name, create=False) for name in _DBS}
            else:
                self.dbs = {name: self.env.open_db(name) for name in _DBS}
        except lmdb.NotFoundError:
            self.env.close()
            raise StorageError(f"{path!r} is not an stdb database (its sub-databases are missing)") from None
        except lmdb.Error as e:
            self.env.close()
            raise StorageError(f"cannot open the sub-databases at {path!r}: {e}") from None

    def close(self) -> None:
        self.env.close()

    def db(self, name: bytes) -> Any:
        return self.dbs[name]

    @contextmanager
    def read(self) -> Iterator[lmdb.Transaction]:
        try:
            with self.env.begin(buffers=True) as txn:
                yield txn
        except lmdb.Error as e:
            raise StorageError(f"reading {self.path!r} failed: {e}") from None

    def write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run ``fn`` in one write transaction; grow the map and retry when it is full."""
        if self.readonly:
            raise StorageError(f"{self.path!r} is open read-only")
        while True:
            try:
                with self._wlock, self.env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                size = self.env.info()["map_size"]
                if size >= MAX_MAP:
                    raise StorageError(f"the database at {self.path!r} reached its maximum size "
                                       f"({size} bytes)") from None
                with self._wlock:
                    self.env.set_mapsize(min(size * 2, MAX_MAP))
            except lmdb.Error as e:
                raise StorageError(f"writing to {self.path!r} failed: {e}{self._free_space()}") from None

    def sync(self) -> None:
        """Force everything written so far to disk."""
        try:
            self.env.sync(True)
        except lmdb.Error as e:
            raise StorageError(f"fsync of {self.path!r} failed: {e}{self._free_space()}") from None

    def _free_space(self) -> str:
        """For an I/O error's message: LMDB reports a full disk (or a file size limit) as a
        plain I/O error, so say how much room the filesystem has left."""
        try:
            st = os.statvfs(self.path)
        except OSError:
            return ""
        return f" ({st.f_bavail * st.f_frsize:,} bytes free on its filesystem)"

    def map_size(self) -> int:
        return int(self.env.info()["map_size"])
