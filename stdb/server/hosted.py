"""One database as the server hosts it: its calls, its subscribers and what they are sent.

Reducers, SQL, subscriptions and lifecycle calls of one database run one at a time on the trio
thread (a call is bounded by the module's fuel, time and memory limits); the commit log's
group-commit writer fsyncs in its own thread.  After each commit the diffs go to every
subscribed connection's bounded outbound queue without waiting for any client: a client that
cannot keep up is disconnected (``Connection.push``).  A connection in confirmed mode receives
each update only once the commit log's durable offset has passed the update's offset
(``_durability_watcher``).  Schedule rows run at their time (``_scheduler``).  The module's
log records go to the connections following them (``Logs`` with ``follow``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from stdb.errors import AuthError, InternalError, ProtocolError, ReducerError, StdbError, StorageError
from stdb.module.database import CallResult, Database, PublishResult
from stdb.protocol import encode
from stdb.query.service import QueryDiff

if TYPE_CHECKING:
    from stdb.server.connection import Connection
    from stdb.server.metrics import Metrics
    from stdb.storage.snapshot import SnapshotInfo

__all__ = ["HostedDatabase"]

log = logging.getLogger("stdb.server")


class HostedDatabase:
    def __init__(self, name: str, db: Database, metrics: Metrics) -> None:
        self.name = name
        self.db = db
        self.metrics = metrics
        self.connections: set[Connection] = set()
        self.log_followers: dict[Connection, int] = {}   # connection -> its Logs request id
        db.on_log = self._on_log
        self._scope: trio.CancelScope | None = None
        self._wake = trio.Event()                       # a commit happened: re-check schedules
        self._pending: deque[tuple[int, Connection, bytes]] = deque()   # confirmed-mode queue
        self._pending_of: Counter[Connection] = Counter()             # its messages per connection
        self._pending_event = trio.Event()
        self._last_offset = 0
        self._nursery: trio.Nursery | None = None
        self.closed = False

    # ---- tasks (started by the server in the database's nursery)

    async def run(self) -> None:
        with trio.CancelScope() as self._scope:
            if self.closed:
                return
            async with trio.open_nursery() as n:
                self._nursery = n
                n.start_soon(self._scheduler)
                n.start_soon(self._durability_watcher)

    async def _scheduler(self) -> None:
        while True:
            due = self.db.next_due() if self.db.schema is not None else None
            delay = 3600.0 if due is None else max(0.0, (due - self.db.clock()) / 1e6)
            with trio.move_on_after(delay):
                await self._wake.wait()
            self._wake = trio.Event()
            if self.db.schema is None:
                continue
            try:
                done = self.db.run_due()
            except StdbError as e:          # e.g. the commit log failed: no schedule can commit
                log.error("%s: scheduled reducers cannot run: %s", self.name, e)
                done = []
                await trio.sleep(5)
            for res in done:
                if isinstance(res, CallResult):
                    self.metrics.call(self.name, res.reducer, "committed", res.duration_s, res.fuel_used)
                    self.broadcast(res)
                else:
                    self.metrics.call(self.name, res.reducer or "", res.kind, 0.0)
                    log.warning("%s: scheduled reducer %s failed: %s", self.name, res.reducer, res.detail)
            await trio.lowlevel.checkpoint()

    async def _durability_watcher(self) -> None:
        while True:
            await self._pending_event.wait()
            self._pending_event = trio.Event()
            while self._pending:
                target = self._pending[-1][0]
                try:
                    await trio.to_thread.run_sync(self.db.store.wait_durable, target, abandon_on_cancel=True)
                except StorageError as e:
                    log.error("%s: the commit log failed; confirmed clients are disconnected: %s",
                              self.name, e)
                    for _, conn, _ in self._pending:
                        conn.kill(f"the database cannot make commits durable: {e.detail}")
                    self._pending.clear()
                    self._pending_of.clear()
                    break
                durable = self.db.store.durable_offset
                while self._pending and self._pending[0][0] <= durable:
                    _, conn, msg = self._pending.popleft()
                    self._pending_of[conn] -= 1
                    if not self._pending_of[conn]:
                        del self._pending_of[conn]
                    conn.push(msg)

    # ---- sending

    def _send(self, conn: Connection, msg: bytes, offset: int | None) -> None:
        if not conn.confirmed:
            conn.push(msg)
            return
        # in order: a message without an offset of its own waits for everything before it
        off = self._last_offset if offset is None else offset
        if off <= self.db.store.durable_offset and conn not in self._pending_of:
            conn.push(msg)
            return
        self._pending.append((off, conn, msg))
        self._pending_of[conn] += 1
        self._pending_event.set()

    def _note_commit(self, offset: int | None) -> None:
        if offset is not None:
            self._last_offset = max(self._last_offset, offset)
            self.metrics.commit(self.name)
        self._wake.set()

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
            for conn, qids in per_conn.items():
                if conn is caller:
                    continue
                key = tuple(qids)
                msg = shared.get(key)
                if msg is None:
                    msg = shared[key] = encode("TransactionUpdate", **base, request_id=None,
                                               updates=[entries[q] for q in qids])
                self._send(conn, msg, res.offset)
        if caller is not None:
            qids = per_conn.get(caller, [])
            self._send(caller, encode("TransactionUpdate", **base, request_id=request_id,
                                      updates=[entries[q] for q in qids]), res.offset)

    def _entry(self, qid: int, d: QueryDiff) -> dict:
        return {"query_id": qid, "table": self.db.queries.subs.plan(qid).table,
                "deletes": d.deletes, "inserts": d.inserts}

    def send_failure(self, conn: Connection, request_id: int, reducer: str, e: ReducerError) -> None:
        status = {"error": "failed"}.get(e.kind, e.kind)
        self._send(conn, encode("TransactionUpdate", offset=None, timestamp=int(time.time() * 1e6),
                                reducer=reducer, caller=conn.identity, status=status,
                                message=e.message or e.detail, request_id=request_id, updates=[]), None)

    # ---- requests

    def call(self, conn: Connection, request_id: int, reducer: str, args: list) -> None:
        """Run a reducer for ``conn``.  A request that cannot run (no such reducer, a lifecycle
        reducer, arguments of the wrong types) raises, and the client gets an Error; a reducer
        that ran and failed is the caller's TransactionUpdate with its status."""
        rd = self.db.reducer(reducer)
        if rd.lifecycle is not None:
            raise ReducerError(f"reducer '{reducer}' is the {rd.lifecycle} lifecycle reducer; "
                               "the database calls it itself", reducer=reducer)
        t0 = time.perf_counter()
        try:
            res = self.db.call(reducer, tuple(args), sender=conn.identity, connection_id=conn.connection_id)
        except ReducerError as e:
            self.metrics.call(self.name, reducer, e.kind, time.perf_counter() - t0)
            self.send_failure(conn, request_id, reducer, e)
            return
        self.metrics.call(self.name, reducer, "committed", res.duration_s, res.fuel_used)
        self.broadcast(res, conn, request_id)

    def lifecycle(self, conn: Connection, kind: str) -> None:
        """client_connected / client_disconnected; ReducerError if the module refused."""
        if self.db.schema is None:
            return
        fn = self.db.client_connected if kind == "connected" else self.db.client_disconnected
        res = fn(conn.identity, conn.connection_id)
        if res is not None:
            self.broadcast(res, None, None, conn.identity)

    def sql(self, conn: Connection, request_id: int, sql: str) -> None:
        res = self.db.sql(sql, sender=conn.identity)
        if isinstance(res, CallResult):
            self.broadcast(res)
            self._send(conn, encode("OneOffQueryResult", request_id=request_id, columns=["changed_rows"],
                                    rows=[[res.delta.row_count]], plan=[]), res.offset)
        else:
            self._send(conn, encode("OneOffQueryResult", request_id=request_id, columns=list(res.columns),
                                    rows=res.rows, plan=list(res.plan)), None)

    def subscribe(self, conn: Connection, request_id: int, queries: list[str]) -> None:
        have = self.db.queries.subs.count_of(conn)
        cap = conn.limits.queries
        if have + len(queries) > cap:
            raise ProtocolError(f"too many subscribed queries: {have:,} held, {len(queries)} more asked for; "
                                f"at most {cap:,} per connection", hint="unsubscribe some first",
                                request_id=request_id)
        subs = self.db.subscribe(queries, conn, sender=conn.identity)
        self._send(conn, encode("SubscribeApplied", request_id=request_id, queries=[
            {"query_id": s.query_id, "sql": s.sql, "table": self.db.queries.subs.plan(s.query_id).table,
             "rows": s.rows} for s in subs]), None)

    def unsubscribe(self, conn: Connection, request_id: int, query_ids: list[int]) -> None:
        mine = self.db.queries.subs.queries_of(conn)
        unknown = [q for q in query_ids if q not in mine]
        if unknown:
            raise ProtocolError(f"not subscribed to query id(s) {', '.join(map(str, unknown[:10]))}",
                                request_id=request_id)
        for q in query_ids:
            self.db.unsubscribe(q, conn)
        self._send(conn, encode("UnsubscribeApplied", request_id=request_id, query_ids=query_ids), None)

    def require_owner(self, identity: bytes, what: str) -> None:
        if self.db.owner is not None and self.db.owner != identity:
            raise AuthError(f"only the owner of database '{self.name}' may {what}")

    def publish(self, identity: bytes, wasm: bytes, conn: Connection | None = None) -> PublishResult:
        self.require_owner(identity, "publish to it")
        res = self.db.publish(wasm, owner=identity)
        for other in res.unsubscribed:
            if other is not conn:
                other.error(StdbError(f"the module of '{self.name}' was updated; subscribe again",
                                      code="resubscribe"), None)
        if res.init is not None:
            self.broadcast(res.init, None, None, identity)
        self._wake.set()
        return res

    def describe(self, conn: Connection, request_id: int) -> None:
        self._send(conn, encode("DescribeResult", request_id=request_id, database=self.name,
                                module=self.db.describe()), None)

    def logs(self, conn: Connection, request_id: int, limit: int, follow: bool) -> None:
        """The newest ``limit`` module log records (owner only); with ``follow``, every new one
        after them, as further LogsResult messages with the same request id."""
        self.require_owner(conn.identity, "read its logs")
        entries = list(self.db.recent_logs)[-limit:] if limit else []
        conn.push(encode("LogsResult", request_id=request_id, entries=entries))
        if follow:
            self.log_followers[conn] = request_id

    def snapshot(self, conn: Connection, request_id: int) -> None:
        """A snapshot now (owner only): the tables are copied here, between two requests, and
        written by a worker thread; SnapshotResult once it is on disk."""
        self.require_owner(conn.identity, "take a snapshot")
        if self._nursery is None:
            raise StdbError(f"database '{self.name}' is not running", code="no_such_database")
        write = self.db.store.capture_snapshot()
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

    def _on_log(self, entry: dict) -> None:
        if self.log_followers:
            for conn, rid in list(self.log_followers.items()):
                conn.push(encode("LogsResult", request_id=rid, entries=[entry]))

    def disconnect(self, conn: Connection, lifecycle: bool = True) -> None:
        self.db.unsubscribe_all(conn)
        self.connections.discard(conn)
        self.log_followers.pop(conn, None)
        if not lifecycle:
            return
        try:
            self.lifecycle(conn, "disconnected")
        except StdbError as e:                # the module refused, or the commit log has failed
            log.warning("%s: client_disconnected failed for %s: %s", self.name, conn.identity.hex()[:16], e)

    def close(self) -> None:
        """Stop the database's tasks and close it (its commit log is flushed first)."""
        if self._scope is not None:
            self._scope.cancel()
        if not self.closed:
            self.closed = True
            try:
                self.db.store.flush(timeout=10)
            except StdbError as e:
                log.error("%s: flushing the commit log failed: %s", self.name, e)
            self.db.close()
