"""The commit log: every committed transaction as a CRC-checked record in LMDB.

Group commit: ``append`` gives a record its offset at once and queues it; one writer
thread takes everything queued, writes it in one LMDB transaction and (in ``durable``
mode) fsyncs that transaction, then advances the *durable offset* and wakes whoever waits
for it.  While the writer is busy with one group, the next one gathers.

Layout (docs/log-format.md, "log layout 2"): a group is stored as few LMDB values as
possible, each holding consecutive records (up to ``BATCH_BYTES``) under the offset of its
first record.  One put per value means the writer hands the GIL to the appending threads
once per group rather than once per record (py-lmdb releases it around every put).  A
value holding one record — every value of a layout-1 log — is the same thing.

Durability modes (docs/log-format.md):

* ``durable`` (default): a group is fsync'd before its offsets count as durable — by LMDB
  itself at commit (the store opens its environment with LMDB's sync: data pages flushed, then
  the meta page written synchronously).  A commit whose offset is ≤ ``durable_offset``
  survives a crash of the process or the machine.
* ``relaxed``: groups are written without fsync (LMDB ``MDB_NOSYNC``) and the log is fsync'd
  every ``sync_interval`` seconds; ``durable_offset`` advances only after each fsync, so
  waiting for durability stays truthful.  A process crash loses nothing (LMDB's written pages
  survive the process); a machine crash loses the commits since the last fsync and, on a
  filesystem that does not keep write order, can leave the LMDB file inconsistent.

A failed write or fsync puts the log in a failed state: the error is kept, every waiter
and every later ``append`` gets a StorageError, and no offset after the last durable one is
ever reported durable.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

from stdb._core.logq import LQ_CLOSED, LQ_FAILED, LQ_NOMEM, LogQueue
from stdb._core.logq import monotonic as logq_monotonic
from stdb.errors import InternalError, StorageError
from stdb.storage import logformat as lf
from stdb.storage.lmdbenv import LOG_DB, META_DB, Env

__all__ = ["CommitLog", "DURABILITY_MODES", "BATCH_BYTES", "LOG_LAYOUT", "group_values", "iter_records",
           "iter_values", "log_bounds", "split_value", "truncate_log", "delete_log_through", "check_layout",
           "mark_layout"]

log = logging.getLogger("stdb.commitlog")
DURABILITY_MODES = ("durable", "relaxed")
BATCH_BYTES = 1 << 20       # a group's records go into LMDB values of at most this much (or one record)
LOG_LAYOUT = 2              # 1: one record per value; 2: one or more consecutive records per value
_LAYOUT_KEY = b"log_layout"
_BODY_LEN = struct.Struct("<I")


class CommitLog:
    def __init__(self, env: Env, *, durability: str = "durable", sync_interval: float = 0.05,
                 next_offset: int = 0, max_group: int = 4096, group_delay: float = 0.005,
                 group_siblings: int = 2) -> None:
        if durability not in DURABILITY_MODES:
            raise StorageError(f"unknown durability mode {durability!r}",
                               hint="use 'durable' or 'relaxed'")
        if durability == "durable" and not env.durable:
            # an unsynced commit followed by an fsync can leave LMDB's file inconsistent after
            # a machine crash: durable mode lets LMDB sync each group itself
            raise StorageError(f"durable mode needs an environment that syncs at commit ({env.path!r} "
                               "was opened with durable=False)")
        self.env = env
        self.durability = durability
        self.sync_interval = sync_interval
        self.max_group = max_group
        # Pacing: when at least group_siblings commits arrived while a group was written and
        # nobody waits for durability, the next group starts no sooner than group_delay after
        # that one began, so under load each group (in durable mode two device flushes; in both
        # modes the writer's turns with the GIL for py-lmdb) covers more commits.  A caller in
        # wait_durable (confirmed mode) ends the delay at once, and a lone committer never
        # meets one: nothing arrives while its group is written.
        self.group_delay = group_delay
        self.group_siblings = group_siblings
        # the records waiting for the writer, the written and durable offsets, the waits: in C
        # (stdb/_core/logq.pyx), so that appending and waiting need no GIL
        self.queue = LogQueue(next_offset)
        self._failed: StorageError | None = None
        self.groups = 0          # write transactions so far (stats)
        self.records = 0
        # hooks for fault-injection tests: the write (of a Group of records) and the fsync
        self._write_group: Callable[[int, Any], None] = self._lmdb_write
        self._sync: Callable[[], None] = env.sync
        # called on the writer thread with each group's (key, value) items once they are written
        # (stdb/replication/ publishes them); it must not block
        self.on_written: Callable[[list[tuple[bytes, bytes]]], None] | None = None
        self._thread = threading.Thread(target=self._run, name="stdb-commitlog", daemon=True)
        self._thread.start()

    # ---- state

    @property
    def next_offset(self) -> int:
        return self.queue.next

    @property
    def durable_offset(self) -> int:
        """Every record with an offset ≤ this is on disk (-1: none yet)."""
        return self.queue.durable

    @property
    def written_offset(self) -> int:
        return self.queue.written

    @property
    def last_record_bytes(self) -> int:
        """The size of the record the last append queued."""
        return self.queue.last_bytes

    @property
    def failed(self) -> StorageError | None:
        return self._failed

    def _raise_if_failed(self) -> None:
        if self.queue.failed:
            detail = self._failed.detail if self._failed is not None else "an I/O error"
            raise StorageError(f"the commit log stopped after an I/O error and acknowledges nothing "
                               f"further: {detail}",
                               hint="the database must be restarted; recovery keeps every durable commit")

    # ---- appending

    def append(self, build: Callable[[int], bytes]) -> int:
        """Give the next offset to ``build`` (which returns the encoded record), queue it,
        and return the offset.  Does not wait for the disk.  (The store is the log's one
        appender: nothing else takes the offset between reading it and queueing the record.)"""
        q = self.queue
        if q.failed or q.closing:
            self._refused(LQ_FAILED if q.failed else LQ_CLOSED)
        offset = q.next
        return self.append_record(offset, build(offset))

    def append_record(self, offset: int, data: bytes) -> int:
        """Queue a record built for ``offset``, which must be the next offset."""
        r = self.queue.append(data, offset)
        if r:
            self._refused(r)
        return offset

    def _refused(self, r: int) -> None:
        if r == LQ_FAILED:
            self._raise_if_failed()
        if r == LQ_CLOSED:
            raise StorageError("the commit log is closed")
        if r == LQ_NOMEM:
            raise MemoryError("no memory to queue a commit-log record")
        raise InternalError(f"a record built for an offset that is not the log's next ({self.queue.next})")

    def wait_durable(self, offset: int, timeout: float | None = None) -> None:
        """Block until ``offset`` is durable; StorageError if the log failed or on timeout."""
        q = self.queue
        if q.durable >= offset:
            return
        r = q.wait_durable(offset, -1.0 if timeout is None else logq_monotonic() + timeout)
        if r == -1:
            self._raise_if_failed()
        elif r == -2:
            raise StorageError(f"offset {offset} was never appended (next is {q.next})")
        elif r == -3:
            raise StorageError(f"offset {offset} not durable after {timeout} s")

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything appended so far is durable."""
        if self.queue.next > 0:
            self.wait_durable(self.queue.next - 1, timeout)

    def close(self) -> None:
        """Write and sync what is queued, then stop the writer."""
        self.queue.close()
        self._thread.join()

    # ---- the writer

    def _lmdb_write(self, first: int, group: Any) -> None:
        """Put the records of offsets first, first + 1, ... (a logq.Group) as values of
        consecutive records, each at most BATCH_BYTES (a bigger record alone)."""
        db = self.env.db(LOG_DB)
        items = group.values(BATCH_BYTES)

        def put_all(txn):
            # offsets only grow, so LMDB can append without searching (MDB_APPEND)
            _, added = txn.cursor(db=db).putmulti(items, overwrite=False, append=True)
            if added != len(items):
                raise StorageError(f"commit log refused records {first}..{first + len(group) - 1}: "
                                   f"{len(items) - added} offsets already present or out of order")

        self.env.write(put_all)
        hook = self.on_written
        if hook is not None:
            hook(items)

    def _run(self) -> None:
        q = self.queue
        last_sync = logq_monotonic()
        # A durable environment (DurableStore's, in durable mode) fsyncs every write transaction
        # at commit, data pages before the meta page: a group is durable once written, and a
        # machine crash can never leave a meta page pointing at pages that did not reach the disk.
        synced_by_commit = self.env.durable
        relaxed = self.durability == "relaxed"
        pace_until = 0.0
        first = -1
        while True:
            if pace_until:
                q.pace(pace_until)          # appends do not end it; close and wait_durable do
            # relaxed mode: wake for the interval's fsync even when nothing new arrives
            until = last_sync + self.sync_interval if relaxed and q.written > q.durable else -1.0
            q.wait_work(until)
            group = q.take(self.max_group)
            closing = q.is_closing_and_empty()
            try:
                if group is not None:
                    first = group.first
                    started = logq_monotonic()
                    self._write_group(first, group)
                    self.groups += 1
                    self.records += len(group)
                    q.mark_written(first + len(group) - 1, synced_by_commit)
                    busy = q.queued >= self.group_siblings and not q.durable_waiters
                    pace_until = started + self.group_delay if busy and self.group_delay > 0 else 0.0
                # Otherwise (an environment without LMDB's own sync: relaxed mode) this is the
                # fsync of an interval.
                if not synced_by_commit and (closing or logq_monotonic() - last_sync >= self.sync_interval):
                    if q.written > q.durable:
                        self._sync()
                        last_sync = logq_monotonic()
                        q.mark_durable(q.written)
            except BaseException as e:  # noqa: BLE001 - every failure stops acknowledgements
                err = e if isinstance(e, StorageError) else StorageError(f"commit log write failed: {e!r}")
                log.error("commit log failed at offset %s: %s", first if group is not None else "-",
                          err.detail)
                self._failed = err
                q.fail()
                return
            if closing:
                q.finished()
                return


