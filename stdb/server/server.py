"""The server: many named databases in one data directory, clients over websockets.

``Server(data_dir).serve(host, port)`` listens on ``ws://host:port/v1/database/<name>``
(docs/protocol.md); with ``static_dir``, plain HTTP GETs on the same port get that directory's
files (stdb/server/static.py).  Layout of the data directory::

    server.key              the token signing key (0600)
    databases/<name>/       one Database (commit log, snapshots, module) per name

Threads: the I/O thread (trio) runs the listener and every connection; each database has an
execution thread of its own (stdb/server/hosted.py, stdb/server/executor.py) where its
requests, reducers, queries and scheduled reducers run.  A connection's messages are handed to
its database's thread as they are read (``submit``); the answers come back in batches.

Structured concurrency: one nursery for the databases (their threads are started and stopped
with it, and their trio tasks, the confirmed-mode senders, live in it), one for the
connections, one for the listener.  ``stop()`` (SIGINT/SIGTERM under ``run``) stops accepting,
closes every client with a reason, waits for their handlers (a running reducer finishes:
reducers run to completion), then stops each database's thread, flushes its commit log and
closes it.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import shutil
import signal
from collections.abc import Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import trio

from stdb.errors import AuthError, ProtocolError, StdbError
from stdb.module.database import Database, Limits, PublishResult
from stdb.protocol import MAX_MESSAGE_BYTES, SUBPROTOCOL, check_max_message, decode_client, encode
from stdb.server.connection import CLOSE_DELETED, CLOSE_SHUTDOWN, Connection, QueueLimits
from stdb.server.hosted import HostedDatabase, no_module
from stdb.server.identity import TokenIssuer
from stdb.server.metrics import DatabaseState, Metrics
from stdb.server.poller import Poller
from stdb.server.static import StaticFiles
from stdb.server.websocket import Request, serve_websocket
from stdb.storage.durable import StoreConfig
from stdb.storage.recovery import rewind_log

if TYPE_CHECKING:
    from stdb.replication.node import Node

__all__ = ["Server", "run", "DATABASE_NAME"]

log = logging.getLogger("stdb.server")

DATABASE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
PATH = re.compile(r"/v1/database/([^/?]+)")


class Server:
    def __init__(self, data_dir: str, *, limits: Limits | None = None, store: StoreConfig | None = None,
                 queue: QueueLimits | None = None, max_message_bytes: int = MAX_MESSAGE_BYTES,
                 issuer: TokenIssuer | None = None, static_dir: str | None = None,
                 node: Node | None = None) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.limits = limits
        self.store_config = store
        self.queue = queue or QueueLimits()
        self.max_message_bytes = max_message_bytes
        os.makedirs(os.path.join(self.data_dir, "databases"), exist_ok=True)
        self.issuer = issuer or TokenIssuer.load_or_create(self.data_dir)
        # plain HTTP GETs on the websocket's port serve these files (stdb/server/static.py)
        self.static = StaticFiles(static_dir) if static_dir is not None else None
        self.databases: dict[str, HostedDatabase] = {}
        self.metrics = Metrics(self._states)
        self.connections: set[Connection] = set()
        self.poller: Poller | None = None          # reads every connection's socket (while serving)
        # requests the poller reads in its current wake, per database, handed across at its end
        # (None outside a wake: a request goes across at once)
        self._batch: dict[HostedDatabase, list[tuple[Connection, Sequence[bytes | str]]]] | None = None
        self.port: int | None = None
        self._stop = trio.Event()
        self._gone = trio.Event()                 # set whenever a connection ends
        self._db_nursery: trio.Nursery | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        # replication (stdb/replication/, docs/replication.md): this node's part in a cluster
        self.node = node

    # ---- databases

    def database_path(self, name: str) -> str:
        return os.path.join(self.data_dir, "databases", name)

    _path = database_path

    def _open(self, name: str) -> HostedDatabase:
        h = HostedDatabase(name, Database(self._path(name), limits=self.limits, config=self.store_config),
                           self.metrics, on_removed=self._removed)
        self.databases[name] = h
        if self.node is not None:
            h.follower_of = self.node.leader_url        # until this node leads
            self.node.opened(h)
        self._start(h)
        return h

    # ---- replicas (the node's hand-offs, on this thread)

    def adopt_token_key(self, key: bytes) -> None:
        self.issuer.adopt(self.data_dir, key)

    def open_replica(self, name: str) -> HostedDatabase:
        h = self.databases.get(name)
        return h if h is not None else self._open(name)

    def _close_replica(self, name: str, why: str) -> None:
        h = self.databases.pop(name, None)
        if h is None:
            return
        for c in list(h.connections):
            c.kill(why, CLOSE_SHUTDOWN)
        h.cancel()
        h.close()

    def drop_replica(self, name: str) -> None:
        """The cluster deleted database ``name``: this copy goes."""
        self._close_replica(name, f"database '{name}' was deleted")
        shutil.rmtree(self._path(name), ignore_errors=True)

    def reopen_replica(self, name: str, offset: int) -> HostedDatabase:
        """This copy's log went past the stream's from ``offset`` on (it led, and its last commits
        were not replicated): those records go, the database is recovered again, and its clients
        (whose caches saw them) are disconnected."""
        self._close_replica(name, f"database '{name}' rewound to the replicated log after a failover; "
                                  "reconnect")
        rewind_log(self._path(name), offset)
        return self._open(name)

    def _start(self, h: HostedDatabase) -> None:
        if self._db_nursery is not None and self._token is not None:
            h.start(self._token, self.poller)
            self._db_nursery.start_soon(h.run)

    def _states(self) -> Iterator[DatabaseState]:
        """Each database's gauges (stdb/server/metrics.py; runs on the HTTP thread)."""
        for name, h in list(self.databases.items()):
            clients = len(h.connections.copy())
            if h.closed:
                yield DatabaseState(name, clients)
                continue
            store = h.db.store
            log_ = store.log
            rep = self.node.states().get(name) if self.node is not None else None
            yield DatabaseState(name, clients, len(h.db.queries.subs),
                                max(0, log_.next_offset - 1 - log_.durable_offset),
                                log_.failed is not None, store.snapshot_error is not None,
                                rep.get("lag_records") if rep else None,
                                rep.get("lag_seconds") if rep else None)

    def publish(self, name: str, identity: bytes, wasm: bytes) -> PublishResult:
        """Publish ``wasm`` to database ``name`` as ``identity`` (creating the database: the
        first publisher owns it), on the calling thread: for use before the server serves
        (``stdb start --demo``); clients publish with a Publish request."""
        if self._token is not None:
            raise RuntimeError("the server is serving: publish through a connection")
        h = self.databases.get(name)
        created = h is None
        if h is None:
            h = self._open(name)
        try:
            return h.publish(identity, wasm)
        except BaseException:
            if created and h.db.schema is None:         # a first publish that failed leaves nothing
                self._forget(h)
            raise
        finally:
            h.flush()

    def _removed(self, h: HostedDatabase, conn: Connection | None, reply: bytes | None,
                 deleted: bool) -> None:
        """Database ``h`` was deleted (``conn`` asked) or its first publish failed: its other
        clients are disconnected, its thread ends, its files go, then ``reply`` goes to ``conn``."""
        if deleted:
            for c in list(h.connections):
                if c is not conn:
                    c.kill(f"database '{h.name}' was deleted by its owner", CLOSE_DELETED)
            log.info("%s: deleted by %s", h.name, conn.identity.hex()[:16] if conn else "?")
        if self.node is not None:
            self.node.removed(h.name, deleted)
        if self._db_nursery is None:
            self._forget(h, conn, reply)
            return
        h.cancel()
        h.thread.stop(timeout=0)            # nothing more is queued behind the delete
        self._db_nursery.start_soon(self._finish_removal, h, conn, reply)

    async def _finish_removal(self, h: HostedDatabase, conn: Connection | None, reply: bytes | None) -> None:
        await trio.to_thread.run_sync(h.close)          # its thread finishes its batch first
        self._forget(h, conn, reply)

    def _forget(self, h: HostedDatabase, conn: Connection | None = None, reply: bytes | None = None) -> None:
        """Close ``h``, drop it and remove its files; then ``reply`` goes to ``conn``."""
        h.close()
        if self.databases.get(h.name) is h:
            del self.databases[h.name]
        try:
            shutil.rmtree(self._path(h.name))
        except OSError as e:
            log.error("%s: removing its files failed: %s", h.name, e)
        if conn is not None and reply is not None:
            conn.push(reply)

    def open_existing(self) -> None:
        """Open (recover) every database in the data directory not open yet."""
        for name in sorted(os.listdir(os.path.join(self.data_dir, "databases"))):
            if DATABASE_NAME.fullmatch(name) and name not in self.databases:
                log.info("opening database %s", name)
                self._open(name)

    # ---- serving

    def stop(self) -> None:
        self._stop.set()

    async def run_databases(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Run every database's execution thread and trio task until cancelled; then stop the
        threads (what they have queued runs first) and close the databases."""
        try:
            async with trio.open_nursery() as dbs:
                self._token = trio.lowlevel.current_trio_token()
                self._db_nursery = dbs
                for h in list(self.databases.values()):
                    self._start(h)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._db_nursery = None
            hosted = list(self.databases.values())
            for h in hosted:
                h.cancel()
                h.thread.stop(timeout=0)
            for h in hosted:
                h.close()
            self._token = None

    async def serve(self, host: str = "127.0.0.1", port: int = 3000, *,
                    task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.open_existing()
        # reads every connection's socket and carries the databases' answers back to this thread
        poller = self.poller = Poller(begin=self._gather, end=self._hand_across)
        try:
            async with trio.open_nursery() as dbs:
                await dbs.start(self.run_databases)
                if self.node is not None:
                    assert self._token is not None
                    await trio.to_thread.run_sync(self.node.start, self, self._token)
                async with trio.open_nursery() as conns:
                    conns.start_soon(poller.run)
                    async with trio.open_nursery() as listener:
                        self.port = await listener.start(partial(
                            serve_websocket, self._handle, host, port, handler_nursery=conns,
                            max_message=self.max_message_bytes,
                            http=self.static.respond if self.static else None))
                        log.info("stdb listening on ws://%s:%d/v1/database/<name> (data in %s)",
                                 host, self.port, self.data_dir)
                        if self.static:
                            log.info("serving the files of %s at http://%s:%d/", self.static.root,
                                     host, self.port)
                        if self.node is not None:
                            self.node.run(f"ws://{host}:{self.port}")
                        task_status.started(self.port)
                        await self._stop.wait()
                        listener.cancel_scope.cancel()
                    for c in list(self.connections):
                        c.kill("the server is shutting down", CLOSE_SHUTDOWN)
                    # our connections close themselves (each with its reason); what else the
                    # websocket library keeps in the nursery (refused handshakes) is cancelled
                    with trio.move_on_after(10):
                        while self.connections:
                            self._gone = trio.Event()
                            await self._gone.wait()
                    conns.cancel_scope.cancel()
                if self.node is not None:
                    await trio.to_thread.run_sync(self.node.stop)
                dbs.cancel_scope.cancel()
        finally:
            poller.close()
            self.poller = None
            self._batch = None
            self.metrics.close()
            log.info("stdb stopped")

    # ---- what a connection needs of the server (stdb/server/connection.py, Host)

    def submit(self, conn: Connection, data: bytes | str) -> None:
        if conn.database in self.databases:
            self.submit_many(conn, [data])
            return
        # no such database: only a Publish (the first publisher creates it and owns it)
        try:
            msg = decode_client(data)
        except StdbError as e:
            conn.error(e, getattr(e, "request_id", None))
            conn.handled()
            return
        if msg["type"] == "Publish":
            self._open(conn.database).submit_request(conn, data)
            return
        if msg["type"] == "DeleteDatabase":
            why = StdbError(f"there is no database '{conn.database}'", code="no_such_database")
        else:
            why = no_module(conn.database)
        conn.error(why, msg["request_id"])
        conn.handled()

    def submit_many(self, conn: Connection, msgs: Sequence[bytes | str]) -> None:
        h = self.databases.get(conn.database)
        if h is None:
            for data in msgs:
                self.submit(conn, data)
            return
        batch = self._batch
        if batch is None:
            h.submit_requests([(conn, msgs)])
        else:                   # the poller's wake hands each database its requests at once
            reqs = batch.get(h)
            if reqs is None:
                batch[h] = [(conn, msgs)]
            else:
                reqs.append((conn, msgs))

    def _gather(self) -> None:
        self._batch = {}

    def _hand_across(self) -> None:
        """After each of the poller's wakes: every database's requests of it, one job each."""
        batch, self._batch = self._batch, None
        if batch:
            for h, reqs in batch.items():
                h.submit_requests(reqs)

    async def attach(self, conn: Connection) -> StdbError | None:
        h = self.databases.get(conn.database)
        if h is None:
            return None
        h.connections.add(conn)
        refusal: StdbError | None = await h.run_job(partial(h.connected, conn))
        return refusal

    async def detach(self, conn: Connection, lifecycle: bool) -> None:
        h = self.databases.get(conn.database)
        if h is None:
            return
        try:
            await h.run_job(partial(h.disconnected, conn, lifecycle))
        finally:
            h.connections.discard(conn)

    async def _handle(self, request: Request) -> None:
        url = urlsplit(request.path)
        m = PATH.fullmatch(url.path)
        name = unquote(m.group(1)) if m else ""
        if not m or not DATABASE_NAME.fullmatch(name):
            await request.reject(404, body=b"connect to /v1/database/<name> (lowercase letters, digits, _ -)")
            return
        if SUBPROTOCOL not in request.proposed_subprotocols:
            await request.reject(400, body=f"ask for the websocket subprotocol {SUBPROTOCOL}".encode())
            return
        params = parse_qs(url.query)
        try:
            # (an empty value is refused too, not taken for no value)
            asked = parse_qs(url.query, keep_blank_values=True).get("max_message", [MAX_MESSAGE_BYTES])[0]
            max_message = check_max_message(asked)
        except ProtocolError as e:
            await request.reject(400, body=e.detail.encode())
            return
        token = params.get("token", [None])[0]
        for k, v in request.headers:
            if k.lower() == b"authorization" and v.lower().startswith(b"bearer "):
                token = v[7:].decode("latin-1").strip()
        try:
            if token is None:
                identity, token = self.issuer.new_identity()
            else:
                identity = self.issuer.verify(token)
        except AuthError as e:
            await request.reject(401, body=f"{e.code}: {e.detail}".encode())
            return
        confirmed = params.get("confirmed", ["false"])[0].lower() in ("1", "true", "yes")
        ws = await request.accept(subprotocol=SUBPROTOCOL)
        conn = Connection(self, ws, identity, name, confirmed=confirmed, limits=self.queue,
                          max_message=max_message)
        self.connections.add(conn)
        self.metrics.connections.inc()
        try:
            await conn.serve(encode("IdentityToken", identity=identity, token=token,
                                    connection_id=conn.connection_id, database=name))
        except Exception:       # a bug of ours in one connection must not end the server
            log.exception("%r: the connection failed", conn)
        finally:
            self.connections.discard(conn)
            self._gone.set()


def _tune_gc() -> None:
    """For the server process, once it has started: what exists now (modules, databases, the
    schema objects) moves out of the cyclic collector's sight for good (``gc.freeze``), and young
    objects are collected every 10,000 allocations instead of 700.  Each call allocates a few
    hundred short-lived objects, nearly all freed by reference counting; the default threshold
    ran a collection every couple of calls.  Measured at 50 clients: +4–9% calls/s (issue 7)."""
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


async def run(server: Server, host: str, port: int, port_file: str | None = None) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully.  With ``port_file``, the port
    the server listens on (the one the system chose for port 0) is written there once it
    listens — atomically (a temporary file renamed), so a reader never sees half a number."""
    async with trio.open_nursery() as n:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async def watch() -> None:
                async for sig in signals:
                    log.info("received %s: shutting down", signal.Signals(sig).name)
                    server.stop()
                    return
            n.start_soon(watch)
            async with trio.open_nursery() as serving:
                bound = await serving.start(partial(server.serve, host, port))
                _tune_gc()
                if port_file is not None:
                    tmp = f"{port_file}.{os.getpid()}.tmp"
                    with open(tmp, "w") as f:
                        f.write(f"{bound}\n")
                    os.replace(tmp, port_file)
            n.cancel_scope.cancel()
