"""One client connection: its identity, its bounded outbound queue and its requests.

The outbound queue is bounded in messages and in bytes.  ``push`` never waits (the commit path
calls it): a message that does not fit disconnects the client with a close reason saying so,
and its subscriptions are freed.  Requests are handled in order; each bad one gets an ``Error``
naming the problem (with its request id when it had a readable one) and changes nothing.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from typing import Any, Protocol

import trio

from stdb.errors import NotLeader, RateLimited, StdbError
from stdb.protocol import MAX_MESSAGE_BYTES, encode
from stdb.server.metrics import Metrics
from stdb.server.poller import Poller
from stdb.server.websocket import OP_BINARY, OP_TEXT, Closed, Framed, WebSocket

__all__ = ["Connection", "Host", "QueueLimits"]

log = logging.getLogger("stdb.server")

CLOSE_TOO_SLOW = 4008          # websocket close codes of our own (4000-4999 are the application's)
CLOSE_REFUSED = 4003
CLOSE_DELETED = 4004
CLOSE_SHUTDOWN = 1001
CLOSE_INTERNAL = 1011
CLOSE_TOO_BIG = 4009           # an update the client must have holds a row over its max_message
SEND_BATCH_BYTES = 1 << 18      # the sender writes at most about this much at once
MAX_INFLIGHT = 64               # a connection's requests submitted and not yet handled, at most


class QueueLimits:
    """Per connection: the outbound queue's bound in messages and bytes, and how many queries
    it may hold subscribed at once."""

    def __init__(self, messages: int = 1024, bytes_: int = 16 << 20, queries: int = 4096) -> None:
        self.messages = messages
        self.bytes = bytes_
        self.queries = queries


class Host(Protocol):
    """What a connection needs of the server: where its requests go, and its database's
    lifecycle reducers (stdb/server/server.py)."""

    metrics: Metrics
    poller: Poller | None             # reads the connections' sockets (None: each its own task)

    def submit(self, conn: Connection, data: bytes | str) -> None:
        """Handle one message ``conn`` received; ``conn.handled()`` once it is handled."""

    def submit_many(self, conn: Connection, msgs: Sequence[bytes | str]) -> None:
        """``submit`` each of ``msgs``, in order."""

    async def attach(self, conn: Connection) -> StdbError | None:
        """``conn`` joins its database (client_connected): the module's refusal, or None."""

    async def detach(self, conn: Connection, lifecycle: bool) -> None:
        """``conn`` has left its database (client_disconnected when ``lifecycle``)."""