def group_values(first: int, group: list[bytes]) -> list[tuple[bytes, bytes]]:
    """(key, value) items storing ``group`` (records of offsets first, first + 1, ...): runs of
    consecutive records joined into values of at most BATCH_BYTES (a bigger record alone)."""
    items = []
    start, size = 0, 0
    for i, rec in enumerate(group):
        if size and size + len(rec) > BATCH_BYTES:
            items.append((lf.offset_key(first + start), b"".join(group[start:i])))
            start, size = i, 0
        size += len(rec)
    items.append((lf.offset_key(first + start), b"".join(group[start:])))
    return items


def split_value(first: int, value: bytes | memoryview) -> list[tuple[int, memoryview]]:
    """The records stored in one log value, as (offset, bytes) from ``first`` on, split by the
    body lengths in their headers.  Nothing is verified here (``lf.check_header`` does that):
    where the framing stops making sense — fewer bytes left than a header, or a length past
    the end — the rest of the value is one last piece, which fails its checks."""
    mv = memoryview(value)
    n = len(mv)
    if n >= lf.HEADER_SIZE and _BODY_LEN.unpack_from(mv, 4)[0] + lf.HEADER_SIZE == n:
        return [(first, mv)]           # one record (every value of a layout-1 log)
    out: list[tuple[int, memoryview]] = []
    pos = 0
    while pos < n:
        end = n
        if n - pos >= lf.HEADER_SIZE:
            end = pos + lf.HEADER_SIZE + _BODY_LEN.unpack_from(mv, pos + 4)[0]
            if end > n:
                end = n
        out.append((first + len(out), mv[pos:end]))
        pos = end
    if not out:
        out.append((first, mv))        # an empty value: one (bad) piece
    return out


