"""The server's websocket layer: RFC 6455 over a trio stream, lean enough for the hot path.

Why our own and not trio-websocket (which the client SDK, the tests and the benchmarks' echo
server still use): trio-websocket parses frames with wsproto in pure Python and hands every
message from a reader task of its own to the handler through a channel, so each request costs
two task switches and two state machines before the server sees it.  Here the connection's
handler reads the socket itself, frames are parsed straight out of one buffer, and a sender
writes every message waiting in its queue with one ``send_all`` (docs/architecture.md,
"The websocket layer").

What it does: the opening handshake (HTTP/1.1 ``Upgrade: websocket``, version 13, the
subprotocol the handler picks; anything else is refused with an HTTP status and a body saying
why), masked client frames, fragmented messages, ping/pong, the closing handshake with a code
and a reason, and a bound on a message's size (close 1009).  No extensions are negotiated
(permessage-deflate offered by a client is declined by not answering it).  Protocol errors close
the connection with 1002 (1007 for a text message that is not UTF-8) and a reason naming them.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import struct
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import trio

from stdb.server._frames import frame_messages, parse_frame, parse_messages
from stdb.server.frames_reference import FrameError
from stdb.server.static import HttpResponse

__all__ = ["Closed", "HttpHandler", "Request", "WebSocket", "serve_websocket", "server_handshake"]

log = logging.getLogger("stdb.server")

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"   # RFC 6455 section 1.3
HANDSHAKE_LIMIT = 16 << 10        # bytes of request line and headers
HANDSHAKE_SECONDS = 10.0          # a client that does not finish its handshake by then is dropped
RECEIVE_BYTES = 1 << 16
HTTP_SEND_SECONDS = 300.0         # the longest a plain HTTP answer (a static file) may take to send
CLOSE_SECONDS = 2.0               # how long aclose waits for the peer's close frame

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

NORMAL = 1000
PROTOCOL_ERROR = 1002
NO_STATUS = 1005
ABNORMAL = 1006                   # never sent: the connection dropped without a close frame
INVALID_DATA = 1007
MESSAGE_TOO_BIG = 1009

_REASONS = {101: "Switching Protocols", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
            404: "Not Found", 405: "Method Not Allowed", 426: "Upgrade Required",
            431: "Request Header Fields Too Large", 500: "Internal Server Error"}


class Closed(Exception):
    """The websocket is closed: ``code`` and ``reason`` are the peer's close frame's (1006 when
    the connection dropped without one), or ours when we closed it."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"websocket closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class _Refuse(Exception):
    def __init__(self, status: int, body: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(body)
        self.status = status
        self.body = body
        self.headers = headers


def frame_header(opcode: int, n: int) -> bytes:
    """The header of one unmasked, final frame of ``n`` payload bytes (server to client)."""
    if n < 126:
        return bytes((0x80 | opcode, n))
    if n < 1 << 16:
        return struct.pack("!BBH", 0x80 | opcode, 126, n)
    return struct.pack("!BBQ", 0x80 | opcode, 127, n)


def _close_payload(code: int, reason: str) -> bytes:
    if code in (NO_STATUS, ABNORMAL):
        return b""
    r = reason.encode("utf-8")[:123]
    while True:                       # a reason cut inside a UTF-8 sequence would not decode
        try:
            r.decode("utf-8")
            break
        except UnicodeDecodeError:
            r = r[:-1]
    return struct.pack("!H", code) + r


class _SocketTransport:
    """A connected stdlib socket in non-blocking mode, waited on with trio's I/O primitives:
    a write that fits in the socket's buffer happens at once, without a trip through the
    scheduler."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._maybe_more = False          # the last read filled its buffer: read again first

    async def receive(self, n: int) -> bytes:
        while True:
            if not self._maybe_more:
                await trio.lowlevel.wait_readable(self.sock)
            try:
                data = self.sock.recv(n)
            except BlockingIOError:
                self._maybe_more = False
                continue
            self._maybe_more = len(data) == n
            return data

    def send_now(self, data: memoryview) -> int:
        try:
            return self.sock.send(data)
        except BlockingIOError:
            return 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while True:
            view = view[self.send_now(view):]
            if not view:
                return
            await trio.lowlevel.wait_writable(self.sock)

    async def linger(self) -> None:
        """After an HTTP refusal: end our side, then read what the client still sends (a while,
        a bounded amount) so that closing does not reset the connection before it has read the
        answer."""
        self.sock.shutdown(socket.SHUT_WR)
        with trio.move_on_after(1.0):
            got = 0
            while got < 1 << 20:
                data = await self.receive(RECEIVE_BYTES)
                if not data:
                    return
                got += len(data)

    async def aclose(self) -> None:
        if self.sock.fileno() >= 0:
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()
        await trio.lowlevel.checkpoint()


class _StreamTransport:
    """Any trio stream (the tests' in-memory ones); writes always go through ``send_all``."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream

    async def receive(self, n: int) -> bytes:
        return bytes(await self.stream.receive_some(n))

    def send_now(self, data: memoryview) -> int:
        return 0

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def linger(self) -> None:
        pass

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


_Transport = _SocketTransport | _StreamTransport
_GONE = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


# answers a plain HTTP request (not a websocket handshake): (method, target) -> the response
HttpHandler = Callable[[str, str], Awaitable[HttpResponse]]


class Framed(bytes):
    """Bytes already framed (see ``send_nowait``): ``send_messages`` writes them as they are."""


class WebSocket:
    """One accepted connection.  One task reads (``get_message``); any task may send."""

    def __init__(self, transport: _Transport, buffered: bytes, max_message: int) -> None:
        self._t = transport
        self._buf = bytearray(buffered)
        self._pos = 0
        self.max_message = max_message
        self._parts: list[bytes] | None = None        # a fragmented message so far
        self._parts_op = 0
        self._parts_size = 0
        self._sending = False
        self._send_done: trio.Event | None = None
        self._broken = False          # a send was cut short: the stream is mid-frame
        self._rest = b""              # the unwritten end of a frame send_nowait began
        self.closed: Closed | None = None   # set once a close frame went either way
        self._close_sent = False

    # ---- sending

    async def _send_all(self, data: bytes | bytearray) -> None:
        while self._sending:          # one send at a time on the stream (control frames race data)
            if self._send_done is None:
                self._send_done = trio.Event()
            await self._send_done.wait()
        if self._broken:
            raise Closed(ABNORMAL, "the connection broke while sending")
        if self._rest:                # a frame send_nowait began comes first, whatever this is
            data, self._rest = self._rest + data, b""
        self._sending = True
        try:
            await self._t.send_all(data)
        except BaseException as e:
            self._broken = True
            if isinstance(e, _GONE):
                raise Closed(ABNORMAL, f"the connection broke while sending: {e}") from None
            raise
        finally:
            self._sending = False
            if self._send_done is not None:
                self._send_done.set()
                self._send_done = None

    def send_nowait(self, message: bytes) -> Framed | None:
        """Write one binary message now if the socket takes it without waiting and no other
        send is under way: None once it is written whole.  Otherwise ``Framed`` bytes for the
        caller to send with ``send_messages`` after what it already queued: the whole frame when
        nothing was written, or empty when part was — the websocket keeps the rest, and every
        later send (a message, a pong, the close) writes it first, so no frame is ever split
        by another."""
        return self._write_now(frame_header(OP_BINARY, len(message)) + message)

    def send_nowait_many(self, messages: list[bytes]) -> Framed | None:
        """``send_nowait`` for several binary messages, one frame each, with one write."""
        return self._write_now(frame_messages(messages))

    def _busy(self) -> bool:
        """A send is under way or began (its rest waits), or the stream is broken or closing:
        nothing may be written directly."""
        return bool(self._rest or self._sending or self._broken or self.closed is not None)

    def _write_now(self, frame: bytes) -> Framed | None:
        if self._busy():
            return Framed(frame)
        try:
            n = self._t.send_now(memoryview(frame))
        except OSError:
            n = -1
        return self.sent_now(frame, n)

    def socket_now(self) -> int | None:
        """The socket to write frames to directly now (``send_each``; then ``sent_now`` with
        what it wrote): None when another send is under way or began, or not on a socket."""
        if self._busy() or not isinstance(self._t, _SocketTransport):
            return None
        fd = self._t.sock.fileno()
        return fd if fd >= 0 else None

    def sent_now(self, frame: bytes, n: int) -> Framed | None:
        """``n`` bytes of ``frame`` were written directly (negative: the write failed): what
        ``send_nowait`` returns for it."""
        if n < 0:
            return Framed(frame)      # the next send_messages reports the broken connection
        if n == len(frame):
            return None
        self._rest = frame[n:]
        return Framed(b"")

    async def send_message(self, data: bytes | str) -> None:
        await self.send_messages((data,))

    async def send_messages(self, messages: Sequence[bytes | str]) -> None:
        """Send each as one frame (bytes: binary, str: text, ``Framed``: as is), all with one
        write."""
        if self.closed is not None:
            raise self.closed
        out = bytearray()
        for m in messages:
            if isinstance(m, Framed):
                out += m
                continue
            if isinstance(m, str):
                m = m.encode("utf-8")
                out += frame_header(OP_TEXT, len(m))
            else:
                out += frame_header(OP_BINARY, len(m))
            out += m
        await self._send_all(out)

    async def _send_close(self, code: int, reason: str) -> None:
        if self._close_sent or self._broken:
            return
        self._close_sent = True
        payload = _close_payload(code, reason)
        await self._send_all(frame_header(OP_CLOSE, len(payload)) + payload)

    # ---- receiving

    async def get_message(self) -> bytes | str:
        """The next whole message (bytes for binary, str for text); Closed when the peer closed,
        the connection dropped, or the peer broke the protocol (then it is closed with a code
        saying why).  Pings are answered on the way."""
        if self.closed is not None:
            raise self.closed
        received = False
        while True:
            try:
                got = self._parse()
            except Closed as e:       # the peer broke the protocol: tell it why, then stop
                await self.handle_frame(e)
            if got is None:
                try:
                    data = await self._t.receive(RECEIVE_BYTES)
                except _GONE as e:
                    raise self._dropped(e) from None
                self._take(data)
                received = True
                continue
            op, payload = got
            if op == OP_BINARY or op == OP_TEXT:
                if not received:
                    # a message already buffered (a pipelining client): let other tasks run
                    await trio.lowlevel.checkpoint()
                return payload
            await self.handle_frame(got)

    async def _on_close(self, payload: bytes) -> None:
        if len(payload) == 1:
            err = Closed(PROTOCOL_ERROR, "close frame with a 1-byte payload")
            await self._fail(err)
            raise err
        code = struct.unpack("!H", payload[:2])[0] if payload else NO_STATUS
        try:
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            err = Closed(INVALID_DATA, "close reason is not UTF-8")
            await self._fail(err)
            raise err from None
        self.closed = Closed(code, reason)
        try:
            await self._send_close(code if payload else NORMAL, "")
        except Closed:
            pass
        raise self.closed

    async def _fail(self, e: Closed) -> None:
        self.closed = e
        try:
            await self._send_close(e.code, e.reason)
        except Closed:
            pass

    # ---- receiving without a task of one's own (stdb/server/poller.py)

    def fileno(self) -> int | None:
        """The socket's descriptor, when the websocket is on a socket (None on other streams)."""
        if isinstance(self._t, _SocketTransport) and self.closed is None:
            fd = self._t.sock.fileno()
            return fd if fd >= 0 else None
        return None

    def read_now(self) -> None:
        """Take what the socket holds now into the buffer (never waits).  Closed when the
        connection dropped (``closed`` is set)."""
        assert isinstance(self._t, _SocketTransport)
        try:
            data = self._t.sock.recv(RECEIVE_BYTES)
        except BlockingIOError:
            return
        except OSError as e:
            raise self._dropped(e) from None
        self._take(data)

    def _dropped(self, e: BaseException) -> Closed:
        self.closed = Closed(ABNORMAL, f"the connection dropped: {e}")
        return self.closed

    def _take(self, data: bytes) -> None:
        """Bytes read from the socket into the buffer; Closed for the end of the stream."""
        if not data:
            self.closed = Closed(ABNORMAL, "the connection dropped without a close frame")
            raise self.closed
        self._buf += data

    def next_frame(self) -> tuple[int, Any] | None:
        """The next whole message or control frame already in the buffer, as ``get_message``'s
        loop sees it: (opcode, payload), or None.  Closed on a protocol error: then
        ``handle_frame`` with the error tells the client why."""
        return self._parse()

    def next_messages(self, limit: int) -> list[bytes]:
        """What ``next_frame`` would return one at a time while it returns binary messages of
        one frame each (every request's shape), at most ``limit`` of them, taken at once
        (stdb/server/_frames.pyx).  Empty when the next frame is of any other kind or not all
        here: ``next_frame`` reads it."""
        if self._parts is not None or limit <= 0:
            return []
        msgs, self._pos = parse_messages(self._buf, self._pos, self.max_message, limit)
        return msgs

    async def handle_frame(self, frame: tuple[int, Any] | Closed) -> None:
        """A control frame (a pong for a ping; the close handshake, then Closed) or a protocol
        error (the close frame saying why, then Closed), for ``get_message`` and for a
        connection whose socket the poller reads."""
        if isinstance(frame, Closed):
            if frame.code != ABNORMAL:
                await self._fail(frame)
            raise frame
        op, payload = frame
        if op == OP_PING:
            await self._send_all(frame_header(OP_PONG, len(payload)) + payload)
        elif op == OP_CLOSE:
            await self._on_close(payload)
        # OP_PONG: nothing to do

    def _parse(self) -> tuple[int, Any] | None:
        """One frame out of the buffer: (opcode, payload) of a whole message or a control
        frame; None when more bytes are needed.  Raises Closed on a protocol error.  Each
        frame's header and unmasking are C (stdb/server/_frames.pyx)."""
        while True:
            try:
                got = parse_frame(self._buf, self._pos, self.max_message, self._parts_size,
                                  self._parts is not None)
            except FrameError as e:
                raise Closed(e.code, e.reason) from None
            if got is None:
                self._more()
                return None
            op, fin, payload, self._pos = got
            if op >= 0x8:
                return op, payload
            if not fin:
                if self._parts is None:
                    self._parts, self._parts_op = [], op
                self._parts.append(payload)
                self._parts_size += len(payload)
                continue
            if self._parts is not None:
                self._parts.append(payload)
                payload, op = b"".join(self._parts), self._parts_op
                self._parts, self._parts_size = None, 0
            if op == OP_TEXT:
                try:
                    return op, payload.decode("utf-8")
                except UnicodeDecodeError:
                    raise Closed(INVALID_DATA, "text message is not UTF-8") from None
            return op, payload

    def _more(self) -> None:
        """More bytes are needed: drop what was parsed (cheap: CPython deletes a bytearray's
        head in place), so the buffer holds at most one frame in the making."""
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0

    # ---- closing

    async def aclose(self, code: int = NORMAL, reason: str = "") -> None:
        """Close with ``code`` and ``reason``: send the close frame (unless one was sent or the
        stream broke), wait a little for the peer's, then close the stream."""
        try:
            if self.closed is None:
                self.closed = Closed(code, reason)
                try:
                    await self._send_close(code, reason)
                except Closed:
                    pass
                else:
                    with trio.move_on_after(CLOSE_SECONDS):
                        await self._drain_until_close()
            elif not self._close_sent:
                try:
                    await self._send_close(code, reason)
                except Closed:
                    pass
        finally:
            await self._t.aclose()

    async def _drain_until_close(self) -> None:
        """Read (and drop) until the peer's close frame or the end of the stream."""
        while True:
            try:
                got = self._parse()
            except Closed:
                return
            if got is None:
                try:
                    data = await self._t.receive(RECEIVE_BYTES)
                except _GONE:
                    return
                if not data:
                    return
                self._buf += data
            elif got[0] == OP_CLOSE:
                return


class Request:
    """A client's opening handshake, read and checked: the handler accepts or rejects it."""

    def __init__(self, transport: _Transport, path: str, headers: list[tuple[bytes, bytes]],
                 subprotocols: list[str], key: bytes, buffered: bytes, max_message: int) -> None:
        self._t = transport
        self.path = path
        self.headers = headers                      # (lower-case name, value), in order
        self.proposed_subprotocols = subprotocols
        self._key = key
        self._buffered = buffered
        self._max_message = max_message
        self.answered = False

    async def accept(self, subprotocol: str | None = None) -> WebSocket:
        if subprotocol is not None and subprotocol not in self.proposed_subprotocols:
            raise ValueError(f"subprotocol {subprotocol!r} was not proposed by the client")
        self.answered = True
        accept = base64.b64encode(hashlib.sha1(self._key + GUID).digest())
        head = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n")
        if subprotocol is not None:
            head += b"Sec-WebSocket-Protocol: " + subprotocol.encode("latin-1") + b"\r\n"
        ws = WebSocket(self._t, self._buffered, self._max_message)
        try:
            await ws._send_all(head + b"\r\n")
        except Closed:
            ws.closed = Closed(ABNORMAL, "the connection dropped during the handshake")
        return ws

    async def reject(self, status: int, *, body: bytes = b"") -> None:
        self.answered = True
        await _respond(self._t, status, body)


async def _respond(t: _Transport, status: int, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> None:
    await _send_response(t, HttpResponse(status, body, headers=list(headers)))


async def _send_response(t: _Transport, r: HttpResponse) -> None:
    """Write ``r`` (then end the connection: ``Connection: close``)."""
    length = len(r.body) if r.length is None else r.length
    head = f"HTTP/1.1 {r.status} {_REASONS.get(r.status, 'Error')}\r\n"
    for k, v in r.headers:
        head += f"{k}: {v}\r\n"
    head += (f"Content-Type: {r.content_type}\r\nContent-Length: {length}\r\n"
             "Connection: close\r\n\r\n")
    try:
        if r.head:
            await t.send_all(head.encode("latin-1"))
        elif r.chunks is None:
            await t.send_all(head.encode("latin-1") + r.body)
        else:
            await t.send_all(head.encode("latin-1"))
            async for chunk in r.chunks:
                await t.send_all(chunk)
        await t.linger()
    except _GONE:
        pass
    finally:
        if r.chunks is not None:
            await r.chunks.aclose()


def _tokens(headers: list[tuple[bytes, bytes]], name: bytes) -> list[str]:
    out = []
    for k, v in headers:
        if k == name:
            out += [t.strip() for t in v.decode("latin-1").split(",") if t.strip()]
    return out


class _Plain(Exception):
    """Not a websocket handshake, for the plain HTTP handler: its method and target."""

    def __init__(self, method: str, target: str) -> None:
        super().__init__(method, target)
        self.method = method
        self.target = target


WEBSOCKET_PREFIX = b"/v1/"        # paths that are websocket endpoints only (never plain HTTP)


def _parse_request(head: bytes, plain: bool = False
                   ) -> tuple[str, list[tuple[bytes, bytes]], list[str], bytes]:
    """The handshake's path, headers, subprotocols and key; _Refuse when it is not a good one.
    With ``plain``, a request that asks for no websocket upgrade (and not on a /v1/ path) is
    raised as _Plain for the plain HTTP handler instead."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        raise _Refuse(400, "not an HTTP request line")
    method, target, version = parts
    if method != b"GET" and not plain:
        raise _Refuse(405, f"a websocket handshake is a GET, not {method[:20].decode('latin-1')}",
                      [("Allow", "GET")])
    headers = []
    for line in lines[1:]:
        k, sep, v = line.partition(b":")
        if not sep or not k or k != k.strip():
            raise _Refuse(400, f"malformed header line {line[:40]!r}")
        headers.append((k.lower(), v.strip()))
    upgrade = "websocket" in [t.lower() for t in _tokens(headers, b"upgrade")]
    if plain and not upgrade and not target.startswith(WEBSOCKET_PREFIX):
        if version not in (b"HTTP/1.1", b"HTTP/1.0"):
            raise _Refuse(400, "HTTP/1.0 or HTTP/1.1 only")
        raise _Plain(method.decode("latin-1"), target.decode("latin-1"))
    if method != b"GET":
        raise _Refuse(405, f"a websocket handshake is a GET, not {method[:20].decode('latin-1')}",
                      [("Allow", "GET")])
    if version != b"HTTP/1.1":
        raise _Refuse(400, "a websocket handshake needs HTTP/1.1")
    if not upgrade:
        raise _Refuse(426, "this is a websocket endpoint: send Upgrade: websocket",
                      [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")])
    if "upgrade" not in [t.lower() for t in _tokens(headers, b"connection")]:
        raise _Refuse(400, "a websocket handshake needs Connection: Upgrade")
    if _tokens(headers, b"sec-websocket-version") != ["13"]:
        raise _Refuse(426, "websocket version 13 only", [("Sec-WebSocket-Version", "13")])
    keys = [v for k, v in headers if k == b"sec-websocket-key"]
    try:
        ok = len(keys) == 1 and len(base64.b64decode(keys[0], validate=True)) == 16
    except ValueError:
        ok = False
    if not ok:
        raise _Refuse(400, "missing or malformed Sec-WebSocket-Key")
    try:
        path = target.decode("ascii")
    except UnicodeDecodeError:
        raise _Refuse(400, "the request target is not ASCII") from None
    return path, headers, _tokens(headers, b"sec-websocket-protocol"), keys[0]


async def server_handshake(stream: trio.abc.Stream | socket.socket, max_message: int,
                           http: HttpHandler | None = None) -> Request | None:
    """Read and check a client's opening handshake on ``stream`` (a trio stream, or a connected
    stdlib socket the websocket then owns).  A malformed one is answered with an HTTP error
    naming the problem, and None is returned (the caller closes the stream).  With ``http``, a
    request that is no websocket handshake (no ``Upgrade: websocket``, a path outside /v1/) is
    answered with what ``http`` returns for it (the static files), and None is returned."""
    t: _Transport
    t = _SocketTransport(stream) if isinstance(stream, socket.socket) else _StreamTransport(stream)
    buf = bytearray()
    response: HttpResponse | None = None
    with trio.move_on_after(HANDSHAKE_SECONDS):
        while True:
            end = buf.find(b"\r\n\r\n")
            if 0 <= end <= HANDSHAKE_LIMIT:
                break
            if len(buf) > HANDSHAKE_LIMIT:
                await _respond(t, 431, f"handshake larger than {HANDSHAKE_LIMIT:,} bytes".encode())
                return None
            try:
                data = await t.receive(4096)
            except _GONE:
                return None
            if not data:
                return None
            buf += data
        try:
            path, headers, subprotocols, key = _parse_request(bytes(buf[:end]), http is not None)
        except _Refuse as e:
            await _respond(t, e.status, e.body.encode(), e.headers)
            return None
        except _Plain as p:
            assert http is not None
            response = await http(p.method, p.target)
        else:
            return Request(t, path, headers, subprotocols, key, bytes(buf[end + 4:]), max_message)
    if response is None:
        return None     # too slow
    # answering a plain request is not bound by the handshake's deadline (a large file's
    # transfer may take longer); a client that stops reading is cut off by the send timeout
    with trio.move_on_after(HTTP_SEND_SECONDS):
        await _send_response(t, response)
    return None


async def serve_websocket(handler: Callable[[Request], Awaitable[None]], host: str, port: int, *,
                          handler_nursery: trio.Nursery, max_message: int, http: HttpHandler | None = None,
                          task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Listen on host:port; each connection's handshake is read and given to ``handler`` (which
    accepts or rejects it) in ``handler_nursery``; plain HTTP requests go to ``http`` when given
    (``server_handshake``).  ``task_status.started`` gets the bound port."""

    async def one(stream: trio.SocketStream) -> None:
        # the connection's socket as a stdlib one (trio's listener set TCP_NODELAY on it)
        sock = socket.socket(fileno=stream.socket.detach())
        t = _SocketTransport(sock)
        try:
            request = await server_handshake(sock, max_message, http)
            if request is not None:
                await handler(request)
                if not request.answered:
                    await request.reject(500, body=b"the server did not answer the handshake")
        finally:
            with trio.CancelScope(shield=True):
                await t.aclose()

    async with trio.open_nursery() as n:
        listeners = await n.start(partial(trio.serve_tcp, one, port, host=host,
                                          handler_nursery=handler_nursery))
        task_status.started(listeners[0].socket.getsockname()[1])
