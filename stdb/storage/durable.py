"""A durable datastore: the in-memory engine plus its commit log and snapshots.

``DurableStore.open(path)`` recovers the state (snapshot + log tail), then every
committed transaction and every table creation is appended to the commit log.  A commit
returns its offset at once; ``wait_durable(offset)`` blocks until it is on disk.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stdb._core.schema import TableSchema
from stdb.errors import SchemaError, StdbError, StorageError, TransactionError
from stdb.progress import progress_bar
from stdb.storage import logformat as lf
from stdb.storage.commitlog import CommitLog, delete_log_through, log_bounds, mark_layout
from stdb.storage.datastore import Datastore, Transaction, TxDelta
from stdb.storage.lmdbenv import Env
from stdb.storage.recovery import RecoveryResult, apply_record, recover
from stdb.storage.snapshot import SnapshotInfo, delete_snapshot, list_snapshots, write_snapshot

__all__ = ["DurableStore", "Commit", "StoreConfig"]

log = logging.getLogger("stdb.store")


@dataclass
class StoreConfig:
    durability: str = "durable"          # or "relaxed"
    sync_interval: float = 0.05          # relaxed mode: seconds between fsyncs
    group_delay: float = 0.005           # durable mode under load: seconds between group starts
    group_siblings: int = 2              # ... when this many commits arrived during a group's write
    snapshot_every_txs: int | None = 100_000   # take a snapshot after this many log records
    snapshot_every_bytes: int | None = 256 << 20  # ... or this many log bytes
    keep_snapshots: int = 2
    compact_log: bool = False            # delete log records covered by the oldest kept snapshot
    map_size: int = 64 << 20             # initial LMDB map size; it doubles whenever it fills up


@dataclass
class Commit:
    offset: int | None                   # None when the transaction changed nothing
    delta: TxDelta


class DurableStore:
    def __init__(self, path: str, config: StoreConfig | None = None, *,
                 table_factory: Callable | None = None, progress: bool = True) -> None:
        self.path = path
        self.config = config or StoreConfig()
        # durable mode: LMDB fsyncs each write transaction (data, then the meta page), so no
        # machine crash can leave the file pointing at pages that never reached the disk
        self.env = Env(path, durable=self.config.durability == "durable", map_size=self.config.map_size)
        try:
            self.recovery: RecoveryResult = self._recover(table_factory, progress)
        except BaseException:
            self.env.close()
            raise
        self.datastore: Datastore = self.recovery.datastore
        # what recovery read may still be only in the OS page cache (the crashed process wrote
        # it, nobody fsync'd it): make it durable before the log reports it as durable
        try:
            mark_layout(self.env)
            self.env.sync()
        except BaseException:
            self.env.close()
            raise
        self.log = CommitLog(self.env, durability=self.config.durability,
                             sync_interval=self.config.sync_interval,
                             group_delay=self.config.group_delay, group_siblings=self.config.group_siblings,
                             next_offset=self.recovery.next_offset)
        # the log tail recovery replayed counts toward the next snapshot: a process that stops
        # (or crashes) more often than every snapshot_every_txs commits still takes snapshots
        self._since_snapshot_txs = self.recovery.replayed
        self._since_snapshot_bytes = 0
        self.snapshot_error: str | None = None     # why the last automatic snapshot failed
        self._snap_thread: threading.Thread | None = None   # writing an automatic snapshot
        self._snap_lock = threading.Lock()                  # one snapshot written at a time
        self._closed = False

    def _recover(self, table_factory: Callable | None, progress: bool) -> RecoveryResult:
        """Recovery with a progress bar on a terminal when the log tail is long."""
        bounds = log_bounds(self.env)
        total = 0 if bounds is None else bounds[1] - bounds[0] + 1
        snaps = list_snapshots(self.env)
        rows = snaps[0].rows if snaps else 0      # the newest: the one recovery loads, unless damaged
        loaded = 0
        label = f"recovering {os.path.basename(self.path)} (snapshot rows + log records)"
        with progress_bar(rows + total, label, enabled=progress) as tick:
            def on_rows(n: int) -> None:
                nonlocal loaded
                loaded += n
                tick(loaded)
            res = recover(self.env, table_factory=table_factory, repair=True,
                          progress=lambda done, _total: tick(loaded + done), snapshot_rows=on_rows)
        if res.replayed or res.snapshot_offset is not None:
            log.info("recovered %s: snapshot %s, %d records replayed (%d row ops), next offset %d",
                     self.path, res.snapshot_offset, res.replayed, res.row_ops, res.next_offset)
        return res

    @classmethod
    def open(cls, path: str, **kwargs: Any) -> DurableStore:
        config = kwargs.pop("config", None) or StoreConfig(**{k: kwargs.pop(k) for k in list(kwargs)
                                                               if k in StoreConfig.__dataclass_fields__})
        return cls(path, config, **kwargs)

    # ---- context manager

    def __enter__(self) -> DurableStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- schema

    def create_table(self, schema: TableSchema, *, timestamp: int | None = None) -> int:
        """Create a table and log it; returns the record's offset.  Checked first, logged,
        then applied, so a refused request changes neither memory nor the log."""
        self._check_open()
        self._check_ddl(schema.name if isinstance(schema, TableSchema) else "", must_exist=False)
        if not isinstance(schema, TableSchema):
            raise SchemaError(f"create_table needs a TableSchema, got {type(schema).__name__}")
        ts = _now() if timestamp is None else timestamp
        return self._append(lambda off: lf.encode_record(
            lf.LogRecord(off, ts, kind=lf.KIND_CREATE_TABLE, schema=schema)),
            before_snapshot=lambda: self.datastore.create_table(schema))

    def drop_table(self, name: str, *, timestamp: int | None = None) -> int:
        self._check_open()
        self._check_ddl(name, must_exist=True)
        ts = _now() if timestamp is None else timestamp
        return self._append(lambda off: lf.encode_record(
            lf.LogRecord(off, ts, kind=lf.KIND_DROP_TABLE, table=name)),
            before_snapshot=lambda: self.datastore.drop_table(name))

    def alter_table(self, schema: TableSchema, *, timestamp: int | None = None) -> int:
        """Change a table's indexes or visibility (same columns); the table is rebuilt and
        checked first (a new unique index that does not hold is refused), then logged, then
        swapped in."""
        self._check_open()
        name = schema.name if isinstance(schema, TableSchema) else ""
        self._check_ddl(name, must_exist=True)
        table = self.datastore.altered_table(schema)
        ts = _now() if timestamp is None else timestamp
        return self._append(lambda off: lf.encode_record(
            lf.LogRecord(off, ts, kind=lf.KIND_ALTER_TABLE, schema=schema)),
            before_snapshot=lambda: self.datastore.alter_table(schema, table))

    def _check_ddl(self, name: str, *, must_exist: bool) -> None:
        if self.datastore.in_transaction:
            raise TransactionError("cannot change tables while a transaction is open")
        exists = name in self.datastore.table_names
        if must_exist and not exists:
            self.datastore.table(name)          # raises the usual "no table" SchemaError
        if not must_exist and exists:
            raise SchemaError(f"table '{name}' already exists")

    # ---- transactions

    def begin(self, core: Any = None) -> Transaction:
        self._check_open()
        self.log._raise_if_failed()
        return self.datastore.begin(core)

    def commit(self, tx: Transaction, *, reducer: str = "", args: bytes = b"",
               caller: bytes | None = None, timestamp: int | None = None) -> Commit:
        """Commit ``tx`` and append it to the log (offset known at once, durable later).

        The record is appended before the transaction ends: if the log refuses it (it has
        failed), the transaction is rolled back and nothing of it stays in memory."""
        self._check_open()
        delta = tx.pending_delta()
        if not delta:
            tx.commit()
            return Commit(None, delta)
        try:
            ts = _now() if timestamp is None else timestamp
            offset = self._append(lambda off: tx.encode_record(off, ts, caller, reducer, args),
                                  before_snapshot=lambda: tx.commit(delta))
        except BaseException:
            if tx.is_open:
                tx.rollback()
            raise
        return Commit(offset, delta)

    def commit_record(self, tx: Transaction, offset: int, record: bytes) -> Commit:
        """Commit ``tx`` with its log record already built (for ``offset``, the log's next:
        the native call path builds it while the reducer's transaction is still in C)."""
        self._check_open()
        delta = tx.pending_delta()
        try:
            self._append(None, before_snapshot=lambda: tx.commit(delta), record=(offset, record))
        except BaseException:
            if tx.is_open:
                tx.rollback()
            raise
        return Commit(offset, delta)

    def replicate_record(self, offset: int, raw: bytes) -> tuple[lf.LogRecord, TxDelta | None]:
        """Apply a record another node's log holds at ``offset`` (the log's next) and append
        its exact bytes (a follower, stdb/replication/): checked first (CRC, version, offset:
        StorageError naming what is wrong, and nothing changes), applied the way recovery applies
        it, then queued for the log.  Returns the decoded record and, for a transaction, its
        delta.  A record that checks out but cannot be applied raises StorageError too; the
        tables may then be half-changed, so the caller must stop using this store."""
        self._check_open()
        if self.datastore.in_transaction:
            raise TransactionError("cannot apply a replicated record while a transaction is open")
        if offset != self.log.next_offset:
            raise StorageError(f"replicated record for offset {offset}, but this log's next offset is "
                               f"{self.log.next_offset}")
        raw = bytes(raw)
        rec = lf.decode_record(offset, raw)
        try:
            apply_record(self.datastore, rec)
        except StdbError as e:
            detail = e.detail if isinstance(e, StorageError) else f"log record at offset {offset}: {e.detail}"
            raise StorageError(detail) from None
        delta = None
        if rec.kind == lf.KIND_TX:
            delta = TxDelta._record(raw, len(raw) - lf.tx_changes_start(rec), len(rec.changes),
                                    self.datastore)
        self._append(None, record=(offset, raw))
        return rec, delta

    def transact(self, fn: Callable[[Transaction], Any], **kw: Any) -> tuple[Any, Commit]:
        """Run ``fn(tx)``; commit and log on success, roll back on any exception."""
        tx = self.begin()
        try:
            out = fn(tx)
        except BaseException:
            if tx.is_open:
                tx.rollback()
            raise
        return out, self.commit(tx, **kw)

    def _append(self, build: Callable[[int], bytes] | None, before_snapshot: Callable[[], Any] | None = None,
                record: tuple[int, bytes] | None = None) -> int:
        """Append a record (``build(offset)`` makes it, or ``record`` is (offset, bytes) already
        built for the next offset); ``before_snapshot`` (ending the transaction) runs once the
        record is queued and before an automatic snapshot may be taken."""
        if record is not None:
            offset = self.log.append_record(*record)
        else:
            assert build is not None
            offset = self.log.append(build)
        if before_snapshot is not None:
            before_snapshot()
        self._since_snapshot_txs += 1
        self._since_snapshot_bytes += self.log.last_record_bytes
        self._maybe_snapshot()
        return offset

    # ---- durability

    @property
    def durable_offset(self) -> int:
        return self.log.durable_offset

    def wait_durable(self, offset: int | None, timeout: float | None = None) -> None:
        if offset is not None:
            self.log.wait_durable(offset, timeout)

    def flush(self, timeout: float | None = None) -> None:
        self.log.flush(timeout)

    # ---- snapshots

    def _maybe_snapshot(self) -> None:
        """The automatic snapshot, after the commit that crossed a threshold.  The tables are
        copied here (a memcpy per page: milliseconds for a million rows) and the snapshot is
        encoded and written by a background thread, so the committing thread — the server's —
        does not stop for it.  One at a time: while one is being written, the next commit tries
        again.  The commit is done whatever happens to its snapshot: a failure (a full disk, an
        I/O error) is logged, kept in ``snapshot_error`` (``stats()``), and the next attempt
        comes a whole interval later."""
        c = self.config
        if self.datastore.in_transaction:
            return
        if not ((c.snapshot_every_txs and self._since_snapshot_txs >= c.snapshot_every_txs)
                or (c.snapshot_every_bytes and self._since_snapshot_bytes >= c.snapshot_every_bytes)):
            return
        if self._snap_thread is not None and self._snap_thread.is_alive():
            return
        self._since_snapshot_txs = 0
        self._since_snapshot_bytes = 0
        try:
            captured = self._capture()
        except Exception as e:  # noqa: BLE001 - (no memory for the copy): the commit stands
            self._snapshot_failed(self.log.next_offset - 1, e)
            return
        if captured is not None:
            self._snap_thread = threading.Thread(target=self._write_in_background, args=captured,
                                                 name="stdb-snapshot", daemon=True)
            self._snap_thread.start()

    def _write_in_background(self, offset: int, tables: list[Any]) -> None:
        with self._snap_lock:
            try:
                self._write_snapshot(offset, tables)
            except Exception as e:  # noqa: BLE001 - reported and retried; the commits stand
                self._snapshot_failed(offset, e)

    def _snapshot_failed(self, offset: int, e: Exception) -> None:
        detail = e.detail if isinstance(e, StdbError) else repr(e)
        self.snapshot_error = detail
        log.warning("automatic snapshot of %s at offset %d failed (the commits are unaffected; "
                    "the log keeps growing until a snapshot succeeds): %s", self.path, offset, detail)

    def _capture(self) -> tuple[int, list[Any]] | None:
        """The last appended offset and a copy of every table as of it (None: nothing logged)."""
        self._check_open()
        if self.datastore.in_transaction:
            raise TransactionError("cannot snapshot while a transaction is open")
        offset = self.log.next_offset - 1
        if offset < 0:
            return None
        return offset, [self.datastore.table(n).frozen() for n in self.datastore.table_names]

    def _write_snapshot(self, offset: int, tables: list[Any]) -> SnapshotInfo:
        self.log.wait_durable(offset)      # a snapshot is never ahead of the log on disk
        info = write_snapshot(self.env, offset, tables)
        self.snapshot_error = None
        self._prune()
        return info

    def snapshot(self) -> SnapshotInfo | None:
        """Snapshot every table at the last appended offset, in this thread, after any
        automatic snapshot being written (none logged yet: nothing to do)."""
        return self.capture_snapshot()()

    def capture_snapshot(self) -> Callable[[], SnapshotInfo | None]:
        """Copy every table now (the state at the last appended offset) and return the function
        that writes the snapshot of that copy — in any thread, after any automatic snapshot
        being written; it raises StorageError if the write fails.  The server's ``Snapshot``
        request writes it in a worker thread."""
        captured = self._capture()
        self._since_snapshot_txs = 0
        self._since_snapshot_bytes = 0

        def write() -> SnapshotInfo | None:
            if captured is None:
                return None
            with self._snap_lock:
                self._check_open()
                return self._write_snapshot(*captured)
        return write

    def wait_snapshot(self, timeout: float | None = None) -> None:
        """Wait until no automatic snapshot is being written (StorageError on timeout)."""
        t = self._snap_thread
        if t is not None:
            t.join(timeout)
            if t.is_alive():
                raise StorageError(f"the automatic snapshot of {self.path!r} was still being written "
                                   f"after {timeout} s")

    def _prune(self) -> None:
        snaps = list_snapshots(self.env)
        keep = max(1, self.config.keep_snapshots)
        for s in snaps[keep:]:
            delete_snapshot(self.env, s.offset)
        if self.config.compact_log and len(snaps) >= 1:
            oldest = snaps[min(keep, len(snaps)) - 1].offset
            self.env.write(lambda txn: delete_log_through(txn, self.env, oldest))

    # ---- end

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"the database at {self.path!r} is closed")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._snap_thread is not None:
                self._snap_thread.join()
            with self._snap_lock:       # nor a snapshot being written for capture_snapshot()
                pass
        finally:
            try:
                self.log.close()
            finally:
                self.env.close()

    def stats(self) -> dict[str, Any]:
        b = log_bounds(self.env)
        return {
            "path": os.path.abspath(self.path),
            "next_offset": self.log.next_offset,
            "durable_offset": self.log.durable_offset,
            "log_first": b[0] if b else None,
            "log_last": b[1] if b else None,
            "groups": self.log.groups,
            "snapshots": [s.offset for s in list_snapshots(self.env)],
            "snapshot_error": self.snapshot_error,
            "tables": {n: len(self.datastore.table(n)) for n in self.datastore.table_names},
        }


def _now() -> int:
    return time.time_ns() // 1000


