"""One database as the server hosts it: its execution thread, its subscribers and what they are sent.

Two threads share the work (docs/architecture.md, "Threads: who holds what"):

- The database's **execution thread** (stdb/server/executor.py) runs everything that touches
  the database: requests (decoded there), reducer calls, SQL, subscriptions, lifecycle
  reducers, publishes and scheduled reducers, one at a time and in order.  What they produce
  (encoded messages for connections, commits, callbacks) is collected in an outbox and handed
  to the I/O thread once per batch.  A call is bounded by the module's fuel, time and memory
  limits and runs with the GIL released, so a looping reducer holds this thread only.
- The server's **I/O thread** (trio) owns the connections: ``deliver`` sends the batch's
  messages, without waiting for any client (``Connection.push``: a client that cannot keep up
  is disconnected).  A connection in confirmed mode receives each message only once the commit
  log's durable offset has passed the message's offset (``_durability_watcher``).

The commit log's group-commit writer fsyncs in a thread of its own.  When the server is not
serving (``stdb start --demo`` publishing before it listens, the protocol fuzzer) the same
methods run on the calling thread and deliver at once.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import trio

from stdb.errors import (
    AuthError,
    InternalError,
    NotLeader,
    ProtocolError,
    QueryError,
    RateLimited,
    ReducerError,
    StdbError,
)
from stdb.module.database import CallResult, Database, PublishResult
from stdb.module.settings import RoleSettings
from stdb.protocol import decode_client, encode, split_message
from stdb.query.budget import QueryLimits, whose
from stdb.query.budget import over as over_limit
from stdb.query.service import QueryDiff
from stdb.server._frames import frame_messages, send_each
from stdb.server._lane import CallLane
from stdb.server.connection import CLOSE_TOO_BIG, Connection
from stdb.server.executor import ExecutionThread, Job
from stdb.server.poller import Poller
from stdb.server.ratelimit import Buckets

if TYPE_CHECKING:
    from stdb.server.metrics import Metrics
    from stdb.storage.snapshot import SnapshotInfo

__all__ = ["HostedDatabase", "no_module"]

log = logging.getLogger("stdb.server")

# what the execution thread hands the I/O thread: (kind, connection, payload, offset)
SEND = 0        # a message, in commit order for a confirmed connection (offset None: after the last)
PUSH = 1        # a message sent at once (errors, log records, snapshot results)
DONE = 2        # one of the connection's requests is handled
COMMITTED = 3   # a commit at ``offset`` (later messages without an offset wait for it)
LATER = 4       # payload() runs on the I/O thread
Item = tuple[int, Any, Any, "int | None"]
# the server finishes a removal on the I/O thread: (database, who asked, their answer, deleted)
OnRemoved = Callable[["HostedDatabase", "Connection | None", "bytes | None", bool], None]

SCHEDULER_RETRY_S = 5.0      # after the scheduler failed (e.g. the commit log stopped)
# the requests a follower refuses (only the leader writes), and what they would have done
_WRITES = {"CallReducer": "call reducers", "Publish": "publish a module", "DeleteDatabase": "delete it"}


class Replicated(Protocol):
    """The leader's view of its replicated stream (stdb/replication/publisher.py)."""

    @property
    def offset(self) -> int: ...

    def wait(self, offset: int) -> None: ...


def no_module(name: str) -> StdbError:
    """The answer to a request that needs database ``name``'s module before one is published."""
    return StdbError(f"database '{name}' has no module yet",
                     hint="publish one: stdb publish NAME module.wasm", code="no_such_database")


def fit_log_entries(entries: list[dict], room: int) -> list[dict]:
    """The newest of ``entries`` (oldest first) whose LogsResult fits in ``room`` bytes, a line
    longer than a quarter of ``room`` cut to that (a module may log a mebibyte a call, and keep
    a thousand calls' lines: docs/protocol.md, ``Logs``)."""
    cut = room // 4
    out: list[dict] = []
    total = 128                             # the message around the entries
    for e in reversed(entries):
        text = e["message"].encode()
        if len(text) > cut:
            note = f"… (cut: the line is {len(text):,} bytes)"
            e = dict(e, message=text[:cut].decode("utf-8", "ignore") + note)
            text = e["message"].encode()
        total += len(text) + 64 + len((e.get("reducer") or "").encode())   # ts, level, keys, reducer
        if total > room:
            break
        out.append(e)
    out.reverse()
    return out


