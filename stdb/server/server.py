"""The server: many named databases in one data directory, clients over websockets.

``Server(data_dir).serve(host, port)`` listens on ``ws://host:port/v1/database/<name>``
(docs/protocol.md).  Layout of the data directory::

    server.key              the token signing key (0600)
    databases/<name>/       one Database (commit log, snapshots, module) per name

Structured concurrency: one nursery for the databases' own tasks (schedulers, durability
watchers), one for the connections, one for the listener.  ``stop()`` (SIGINT/SIGTERM under
``run``) stops accepting, closes every client with a reason, waits for their handlers (a
running reducer finishes: reducers run to completion on the trio thread), flushes every commit
log and closes the databases.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import shutil
import signal
from functools import partial
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import trio

from stdb.errors import AuthError, StdbError
from stdb.module.database import Database, Limits, PublishResult
from stdb.protocol import MAX_MESSAGE_BYTES, SUBPROTOCOL, encode
from stdb.server.connection import CLOSE_DELETED, CLOSE_SHUTDOWN, Connection, QueueLimits
from stdb.server.hosted import HostedDatabase
from stdb.server.identity import TokenIssuer
from stdb.server.metrics import Metrics
from stdb.server.requests import Requests
from stdb.server.websocket import Request, serve_websocket
from stdb.storage.durable import StoreConfig

__all__ = ["Server", "run", "DATABASE_NAME"]

log = logging.getLogger("stdb.server")

DATABASE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
PATH = re.compile(r"/v1/database/([^/?]+)")


class Server:
    def __init__(self, data_dir: str, *, limits: Limits | None = None, store: StoreConfig | None = None,
                 queue: QueueLimits | None = None, max_message_bytes: int = MAX_MESSAGE_BYTES,
                 issuer: TokenIssuer | None = None) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.limits = limits
        self.store_config = store
        self.queue = queue or QueueLimits()
        self.max_message_bytes = max_message_bytes
        os.makedirs(os.path.join(self.data_dir, "databases"), exist_ok=True)
        self.issuer = issuer or TokenIssuer.load_or_create(self.data_dir)
        self.databases: dict[str, HostedDatabase] = {}
        self.metrics = Metrics(self)
        self.connections: set[Connection] = set()
        self.requests = Requests()                # every connection's requests, in batches
        self.port: int | None = None
        self._stop = trio.Event()
        self._gone = trio.Event()                 # set whenever a connection ends
        self._db_nursery: trio.Nursery | None = None

    # ---- databases

    def _path(self, name: str) -> str:
        return os.path.join(self.data_dir, "databases", name)

    def _open(self, name: str) -> HostedDatabase:
        h = HostedDatabase(name, Database(self._path(name), limits=self.limits, config=self.store_config),
                           self.metrics)
        self.databases[name] = h
        if self._db_nursery is not None:
            self._db_nursery.start_soon(h.run)
        return h

    def publish(self, name: str, identity: bytes, wasm: bytes,
                conn: Connection | None = None) -> PublishResult:
        """Publish ``wasm`` to database ``name`` as ``identity`` (creating the database: the
        first publisher owns it)."""
        h = self.databases.get(name)
        if h is None:
            h = self._open(name)
            try:
                return h.publish(identity, wasm, conn)
            except BaseException:
                if h.db.schema is None:          # a first publish that failed leaves nothing
                    del self.databases[name]
                    h.close()
                    shutil.rmtree(self._path(name), ignore_errors=True)
                raise
        return h.publish(identity, wasm, conn)

    def delete(self, name: str, identity: bytes, conn: Connection | None = None) -> None:
        """Delete database ``name`` and its data (owner only): its other clients are
        disconnected with a reason saying so."""
        h = self.databases.get(name)
        if h is None:
            raise StdbError(f"there is no database '{name}'", code="no_such_database")
        h.require_owner(identity, "delete it")
        for c in list(h.connections):
            if c is not conn:
                c.kill(f"database '{name}' was deleted by its owner", CLOSE_DELETED)
        del self.databases[name]
        h.close()
        shutil.rmtree(self._path(name))
        log.info("%s: deleted by %s", name, identity.hex()[:16])

    def open_existing(self) -> None:
        """Open (recover) every database in the data directory not open yet."""
        for name in sorted(os.listdir(os.path.join(self.data_dir, "databases"))):
            if DATABASE_NAME.fullmatch(name) and name not in self.databases:
                log.info("opening database %s", name)
                self._open(name)

    # ---- serving

    def stop(self) -> None:
        self._stop.set()

    async def serve(self, host: str = "127.0.0.1", port: int = 3000, *,
                    task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.open_existing()
        try:
            async with trio.open_nursery() as dbs:
                self._db_nursery = dbs
                for h in self.databases.values():
                    dbs.start_soon(h.run)
                async with trio.open_nursery() as conns:
                    conns.start_soon(self.requests.run)
                    async with trio.open_nursery() as listener:
                        self.port = await listener.start(partial(
                            serve_websocket, self._handle, host, port, handler_nursery=conns,
                            max_message=self.max_message_bytes))
                        log.info("stdb listening on ws://%s:%d/v1/database/<name> (data in %s)",
                                 host, self.port, self.data_dir)
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
                dbs.cancel_scope.cancel()
        finally:
            self._db_nursery = None
            for h in self.databases.values():
                h.close()
            self.metrics.close()
            log.info("stdb stopped")

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
        conn = Connection(self, ws, identity, name, confirmed=confirmed, limits=self.queue)
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