class Connection:
    def __init__(self, host: Host, ws: WebSocket, identity: bytes, database: str, *,
                 confirmed: bool, limits: QueueLimits, max_message: int = MAX_MESSAGE_BYTES) -> None:
        self.host = host
        self.metrics = host.metrics
        self.ws = ws
        self.identity = identity
        self.connection_id = secrets.token_bytes(16)
        self.database = database
        self.confirmed = confirmed
        self.limits = limits
        self.max_message = max_message            # the most the client reads in one message (?max_message)
        self._send, self._recv = trio.open_memory_channel[bytes](limits.messages)
        self.queued_bytes = 0
        self.queued_messages = 0                  # what the channel holds (its statistics() allocates)
        self.close_reason: tuple[int, str] | None = None
        self._scope: trio.CancelScope | None = None
        self._room: trio.Event | None = None      # set when the backlog has drained (see _receive)
        self._out_closed = False                  # nothing more may be queued (a refused client)
        self._inflight = 0                        # requests submitted, not yet handled
        self._handled: trio.Event | None = None   # set when one is handled (see _wait_inflight)
        self._ended = False                       # serve() has returned: nothing more is sent
        self._left = False                        # the client closed its end or dropped
        self._attention: trio.Event | None = None  # the poller hands something over (see _read)
        self._handover: tuple[int, Any] | Closed | None = None
        self._fd: int | None = None               # the socket the poller reads for us

    def __repr__(self) -> str:
        return f"<Connection {self.identity.hex()[:12]} to {self.database}>"

    # ---- outbound

    def push(self, msg: bytes) -> None:
        """Queue one message; never waits.  A client past its bound is disconnected."""
        if self.close_reason is not None or self._ended:
            return
        if not self.queued_bytes and not self._out_closed:
            # nothing waiting before it: write it now if the socket takes it (no task switch)
            rest = self.ws.send_nowait(msg)
            self.metrics.sent(1, len(msg))
            if rest is None:
                return
            msg = rest                # the sender writes what the socket did not take (or, when
                                      # empty, has the websocket write the rest it keeps)
        self._enqueue(msg)

    def push_many(self, msgs: list[bytes]) -> None:
        """``push`` each, in order; written with one send when nothing waits before them (a
        batch's answers to a pipelining client)."""
        if len(msgs) == 1 or self.queued_bytes or self._out_closed:
            for m in msgs:
                self.push(m)
            return
        if self.close_reason is not None or self._ended:
            return
        rest = self.ws.send_nowait_many(msgs)
        self.metrics.sent(len(msgs), sum(map(len, msgs)))
        if rest is not None:
            self._enqueue(rest)

    def socket_now(self) -> int | None:
        """The socket to write this connection's next messages to at once, from outside
        (``HostedDatabase.deliver``, with ``send_each``), when nothing waits before them; then
        ``sent_now``.  None: ``push_many`` them."""
        if self.close_reason is not None or self._ended or self.queued_bytes or self._out_closed:
            return None
        return self.ws.socket_now()

    def sent_now(self, msgs: list[bytes], frame: bytes, n: int) -> None:
        """``msgs``, framed as ``frame``, were written to ``socket_now()``'s socket: ``n`` bytes
        of it (negative: the write failed); what was not written is queued."""
        self.metrics.sent(len(msgs), sum(map(len, msgs)))
        rest = self.ws.sent_now(frame, n)
        if rest is not None:
            self._enqueue(rest)

    def _enqueue(self, msg: bytes) -> None:
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

    def gone(self) -> bool:
        """Nobody will read an answer any more: the client left or is being disconnected (read
        from the database's thread, to cancel a query nobody waits for)."""
        return self._left or self.close_reason is not None or self._ended

    def kill(self, reason: str, code: int = CLOSE_REFUSED) -> None:
        """Disconnect (from any task, without waiting): the connection's tasks stop and the
        websocket is closed with ``reason``."""
        if self.close_reason is None:
            self.close_reason = (code, reason)
            if code == CLOSE_TOO_SLOW:
                self.metrics.disconnected_slow.inc()
            log.log(logging.INFO if code == CLOSE_SHUTDOWN else logging.WARNING,
                    "%r: disconnecting: %s", self, reason)
        if self._scope is not None:
            self._scope.cancel()

    @staticmethod
    def error_message(e: StdbError, request_id: int | None) -> bytes:
        d = e.to_dict()
        extra: dict[str, Any] = {}
        if isinstance(e, RateLimited):
            extra["retry_after"] = e.retry_after
        elif isinstance(e, NotLeader):
            extra["leader"] = e.leader
        return encode("Error", request_id=request_id, code=d["code"], detail=d["detail"], hint=d["hint"],
                      **extra)

    def error(self, e: StdbError, request_id: int | None) -> None:
        self.push(self.error_message(e, request_id))

    async def _sender(self, drained: trio.Event) -> None:
        metrics = self.metrics
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
        refused = None
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as n:
                drained = trio.Event()
                n.start_soon(self._sender, drained)
                self.push(hello)
                refusal = await self.host.attach(self)
                if refusal is not None:
                    self.error(refusal, None)
                    refused = f"client_connected refused the connection: {refusal.detail}"
                if refused is None:
                    try:
                        await self._receive()
                    except Closed:
                        self._left = True
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
        self._ended = True
        # a client that client_connected refused was never connected: no client_disconnected
        await self.host.detach(self, refused is None)
        if self.close_reason is not None:
            code, reason = self.close_reason
            with trio.move_on_after(2):
                await self.ws.aclose(code, reason[:120])

    def _backlog(self) -> tuple[int, int]:
        return self.queued_messages, self.queued_bytes

    def _has_room(self) -> bool:
        """Read-side backpressure: while this client's own answers fill more than half its
        queue, read no more of its requests (a client that pipelines thousands of calls waits
        for the answers instead of being cut off as too slow).  Updates from other clients'
        commits still go to the queue and still cut off a client that never reads.  Requests
        submitted and not yet handled count as answers to come."""
        return self._room_for() > 0

    def _room_for(self) -> int:
        """How many more requests may be read one after another now (only the requests in
        flight change while the poller reads): while (queued + in flight) × 2 fits the message
        bound, queued bytes × 2 fit the byte bound, and fewer than MAX_INFLIGHT are in flight."""
        n, b = self._backlog()
        limits = self.limits
        if b * 2 > limits.bytes:
            return 0
        return min(limits.messages // 2 - n - self._inflight + 1, MAX_INFLIGHT - self._inflight)

    async def _wait_room(self) -> None:
        while not self._has_room():
            if self._inflight:
                await self._wait_inflight(0)        # their answers join the backlog first
            else:
                self._room = trio.Event()
                await self._room.wait()

    async def _receive(self) -> None:
        poller = self.host.poller
        fd = self.ws.fileno()
        if poller is not None and fd is not None:
            await self._receive_polled(poller, fd)
            return
        while True:
            await self._wait_room()
            data = await self.ws.get_message()
            # its database's execution thread handles it, in order (stdb/server/hosted.py); no
            # checkpoint of our own: get_message yields to the other tasks even when a message
            # is already waiting (it checkpoints when it did not read the socket)
            self._submit(data)

    async def _receive_polled(self, poller: Poller, fd: int) -> None:
        """Requests read by the server's poller (stdb/server/poller.py) calling ``_read``; this
        task waits until it hands over what needs a task: a control frame, the close, a
        protocol error, or a full queue (backpressure)."""
        self._fd = fd
        try:
            while True:
                await self._wait_room()
                self._handover = None
                self._attention = trio.Event()
                self._drain()                       # what is buffered already (the handshake's rest)
                if self._handover is None and self._has_room():
                    if not poller.register(fd, self._read):
                        raise Closed(CLOSE_SHUTDOWN, "the server is shutting down")
                    try:
                        await self._attention.wait()
                    finally:
                        poller.unregister(fd)
                frame, self._handover = self._handover, None
                if frame is not None:
                    await self.ws.handle_frame(frame)       # Closed ends the loop
                await trio.lowlevel.checkpoint()
        finally:
            self._attention = None

    def _read(self) -> None:
        """The poller's call when the socket has something: read it, hand each request to the
        database; whatever needs this connection's task wakes it."""
        try:
            self.ws.read_now()
            self._drain()
        except Closed as e:
            self._hand_over(e)
        except Exception as e:      # a bug of ours: this connection ends, saying so
            log.exception("%r: reading failed", self)
            self._hand_over(Closed(CLOSE_INTERNAL, f"internal error: {type(e).__name__}"))

    def _drain(self) -> None:
        ws = self.ws
        while self._handover is None:
            room = self._room_for()
            if room <= 0:
                self._hand_over(None)
                return
            msgs = ws.next_messages(room)       # the usual case: a run of requests, taken at once
            if msgs:
                self._inflight += len(msgs)
                self.host.submit_many(self, msgs)
                if len(msgs) == room:
                    continue
            try:
                frame = ws.next_frame()
            except Closed as e:
                self._hand_over(e)
                return
            if frame is None:
                return
            op, payload = frame
            if op != OP_BINARY and op != OP_TEXT:
                self._hand_over(frame)
                return
            self._submit(payload)

    def _submit(self, data: bytes | str) -> None:
        self._inflight += 1
        self.host.submit(self, data)

    def _hand_over(self, what: tuple[int, Any] | Closed | None) -> None:
        """Stop reading in the poller and wake this connection's task with ``what`` (None: the
        queue is full)."""
        self._handover = what
        poller = self.host.poller
        if poller is not None and self._fd is not None:
            poller.unregister(self._fd)
        if self._attention is not None:
            self._attention.set()

    async def _wait_inflight(self, at_most: int) -> None:
        while self._inflight > at_most:
            self._handled = trio.Event()
            await self._handled.wait()

    def handled(self) -> None:
        """One submitted request is handled (its answers are queued)."""
        self._inflight -= 1
        if self._handled is not None:
            self._handled.set()
            self._handled = None