def _seek(cur: Any, start: int) -> bool:
    """Put ``cur`` on the value that may hold offset ``start``: the last one whose key is at or
    before it, else the first one (False for an empty log)."""
    if not cur.set_range(lf.offset_key(start)):
        return bool(cur.last())
    if lf.key_offset(bytes(cur.key())) > start and not cur.prev():
        return bool(cur.first())
    return True


def iter_values(env: Env, start: int = 0) -> Iterator[tuple[int, bytes | memoryview]]:
    """(first offset, value) of every stored log value from the one that may hold ``start``
    on, in offset order (a value holds one or more records back to back; ``split_value``).

    Values are only valid inside the iteration (they point into LMDB's map)."""
    with env.read() as txn:
        cur = txn.cursor(db=env.db(LOG_DB))
        if not _seek(cur, start):
            return
        for key, value in cur:
            yield lf.key_offset(bytes(key)), value


def iter_records(env: Env, start: int = 0) -> Iterator[tuple[int, bytes | memoryview]]:
    """(offset, raw record) of every stored record from ``start`` on, in offset order.

    Records are only valid inside the iteration (they point into LMDB's map)."""
    for first, value in iter_values(env, start):
        for off, rec in split_value(first, value):
            if off >= start:
                yield off, rec


def log_bounds(env: Env) -> tuple[int, int] | None:
    """(first, last) stored offsets, or None for an empty log."""
    with env.read() as txn:
        cur = txn.cursor(db=env.db(LOG_DB))
        if not cur.first():
            return None
        first = lf.key_offset(bytes(cur.key()))
        cur.last()
        last = lf.key_offset(bytes(cur.key()))
        return first, last + len(split_value(last, cur.value())) - 1