class HostedDatabase:
    def __init__(self, name: str, db: Database, metrics: Metrics,
                 on_removed: OnRemoved | None = None) -> None:
        self.name = name
        self.db = db
        self.metrics = metrics
        self.on_removed = on_removed        # the server finishes a delete (I/O thread)
        self.thread = ExecutionThread(name, self)
        # I/O thread
        self.connections: set[Connection] = set()
        self._token: trio.lowlevel.TrioToken | None = None
        self._poller: Poller | None = None
        self._scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._pending: deque[tuple[int, Connection, bytes]] = deque()   # confirmed-mode queue
        self._pending_of: Counter[Connection] = Counter()             # its messages per connection
        self._pending_event = trio.Event()
        self._last_offset = 0
        # execution thread
        self.log_followers: dict[Connection, int] = {}   # connection -> its Logs request id
        # rows each connection's subscriptions held when they subscribed: query id -> rows
        self._held: dict[Connection, dict[int, int]] = {}
        self._call_buckets = Buckets("reducer calls")    # rate limits per identity (settings)
        self._query_buckets = Buckets("queries")
        # each connection's queries taken in this batch: they waited in line together
        self._in_line: Counter[Connection] = Counter()
        db.on_log = self._on_log
        self._out: list[Item] = []
        self._lane: CallLane | None = None            # for the module published now (_lane_schema)
        self._lane_schema: object = None
        self._due: int | None = None        # µs: when the next scheduled reducer is due
        self._due_stale = True
        self.removed = False                # deleted (or its first publish failed)
        self.closed = False
        # replication (stdb/replication/, docs/replication.md): set while this node follows the
        # database's leader (returns the leader's client URL, or None): nothing writes here then
        self.follower_of: Callable[[], str | None] | None = None
        # while this node leads in quorum mode: the offsets JetStream has on a majority
        # (``offset``, ``wait(offset)``); confirmed clients wait for them too
        self.replicated: Replicated | None = None

    # ---- I/O thread: the database's life

    def start(self, token: trio.lowlevel.TrioToken, poller: Poller | None = None) -> None:
        """Start the execution thread (the server serves: results go to ``token``'s run, posted
        to ``poller`` while it runs)."""
        self._token = token
        self._poller = poller
        self.thread.start()

    async def run(self) -> None:
        """The database's trio task (the confirmed-mode sender), started by the server."""
        with trio.CancelScope() as self._scope:
            if self.closed:
                return
            async with trio.open_nursery() as n:
                self._nursery = n
                n.start_soon(self._durability_watcher)

    def submit(self, job: Job) -> bool:
        """Run ``job`` on the execution thread (at once on this one when the server is not
        serving); False, and it does not run, once the thread is stopping."""
        if self._token is None:
            self._in_line.clear()           # (a batch of one)
            job()
            self.flush()
            return True
        return self.thread.submit(job)

    def submit_request(self, conn: Connection, data: bytes | str) -> None:
        self.submit_requests([(conn, [data])])

    def submit_requests(self, reqs: list[tuple[Connection, Sequence[bytes | str]]]) -> None:
        """Handle these connections' messages, in order, on the execution thread (one job)."""
        if not self.submit(partial(self._handle_all, reqs)):
            closed = StdbError(f"database '{self.name}' is closed: it was deleted, or the server is "
                               "shutting down", code="no_such_database")
            for conn, msgs in reqs:
                for _ in msgs:
                    conn.error(closed, None)
                    conn.handled()

    def _handle_all(self, reqs: list[tuple[Connection, Sequence[bytes | str]]]) -> None:
        handle = self.handle
        for conn, msgs in reqs:
            for data in msgs:
                handle(conn, data)

    async def run_job(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` on the execution thread, its outbox delivered; its result, or what it raised."""
        done = trio.Event()
        box: list[tuple[bool, Any]] = []

        def job() -> None:
            try:
                box.append((True, fn()))
            except BaseException as e:     # noqa: BLE001 - handed to the waiting task
                box.append((False, e))
            self._later(done.set)
        if not self.submit(job):
            return None             # the database is closing: nothing runs on it any more
        await done.wait()
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def cancel(self) -> None:
        """Stop the database's trio task."""
        if self._scope is not None:
            self._scope.cancel()

    def close(self) -> None:
        """Stop the execution thread (what is queued runs first) and close the database (its
        commit log flushed first).  From the I/O thread, or a worker after ``thread.stop``."""
        self.thread.stop()
        self._close_db()

    # ---- I/O thread: delivering what the execution thread produced

    def deliver(self, items: list[Item]) -> None:
        # a connection's messages of the batch go out together (one write), in their order;
        # a confirmed connection's in commit order through _send, as they come
        out: dict[Connection, list[bytes]] = {}
        for kind, conn, payload, offset in items:
            if kind == SEND or kind == PUSH:
                if conn.confirmed:
                    if kind == SEND:
                        self._send(conn, payload, offset)
                    else:
                        conn.push(payload)
                    continue
                msgs = out.get(conn)
                if msgs is None:
                    out[conn] = [payload]
                else:
                    msgs.append(payload)
            elif kind == DONE:
                conn.handled()
            elif kind == COMMITTED:
                if offset is not None and offset > self._last_offset:
                    self._last_offset = offset
            else:
                payload()
        if out:
            self._write(out)

    @staticmethod
    def _write(out: dict[Connection, list[bytes]]) -> None:
        """Each connection's messages, in one write per connection: those with nothing queued
        all written by one C loop (a commit's diffs to a thousand subscribers: a thousand
        ``send`` calls and no Python between them), the others queued by ``push_many``."""
        fds: list[int] = []
        frames: list[bytes] = []
        direct: list[tuple[Connection, list[bytes]]] = []
        shared: dict[int, bytes] = {}       # subscribers sent the same message: framed once
        for conn, msgs in out.items():
            fd = conn.socket_now()
            if fd is None:
                conn.push_many(msgs)
                continue
            if len(msgs) == 1:
                frame = shared.get(id(msgs[0]))
                if frame is None:
                    frame = shared[id(msgs[0])] = frame_messages(msgs)
            else:
                frame = frame_messages(msgs)
            fds.append(fd)
            frames.append(frame)
            direct.append((conn, msgs))
        if fds:
            for (conn, msgs), frame, n in zip(direct, frames, send_each(fds, frames), strict=True):
                conn.sent_now(msgs, frame, n)

    def _acked(self) -> int:
        """The offset through which commits are confirmed: durable here, and in quorum mode
        on a majority of the replicated stream too."""
        durable = self.db.store.durable_offset
        return durable if self.replicated is None else min(durable, self.replicated.offset)

    def _wait_acked(self, offset: int) -> None:
        self.db.store.wait_durable(offset)
        rep = self.replicated
        if rep is not None:
            rep.wait(offset)

    def _send(self, conn: Connection, msg: bytes, offset: int | None) -> None:
        """A message for a confirmed connection: sent once the log is durable past ``offset``
        (and, in quorum mode, replicated past it)."""
        # in order: a message without an offset of its own waits for everything before it
        off = self._last_offset if offset is None else offset
        if off <= self._acked() and conn not in self._pending_of:
            conn.push(msg)
            return
        self._pending.append((off, conn, msg))
        self._pending_of[conn] += 1
        self._pending_event.set()

    async def _durability_watcher(self) -> None:
        while True:
            await self._pending_event.wait()
            self._pending_event = trio.Event()
            while self._pending:
                target = self._pending[-1][0]
                try:
                    await trio.to_thread.run_sync(self._wait_acked, target, abandon_on_cancel=True)
                except StdbError as e:
                    log.error("%s: commits cannot be confirmed (%s); confirmed clients are disconnected",
                              self.name, e)
                    for _, conn, _ in self._pending:
                        conn.kill(f"the database cannot make commits durable: {e.detail}")
                    self._pending.clear()
                    self._pending_of.clear()
                    break
                durable = self._acked()
                while self._pending and self._pending[0][0] <= durable:
                    _, conn, msg = self._pending.popleft()
                    self._pending_of[conn] -= 1
                    if not self._pending_of[conn]:
                        del self._pending_of[conn]
                    conn.push(msg)

    def _start_snapshot_write(self, conn: Connection, request_id: int,
                              write: Callable[[], SnapshotInfo | None]) -> None:
        if self._nursery is None:
            conn.error(StdbError(f"database '{self.name}' is not running", code="no_such_database"),
                       request_id)
            return
        self._nursery.start_soon(self._write_snapshot, conn, request_id, write)

    async def _write_snapshot(self, conn: Connection, request_id: int,
                              write: Callable[[], SnapshotInfo | None]) -> None:
        try:
            info = await trio.to_thread.run_sync(write)
        except StdbError as e:
            log.error("%s: snapshot failed: %s", self.name, e.detail)
            conn.error(e, request_id)
            return
        except Exception as e:  # noqa: BLE001 - the database's other tasks must go on
            log.exception("%s: snapshot failed", self.name)
            conn.error(InternalError(f"the snapshot failed: {e!r}"), request_id)
            return
        if info is None:
            conn.push(encode("SnapshotResult", request_id=request_id, offset=None, rows=0, bytes=0))
        else:
            conn.push(encode("SnapshotResult", request_id=request_id, offset=info.offset, rows=info.rows,
                             bytes=sum(t["bytes"] for t in info.tables)))

    # ---- execution thread: the worker (stdb/server/executor.py)

    def run_batch(self, jobs: list[Job]) -> None:
        self._in_line.clear()
        for job in jobs:
            try:
                job()
            except Exception:       # a bug of ours: the other requests go on
                log.exception("%s: a job failed", self.name)
        self._run_due()
        self.flush()

    def next_wake(self) -> float | None:
        if self.follower_of is not None:
            return None                 # no schedules run here (the leader's commits come as jobs)
        if self._due_stale:
            self._due_stale = False
            self._due = self.db.next_due() if not self.closed and self.db.schema is not None else None
        if self._due is None:
            return None
        return max(0.0, (self._due - self.db.clock()) / 1e6)

    def flush(self) -> None:
        """Hand the outbox to the I/O thread (or deliver it here when the server is not serving)."""
        if not self._out:
            return
        out, self._out = self._out, []
        if self._token is None:
            self.deliver(out)
            return
        poller = self._poller
        if poller is not None and poller.post(self.deliver, out):
            return
        try:
            self._token.run_sync_soon(self.deliver, out)
        except trio.RunFinishedError:       # the server has stopped: nobody to send to
            pass

    def _run_due(self) -> None:
        if self.follower_of is not None:
            return                      # the leader runs the schedules; its commits come here
        if self._due is None or self.closed or self.db.schema is None or self._due > self.db.clock():
            return
        self._due_stale = True
        try:
            done = self.db.run_due()
        except StdbError as e:          # e.g. the commit log failed: no schedule can commit
            log.error("%s: scheduled reducers cannot run: %s", self.name, e)
            self._due_stale = False
            self._due = self.db.clock() + int(SCHEDULER_RETRY_S * 1e6)
            return
        for res in done:
            if isinstance(res, CallResult):
                self.metrics.call(self.name, res.reducer, "committed", res.duration_s, res.fuel_used)
                self.broadcast(res)
            else:
                self.metrics.call(self.name, res.reducer or "", res.kind, 0.0)
                log.warning("%s: scheduled reducer %s failed: %s", self.name, res.reducer, res.detail)

    def _later(self, fn: Callable[[], None]) -> None:
        self._out.append((LATER, None, fn, None))

    def _push(self, conn: Connection, msg: bytes) -> None:
        self._out.append((PUSH, conn, msg, None))

    def _emit(self, conn: Connection, msg: bytes, offset: int | None) -> None:
        self._out.append((SEND, conn, msg, offset))

    def _error(self, conn: Connection, e: StdbError, request_id: int | None) -> None:
        self._push(conn, conn.error_message(e, request_id))

    def _close_db(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.db.store.flush(timeout=10)
            except StdbError as e:
                log.error("%s: flushing the commit log failed: %s", self.name, e)
            self.db.close()

    # ---- execution thread: requests

    def handle(self, conn: Connection, data: bytes | str) -> None:
        """Decode and handle one message ``conn`` sent: a CallReducer the lane reads through
        it, anything else through ``dispatch``.  A connection that was disconnected meanwhile
        has its remaining requests dropped."""
        try:
            if conn.close_reason is not None:
                return
            call = self._lane_parse(data)
            if call is not None:
                what, rid = "CallReducer", call[0]
            else:
                try:
                    msg = decode_client(data)
                except StdbError as e:
                    self._error(conn, e, getattr(e, "request_id", None))
                    return
                what, rid = msg["type"], msg["request_id"]
            try:
                if call is not None:
                    self._fast_call(conn, *call)
                else:
                    self.dispatch(conn, msg)
            except StdbError as e:
                self._error(conn, e, rid)
            except Exception as e:      # a bug of ours: report it, keep serving this client
                log.exception("%r: internal error handling %s", conn, what)
                self._error(conn, InternalError(f"internal error handling {what}: {type(e).__name__}"), rid)
        finally:
            self._out.append((DONE, conn, None, None))

    def _lane_parse(self, data: bytes | str) -> tuple[int, int, str, bytes] | None:
        """The CallReducer in ``data`` as the lane reads it (stdb/server/_lane.pyx), or None."""
        schema = self.db.schema
        if schema is not self._lane_schema:             # a module was published: its reducers
            self._lane_schema = schema
            self._lane = None if schema is None or self.closed else \
                CallLane(self.db.call_path.callable_reducers())
        if self._lane is None or self.removed or self.follower_of is not None:
            return None
        return self._lane.parse(data)

    def dispatch(self, conn: Connection, msg: dict[str, Any]) -> None:
        rid = msg["request_id"]
        t = msg["type"]
        if self.removed:
            raise StdbError(f"database '{self.name}' was deleted", code="no_such_database",
                            hint="publish a module to create it again")
        if self.follower_of is not None and (t in _WRITES or (t == "Settings" and msg["set"])):
            raise self.not_leader(_WRITES.get(t, "change its settings"))
        if t == "Publish":
            self.publish_request(conn, rid, msg["wasm"])
            return
        if t == "DeleteDatabase":
            self.delete(conn, rid)
            return
        if self.db.schema is None:
            raise no_module(self.name)
        if t == "CallReducer":
            self.call(conn, rid, msg["reducer"], msg["args"])
        elif t == "Subscribe":
            self.subscribe(conn, rid, msg["queries"])
        elif t == "Unsubscribe":
            self.unsubscribe(conn, rid, msg["query_ids"])
        elif t == "OneOffQuery":
            self.sql(conn, rid, msg["sql"])
        elif t == "Describe":
            self.describe(conn, rid)
        elif t == "Logs":
            self.logs(conn, rid, msg["limit"], msg["follow"])
        elif t == "Snapshot":
            self.snapshot(conn, rid)
        elif t == "Settings":
            self.settings(conn, rid, msg["set"])

    def _note_commit(self, offset: int | None) -> None:
        if offset is not None:
            self._out.append((COMMITTED, None, None, offset))
            self.metrics.commit(self.name)
        self._due_stale = True

    def broadcast(self, res: CallResult, caller: Connection | None = None, request_id: int | None = None,
                  caller_identity: bytes | None = None) -> None:
        """Send a commit's diffs to every subscriber, and its outcome to the caller."""
        self._note_commit(res.offset)
        if caller_identity is None and caller is not None:
            caller_identity = caller.identity
        base = {"offset": res.offset, "timestamp": res.timestamp, "reducer": res.reducer,
                "caller": caller_identity, "status": "committed", "message": None}
        per_conn: dict[Connection, list[int]] = {}
        entries: dict[int, dict] = {}
        if res.updates:                 # (most commits change no subscribed query)
            for qid in res.updates:
                for conn in self.db.subscribers(qid):
                    per_conn.setdefault(conn, []).append(qid)
            entries = {qid: self._entry(qid, d) for qid, d in res.updates.items()}
            shared: dict[tuple[int, ...], bytes] = {}     # clients with the same queries share bytes
            parted: dict[tuple[tuple[int, ...], int], list[bytes] | QueryError] = {}   # and parts
            for conn, qids in per_conn.items():
                if conn is caller:
                    continue
                key = tuple(qids)
                msg = shared.get(key)
                if msg is None:
                    msg = shared[key] = encode("TransactionUpdate", **base, request_id=None,
                                               updates=[entries[q] for q in qids], more=False)
                if len(msg) > conn.max_message:
                    updates = [entries[q] for q in qids]
                    self._emit_update_parts(conn, dict(base, request_id=None, updates=updates), res.offset,
                                            parted, key)
                    continue
                self._emit(conn, msg, res.offset)
        if caller is not None:
            updates = [entries[q] for q in per_conn.get(caller, ())]
            msg = encode("TransactionUpdate", **base, request_id=request_id, updates=updates, more=False)
            if len(msg) > caller.max_message:
                fields = dict(base, request_id=request_id, updates=updates)
                self._emit_update_parts(caller, fields, res.offset)
            else:
                self._emit(caller, msg, res.offset)

    def _emit_update_parts(self, conn: Connection, fields: dict[str, Any], offset: int | None,
                           cache: dict[tuple[tuple[int, ...], int], list[bytes] | QueryError] | None = None,
                           key: tuple[int, ...] = ()) -> None:
        """A TransactionUpdate over ``conn``'s max_message, sent in parts (cut once for all the
        subscribers with the same queries and limit, through ``cache``).  A client that cannot
        take one of its rows is disconnected: without that row its cache would be wrong."""
        limit = conn.max_message
        parts = None if cache is None else cache.get((key, limit))
        if parts is None:
            try:
                parts = split_message("TransactionUpdate", fields, limit)
            except QueryError as e:
                parts = e
            if cache is not None:
                cache[(key, limit)] = parts
        if isinstance(parts, QueryError):
            self._later(partial(conn.kill, parts.detail, CLOSE_TOO_BIG))
            return
        for part in parts:
            self._emit(conn, part, offset)

    def _entry(self, qid: int, d: QueryDiff) -> dict:
        return {"query_id": qid, "table": self.db.queries.subs.plan(qid).table,
                "deletes": d.deletes, "inserts": d.inserts}

    def send_failure(self, conn: Connection, request_id: int, reducer: str, e: ReducerError) -> None:
        status = {"error": "failed"}.get(e.kind, e.kind)
        self._emit(conn, encode("TransactionUpdate", offset=None, timestamp=int(time.time() * 1e6),
                                reducer=reducer, caller=conn.identity, status=status,
                                message=e.message or e.detail, request_id=request_id, updates=[], more=False),
                   None)

    def call(self, conn: Connection, request_id: int, reducer: str, args: list) -> None:
        """Run a reducer for ``conn``.  A request that cannot run (no such reducer, a lifecycle
        reducer, arguments of the wrong types) raises, and the client gets an Error; a reducer
        that ran and failed is the caller's TransactionUpdate with its status."""
        rd = self.db.reducer(reducer)
        if rd.lifecycle is not None:
            raise ReducerError(f"reducer '{reducer}' is the {rd.lifecycle} lifecycle reducer; "
                               "the database calls it itself", reducer=reducer)
        res = self._called(conn, request_id, reducer, partial(
            self.db.call, reducer, tuple(args), sender=conn.identity, connection_id=conn.connection_id))
        if res is not None:
            self.broadcast(res, conn, request_id)

    def _fast_call(self, conn: Connection, request_id: int, idx: int, reducer: str, args: bytes) -> None:
        """``call`` for a CallReducer the lane read (stdb/server/_lane.pyx): the arguments are
        row-codec bytes already, and the caller's answer is written by the lane when no
        subscribed query changed."""
        lane = self._lane
        assert lane is not None
        res = self._called(conn, request_id, reducer, partial(
            self.db.call_path.call_encoded, idx, args, conn.identity, conn.connection_id))
        if res is None:
            return
        if res.updates:
            self.broadcast(res, conn, request_id)
            return
        self._note_commit(res.offset)
        self._emit(conn, lane.committed(res.offset, res.timestamp, reducer, conn.identity, request_id),
                   res.offset)

    def _called(self, conn: Connection, request_id: int, reducer: str,
                run: Callable[[], CallResult]) -> CallResult | None:
        """A client's reducer call (``run``), counted in the metrics; one that failed is
        answered here (None)."""
        st = self.db.settings          # (inline: this runs at every call)
        rs = st.owner if conn.identity == self.db.owner else st.clients
        if rs.calls_per_s:
            try:
                self._call_buckets.take(conn.identity, rs.calls_per_s, rs.calls_burst, time.monotonic())
            except RateLimited:
                self.metrics.call_refused(self.name, reducer, "rate_limited")
                raise
        t0 = time.perf_counter()
        try:
            res = run()
        except ReducerError as e:
            self.metrics.call(self.name, reducer, e.kind, time.perf_counter() - t0)
            self.send_failure(conn, request_id, reducer, e)
            return None
        self.metrics.call(self.name, reducer, "committed", res.duration_s, res.fuel_used)
        return res

    def lifecycle(self, conn: Connection, kind: str) -> None:
        """client_connected / client_disconnected; ReducerError if the module refused.  Not on a
        follower: lifecycle reducers write, and only the leader writes (docs/replication.md)."""
        if self.db.schema is None or self.closed or self.follower_of is not None:
            return
        fn = self.db.client_connected if kind == "connected" else self.db.client_disconnected
        res = fn(conn.identity, conn.connection_id)
        if res is not None:
            self.broadcast(res, None, None, conn.identity)

    def query_limits(self, identity: bytes) -> QueryLimits:
        """What a one-off query of ``identity``'s may cost (stdb/query/budget.py; the
        database's settings, stdb/module/settings.py)."""
        return self.db.settings.role(self._owns(identity)).query

    def settings(self, conn: Connection, request_id: int, changes: dict[str, Any]) -> None:
        """The database's settings; with ``changes``, changed first (owner only)."""
        if changes:
            self.require_owner(conn.identity, "change its settings")
            self.db.set_settings(changes)
        self._emit(conn, encode("SettingsResult", request_id=request_id,
                                settings=self.db.settings.as_dict()), None)

    def _owns(self, identity: bytes) -> bool:
        return self.db.owner is not None and identity == self.db.owner

    def _take_query(self, conn: Connection) -> RoleSettings:
        """A query of ``conn``'s against its identity's rate limit and its connection's queries
        in flight (RateLimited when over either); the settings of its role.

        Queries in flight are counted per batch of the execution thread: the requests in one
        batch arrived while the previous batch ran, so they waited in line together, and a
        connection may put at most ``queries_in_flight`` of its queries in one line."""
        rs = self.db.settings.role(self._owns(conn.identity))
        n = self._in_line[conn]
        if n >= rs.queries_in_flight:
            limit, role = rs.queries_in_flight, "owner" if self._owns(conn.identity) else "clients"
            raise RateLimited(
                f"too many queries in flight on this connection: {n:,} of its queries are ahead of this "
                f"one, and at most {limit:,} may wait at once", retry_after=rs.query.seconds,
                hint="wait for an answer before sending more queries; the database's owner sets the "
                     f"limit ({role}.queries_in_flight, stdb settings)")
        if rs.queries_per_s:
            self._query_buckets.take(conn.identity, rs.queries_per_s, rs.queries_burst, time.monotonic())
        self._in_line[conn] = n + 1
        return rs

    def sql(self, conn: Connection, request_id: int, sql: str) -> None:
        t0 = time.perf_counter()
        outcome = "error"
        try:
            self._take_query(conn)
            self._sql(conn, request_id, sql)
            outcome = "answered"
        except QueryError as e:
            if e.limit is not None:
                outcome = f"over_{e.limit}"
            elif conn.gone():
                outcome = "cancelled"
            raise
        except RateLimited:
            outcome = "rate_limited"
            raise
        finally:
            self.metrics.query(self.name, outcome, time.perf_counter() - t0)

    def _sql(self, conn: Connection, request_id: int, sql: str) -> None:
        limits = self.query_limits(conn.identity)
        refuse = None if self.follower_of is None else partial(self.not_leader, "change rows")
        res = self.db.sql(sql, sender=conn.identity, limits=limits, cancelled=conn.gone, refuse_writes=refuse)
        if isinstance(res, CallResult):
            self.broadcast(res)
            self._emit(conn, encode("OneOffQueryResult", request_id=request_id, columns=["changed_rows"],
                                    types=["u64"], rows=[[res.delta.row_count]], plan=[], more=False),
                       res.offset)
            return
        fields = {"request_id": request_id, "columns": list(res.columns), "types": list(res.types),
                  "rows": res.rows, "plan": list(res.plan)}
        msg = encode("OneOffQueryResult", **fields, more=False)
        cap = min(limits.result_bytes, conn.limits.bytes // 2)     # (the whole answer waits in the
        if len(msg) > cap:                                          # outbound queue)
            what = f"the answer is {len(msg):,} bytes"
            if len(msg) <= limits.result_bytes:
                what += f", more than half this connection's outbound queue ({conn.limits.bytes:,} bytes)"
            raise over_limit("result_bytes", cap, what, whose(self._owns(conn.identity)))
        self._emit_answer(conn, "OneOffQueryResult", fields, msg)

    def _emit_answer(self, conn: Connection, type_: str, fields: dict[str, Any], msg: bytes) -> None:
        """An answer (``msg``: ``type_`` with ``fields``, whole), in parts when it is over the
        client's max_message (docs/protocol.md, "Large results: parts"); QueryError, and
        nothing sent, when one of its rows is."""
        if len(msg) <= conn.max_message:
            self._emit(conn, msg, None)
            return
        for part in split_message(type_, fields, conn.max_message):
            self._emit(conn, part, None)

    def subscribe(self, conn: Connection, request_id: int, queries: list[str]) -> None:
        have = self.db.queries.subs.count_of(conn)
        cap = conn.limits.queries
        if have + len(queries) > cap:
            raise ProtocolError(f"too many subscribed queries: {have:,} held, {len(queries)} more asked for; "
                                f"at most {cap:,} per connection", hint="unsubscribe some first",
                                request_id=request_id)
        rs = self._take_query(conn)
        before = set(self.db.queries.subs.queries_of(conn))
        held = self._held.setdefault(conn, {})
        for q in [q for q in held if q not in before]:    # ended by a module update
            del held[q]
        subs = self.db.subscribe(queries, conn, sender=conn.identity, limits=rs.query,
                                 max_rows=rs.subscribed_rows, held=sum(held.values()), cancelled=conn.gone)
        fields = {"request_id": request_id, "queries": [
            {"query_id": s.query_id, "sql": s.sql, "table": self.db.queries.subs.plan(s.query_id).table,
             "rows": s.rows} for s in subs]}
        try:
            msg = encode("SubscribeApplied", **fields, more=False)
            self._emit_answer(conn, "SubscribeApplied", fields, msg)
        except QueryError:          # its rows cannot be sent: it subscribes nothing
            for qid in {s.query_id for s in subs} - before:
                self.db.unsubscribe(qid, conn)
            raise
        for s in subs:
            held[s.query_id] = len(s.rows)

    def unsubscribe(self, conn: Connection, request_id: int, query_ids: list[int]) -> None:
        mine = self.db.queries.subs.queries_of(conn)
        unknown = [q for q in query_ids if q not in mine]
        if unknown:
            raise ProtocolError(f"not subscribed to query id(s) {', '.join(map(str, unknown[:10]))}",
                                request_id=request_id)
        held = self._held.get(conn, {})
        for q in query_ids:
            self.db.unsubscribe(q, conn)
            held.pop(q, None)
        self._emit(conn, encode("UnsubscribeApplied", request_id=request_id, query_ids=query_ids), None)

    def not_leader(self, what: str) -> NotLeader:
        assert self.follower_of is not None
        leader = self.follower_of()
        where = f"the leader at {leader}" if leader else "the leader (none is known right now)"
        return NotLeader(f"this node follows database '{self.name}' and cannot {what}: only {where} writes",
                         hint="send writes to the leader; followers serve subscriptions and queries",
                         leader=leader)

    def require_owner(self, identity: bytes, what: str) -> None:
        if self.db.owner is not None and self.db.owner != identity:
            raise AuthError(f"only the owner of database '{self.name}' may {what}")

    def publish(self, identity: bytes, wasm: bytes, conn: Connection | None = None) -> PublishResult:
        """Publish ``wasm`` as ``identity``."""
        self.require_owner(identity, "publish to it")
        res = self.db.publish(wasm, owner=identity)
        for other in res.unsubscribed:
            if other is not conn:
                self._error(other, StdbError(f"the module of '{self.name}' was updated; subscribe again",
                                             code="resubscribe"), None)
        if res.init is not None:
            self.broadcast(res.init, None, None, identity)
        self._due_stale = True
        return res

    def publish_request(self, conn: Connection, request_id: int, wasm: bytes) -> None:
        first = self.db.schema is None
        try:
            res = self.publish(conn.identity, wasm, conn)
        except Exception as e:
            if not (first and self.db.schema is None):
                raise
            # a first publish that failed leaves no database: the answer goes out once it is gone
            why = e if isinstance(e, StdbError) else InternalError(
                f"internal error handling Publish: {type(e).__name__}")
            if why is not e:
                log.exception("%r: internal error handling Publish", conn)
            self._remove(conn, conn.error_message(why, request_id), deleted=False)
            return
        self._later(partial(self.connections.add, conn))    # a creator becomes one of its clients
        self._push(conn, encode("PublishResult", request_id=request_id, created_tables=res.created_tables,
                                altered_tables=res.altered_tables, reducers=res.reducers,
                                unsubscribed=conn in res.unsubscribed))

    def delete(self, conn: Connection, request_id: int) -> None:
        """Delete the database (owner only): closed here; the server disconnects its other
        clients, removes its files and then answers ``conn``."""
        self.require_owner(conn.identity, "delete it")
        self._remove(conn, encode("DeleteResult", request_id=request_id, database=self.name), deleted=True)

    def _remove(self, conn: Connection | None, reply: bytes | None, *, deleted: bool) -> None:
        self.removed = True
        self._close_db()
        if self.on_removed is not None:
            self._later(partial(self.on_removed, self, conn, reply, deleted))

    def describe(self, conn: Connection, request_id: int) -> None:
        self._emit(conn, encode("DescribeResult", request_id=request_id, database=self.name,
                                module=self.db.describe()), None)

    def logs(self, conn: Connection, request_id: int, limit: int, follow: bool) -> None:
        """The newest ``limit`` module log records (owner only); with ``follow``, every new one
        after them, as further LogsResult messages with the same request id."""
        self.require_owner(conn.identity, "read its logs")
        entries = fit_log_entries(list(self.db.recent_logs)[-limit:] if limit else [], conn.max_message)
        self._push(conn, encode("LogsResult", request_id=request_id, entries=entries))
        if follow:
            self.log_followers[conn] = request_id

    def snapshot(self, conn: Connection, request_id: int) -> None:
        """A snapshot now (owner only): the tables are copied here, between two requests, and
        written by a worker thread; SnapshotResult once it is on disk."""
        self.require_owner(conn.identity, "take a snapshot")
        write = self.db.store.capture_snapshot()
        self._later(partial(self._start_snapshot_write, conn, request_id, write))

    def _on_log(self, entry: dict) -> None:
        if self.log_followers:
            for conn, rid in list(self.log_followers.items()):
                self._push(conn, encode("LogsResult", request_id=rid,
                                        entries=fit_log_entries([entry], conn.max_message)))

    def connected(self, conn: Connection) -> StdbError | None:
        """client_connected for ``conn``: the module's refusal, or None."""
        try:
            self.lifecycle(conn, "connected")
        except StdbError as e:
            return e
        return None

    def disconnected(self, conn: Connection, lifecycle: bool = True) -> None:
        """``conn`` has gone: its subscriptions are freed and client_disconnected runs."""
        if self.closed:
            return
        self.db.unsubscribe_all(conn)
        self._held.pop(conn, None)
        self.log_followers.pop(conn, None)
        if not lifecycle:
            return
        try:
            self.lifecycle(conn, "disconnected")
        except StdbError as e:                # the module refused, or the commit log has failed
            log.warning("%s: client_disconnected failed for %s: %s", self.name, conn.identity.hex()[:16], e)
