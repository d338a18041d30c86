"""One client connection: its identity, its bounded outbound queue and its requests.

The outbound queue is bounded in messages and in bytes.  ``push`` never waits (the commit path
calls it): a message that does not fit disconnects the client with a close reason saying so,
and its subscriptions are freed.  Requests are handled in order; each bad one gets an ``Error``
naming the problem (with its request id when it had a readable one) and changes nothing.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any

import trio

from stdb.errors import InternalError, StdbError
from stdb.protocol import decode_client, encode
from stdb.server.websocket import Closed, Framed, WebSocket

if TYPE_CHECKING:
    from stdb.server.hosted import HostedDatabase
    from stdb.server.server import Server

__all__ = ["Connection", "QueueLimits"]

log = logging.getLogger("stdb.server")

CLOSE_TOO_SLOW = 4008          # websocket close codes of our own (4000-4999 are the application's)
CLOSE_REFUSED = 4003
CLOSE_DELETED = 4004
CLOSE_SHUTDOWN = 1001
SEND_BATCH_BYTES = 1 << 18      # the sender writes at most about this much at once
MAX_INFLIGHT = 64               # a connection's requests submitted and not yet handled, at most


class QueueLimits:
    """Per connection: the outbound queue's bound in messages and bytes, and how many queries
    it may hold subscribed at once."""

    def __init__(self, messages: int = 1024, bytes_: int = 16 << 20, queries: int = 4096) -> None:
        self.messages = messages
        self.bytes = bytes_
        self.queries = queries


class Connection:
    def __init__(self, server: Server, ws: WebSocket, identity: bytes, database: str, *,
                 confirmed: bool, limits: QueueLimits) -> None:
        self.server = server
        self.ws = ws
        self.identity = identity
        self.connection_id = secrets.token_bytes(16)
        self.database = database
        self.confirmed = confirmed
        self.limits = limits
        self._send, self._recv = trio.open_memory_channel[bytes](limits.messages)
        self.queued_bytes = 0
        self.queued_messages = 0                  # what the channel holds (its statistics() allocates)
        self.close_reason: tuple[int, str] | None = None
        self._scope: trio.CancelScope | None = None
        self._room: trio.Event | None = None      # set when the backlog has drained (see _receive)
        self._out_closed = False                  # nothing more may be queued (a refused client)
        self._inflight = 0                        # requests submitted, not yet handled
        self._handled: trio.Event | None = None   # set when one is handled (see _wait_inflight)

    def _hosted(self) -> HostedDatabase | None:
        return self.server.databases.get(self.database)

    def __repr__(self) -> str:
        return f"<Connection {self.identity.hex()[:12]} to {self.database}>"

    # ---- outbound

    def push(self, msg: bytes) -> None:
        """Queue one message; never waits.  A client past its bound is disconnected.  While
        the server handles a batch of requests, the message waits for the batch's end."""
        if self.close_reason is not None or self.server.requests.defer(self, msg):
            return
        if not self.queued_bytes and not self._out_closed:
            # nothing waiting before it: write it now if the socket takes it (no task switch)
            rest = self.ws.send_nowait(msg)
            self.server.metrics.sent(1, len(msg))
            if rest is None:
                return
            msg = rest                # the sender writes what the socket did not take (or, when
                                      # empty, has the websocket write the rest it keeps)
        if self.queued_bytes + len(msg) > self.limits.bytes:
            self.kill(f"client too slow: {self.queued_bytes + len(msg):,} bytes queued "
                      f"(at most {self.limits.bytes:,})", CLOSE_TOO_SLOW)
            return
        try:
            self._send.send_nowait(msg)
        except trio.ClosedResourceError:          # closing (a refused connection): nothing more
            return
        except trio.WouldBlock:
            self.kill(f"client too slow: {self.limits.messages:,} messages queued", CLOSE_TOO_SLOW)
            return
        self.queued_bytes += len(msg)
        self.queued_messages += 1

    def kill(self, reason: str, code: int = CLOSE_REFUSED) -> None:
        """Disconnect (from any task, without waiting): the connection's tasks stop and the
        websocket is closed with ``reason``."""
        if self.close_reason is None:
            self.close_reason = (code, reason)
            if code == CLOSE_TOO_SLOW:
                self.server.metrics.disconnected_slow.inc()
            log.log(logging.INFO if code == CLOSE_SHUTDOWN else logging.WARNING,
                    "%r: disconnecting: %s", self, reason)
        if self._scope is not None:
            self._scope.cancel()

    def error(self, e: StdbError, request_id: int | None) -> None:
        d = e.to_dict()
        self.push(encode("Error", request_id=request_id, code=d["code"], detail=d["detail"], hint=d["hint"]))

    async def _sender(self, drained: trio.Event) -> None:
        metrics = self.server.metrics
        try:
            async for msg in self._recv:
                # everything queued by now goes out in one write (fewer syscalls under load)
                batch, size = [msg], len(msg)
                while size < SEND_BATCH_BYTES:
                    try:
                        more = self._recv.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    batch.append(more)
                    size += len(more)
                self.queued_bytes -= size
                self.queued_messages -= len(batch)
                await self.ws.send_messages(batch)
                # Framed items came from push, which counted them
                sent = [m for m in batch if not isinstance(m, Framed)]
                if sent:
                    metrics.sent(len(sent), sum(map(len, sent)))
                if self._room is not None:
                    n, b = self._backlog()
                    if n * 4 <= self.limits.messages and b * 4 <= self.limits.bytes:
                        self._room.set()            # down to a quarter: read requests again
                        self._room = None
        except Closed:
            # the client went away with messages still queued: end this connection only
            if self._scope is not None:
                self._scope.cancel()
        finally:
            drained.set()

    # ---- the connection's life

    async def serve(self, hello: bytes) -> None:
        """Send ``hello`` (the IdentityToken), run client_connected, then handle requests
        until the client leaves or is disconnected."""
        hosted = self._hosted()
        refused = None
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as n:
                drained = trio.Event()
                n.start_soon(self._sender, drained)
                self.push(hello)
                if hosted is not None:
                    hosted.connections.add(self)
                    try:
                        hosted.lifecycle(self, "connected")
                    except StdbError as e:
                        self.error(e, None)
                        refused = f"client_connected refused the connection: {e.detail}"
                if refused is None:
                    try:
                        await self._receive()
                    except Closed:
                        pass
                    # what the client sent before it left is handled (and answered, if it
                    # still listens) before client_disconnected runs
                    await self._wait_inflight(0)
                else:
                    # the IdentityToken and the Error go out before the close that says why
                    self._out_closed = True
                    self._send.close()
                    with trio.move_on_after(2):
                        await drained.wait()
                    self.kill(refused)
                n.cancel_scope.cancel()
        hosted = self._hosted()
        if hosted is not None:
            # a client that client_connected refused was never connected: no client_disconnected
            hosted.disconnect(self, lifecycle=refused is None)
        if self.close_reason is not None:
            code, reason = self.close_reason
            with trio.move_on_after(2):
                await self.ws.aclose(code, reason[:120])

    def _backlog(self) -> tuple[int, int]:
        return self.queued_messages, self.queued_bytes

    async def _receive(self) -> None:
        limits = self.limits
        while True:
            # Read-side backpressure: while this client's own answers fill more than half its
            # queue, read no more of its requests (a client that pipelines thousands of calls
            # waits for the answers instead of being cut off as too slow).  Updates from other
            # clients' commits still go to the queue and still cut off a client that never reads.
            # Requests submitted and not yet handled count as answers to come.
            while True:
                n, b = self._backlog()
                if ((n + self._inflight) * 2 <= limits.messages and b * 2 <= limits.bytes
                        and self._inflight < MAX_INFLIGHT):
                    break
                if self._inflight:
                    await self._wait_inflight(0)        # their answers join the backlog first
                else:
                    self._room = trio.Event()
                    await self._room.wait()
            data = await self.ws.get_message()
            # the server's request task handles it, in order (stdb/server/requests.py); no
            # checkpoint of our own: get_message yields to the other tasks even when a message
            # is already waiting (it checkpoints when it did not read the socket)
            self._inflight += 1
            self.server.requests.submit(self, data)     # decoded there too: warm caches

    async def _wait_inflight(self, at_most: int) -> None:
        while self._inflight > at_most:
            self._handled = trio.Event()
            await self._handled.wait()

    def run_request(self, data: bytes | str) -> None:
        """Decode and handle one submitted message (called by the server's request task).  A
        connection that was disconnected meanwhile has its remaining requests dropped."""
        self._inflight -= 1
        if self._handled is not None:
            self._handled.set()
            self._handled = None
        if self.close_reason is not None:
            return
        try:
            msg = decode_client(data)
        except StdbError as e:
            self.error(e, getattr(e, "request_id", None))
            return
        try:
            self.handle(msg)
        except Exception as e:      # a bug of ours: report it, keep serving this client
            log.exception("%r: internal error handling %s", self, msg["type"])
            self.error(InternalError(f"internal error handling {msg['type']}: {type(e).__name__}"),
                       msg["request_id"])

    def handle(self, msg: dict[str, Any]) -> None:
        rid = msg["request_id"]
        t = msg["type"]
        hosted = self._hosted()
        try:
            if t == "Publish":
                res = self.server.publish(self.database, self.identity, msg["wasm"], self)
                if hosted is None:          # the database was created now: this client is one of its
                    created = self._hosted()
                    if created is not None:
                        created.connections.add(self)
                self.push(encode("PublishResult", request_id=rid, created_tables=res.created_tables,
                                 altered_tables=res.altered_tables, reducers=res.reducers,
                                 unsubscribed=self in res.unsubscribed))
                return
            if t == "DeleteDatabase":
                self.server.delete(self.database, self.identity, self)
                self.push(encode("DeleteResult", request_id=rid, database=self.database))
                return
            if hosted is None or hosted.db.schema is None:
                raise StdbError(f"database '{self.database}' has no module yet",
                                hint="publish one: stdb publish NAME module.wasm", code="no_such_database")
            if t == "CallReducer":
                hosted.call(self, rid, msg["reducer"], msg["args"])
            elif t == "Subscribe":
                hosted.subscribe(self, rid, msg["queries"])
            elif t == "Unsubscribe":
                hosted.unsubscribe(self, rid, msg["query_ids"])
            elif t == "OneOffQuery":
                hosted.sql(self, rid, msg["sql"])
            elif t == "Describe":
                hosted.describe(self, rid)
            elif t == "Logs":
                hosted.logs(self, rid, msg["limit"], msg["follow"])
            elif t == "Snapshot":
                hosted.snapshot(self, rid)
        except StdbError as e:
            self.error(e, rid)