def truncate_log(env: Env, offset: int) -> None:
    """Delete the records from ``offset`` on (a torn tail): later values go, the value holding
    ``offset`` keeps the records before it."""
    def drop(txn):
        db = env.db(LOG_DB)
        cur = txn.cursor(db=db)
        if not _seek(cur, offset):
            return
        rewrite = None
        key = lf.key_offset(bytes(cur.key()))
        if key < offset:
            pieces = split_value(key, cur.value())
            if len(pieces) > offset - key:
                rewrite = b"".join(bytes(r) for _, r in pieces[: offset - key])
            more = cur.next()
        else:
            more = True
        doomed = []
        while more:
            doomed.append(bytes(cur.key()))
            more = cur.next()
        for k in doomed:
            txn.delete(k, db=db)
        if rewrite is not None:
            txn.put(lf.offset_key(key), rewrite, db=db)
    env.write(drop)


def delete_log_through(txn: Any, env: Env, offset: int) -> None:
    """Delete (in write transaction ``txn``) the values whose records all precede ``offset + 1``
    — log compaction after a snapshot; a value holding later records too is kept whole."""
    cur = txn.cursor(db=env.db(LOG_DB))
    if not cur.first():
        return
    while True:
        key = cur.key()
        if not key:
            return
        first = lf.key_offset(bytes(key))
        if first + len(split_value(first, cur.value())) - 1 > offset:    # its last record
            return
        if not cur.delete():
            return


def check_layout(env: Env) -> int:
    """The log layout of ``env`` (1 when unmarked); StorageError for one newer than this build."""
    with env.read() as txn:
        value = txn.get(_LAYOUT_KEY, db=env.db(META_DB))
        raw = None if value is None else bytes(value)     # copied while the transaction lives
    try:
        layout = 1 if raw is None else int(raw)
    except ValueError:
        raise StorageError(f"the log layout marker of {env.path!r} is unreadable ({raw!r})") from None
    if layout > LOG_LAYOUT:
        raise StorageError(f"the commit log at {env.path!r} has layout {layout}; this build reads "
                           f"layouts up to {LOG_LAYOUT}", hint="open it with a newer stdb")
    return layout


def mark_layout(env: Env) -> None:
    """Record that this log may hold values of several records (before the first such write)."""
    if check_layout(env) < LOG_LAYOUT:
        env.write(lambda txn: txn.put(_LAYOUT_KEY, str(LOG_LAYOUT).encode(), db=env.db(META_DB)))
