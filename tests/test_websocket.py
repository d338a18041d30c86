"""The server's websocket layer (stdb/server/websocket.py) on a real socket: the opening
handshake and its refusals, frames as a client may send them (fragmented, pings, a close),
protocol errors closed with the code naming them, and trio-websocket as a client."""

from __future__ import annotations

import base64
import os
import struct

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from trio_websocket import ConnectionRejected, open_websocket_url

from stdb.server.websocket import Closed, Request, serve_websocket

TIMEOUT = 10
MAX = 1 << 16
KEY = base64.b64encode(b"0123456789abcdef").decode()


async def _echo(request: Request) -> None:
    """Accepts "echo" at /echo, refuses anything else; echoes every message."""
    if request.path != "/echo":
        await request.reject(404, body=b"no such path")
        return
    ws = await request.accept("echo" if "echo" in request.proposed_subprotocols else None)
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except Closed:
        pass


@pytest.fixture
async def port(nursery):
    return await nursery.start(lambda task_status: serve_websocket(
        _echo, "127.0.0.1", 0, handler_nursery=nursery, max_message=MAX, task_status=task_status))


def handshake(path: str = "/echo", **headers: str) -> bytes:
    h = {"Host": "x", "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": KEY,
         "Sec-WebSocket-Version": "13", **{k.replace("_", "-"): v for k, v in headers.items()}}
    return (f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items() if v) +
            "\r\n").encode()


def frame(op: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0) -> bytes:
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv | op])
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 1 << 16:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Raw:
    """A client speaking bytes: the handshake's answer, then server frames read one by one."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""

    async def _more(self) -> bool:
        data = await self.stream.receive_some(1 << 16)
        self.buf += data
        return bool(data)

    async def response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buf:
            assert await self._more(), "connection closed before the response"
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return int(head.split(b" ")[1]), head

    async def body(self) -> bytes:
        while await self._more():
            pass
        return self.buf

    async def frame(self) -> tuple[int, bytes]:
        while True:
            if len(self.buf) >= 2:
                n, h = self.buf[1] & 0x7F, 2
                if n == 126 and len(self.buf) >= 4:
                    n, h = struct.unpack("!H", self.buf[2:4])[0], 4
                elif n == 127 and len(self.buf) >= 10:
                    n, h = struct.unpack("!Q", self.buf[2:10])[0], 10
                if n < 126 or h > 2:
                    assert not self.buf[1] & 0x80, "server frames are never masked"
                    if len(self.buf) >= h + n:
                        op, payload = self.buf[0] & 0x0F, self.buf[h:h + n]
                        assert self.buf[0] & 0x80, "the server sends whole messages"
                        self.buf = self.buf[h + n:]
                        return op, payload
            assert await self._more(), "connection closed before a frame"

    async def close_code(self) -> tuple[int, str]:
        op, payload = await self.frame()
        assert op == 0x8
        return struct.unpack("!H", payload[:2])[0], payload[2:].decode()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)


async def raw(port: int, request: bytes | None = None) -> Raw:
    r = Raw(await trio.open_tcp_stream("127.0.0.1", port))
    await r.send(handshake() if request is None else request)
    return r


async def opened(port: int) -> Raw:
    r = await raw(port, handshake(Sec_WebSocket_Protocol="x, echo"))
    status, head = await r.response()
    assert status == 101
    accept = base64.b64encode(__import__("hashlib").sha1(
        KEY.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    assert b"Sec-WebSocket-Accept: " + accept in head           # RFC 6455's accept key
    assert b"Sec-WebSocket-Protocol: echo" in head
    return r


async def test_trio_websocket_client_round_trip(port):
    with trio.fail_after(TIMEOUT):
        async with open_websocket_url(f"ws://127.0.0.1:{port}/echo", subprotocols=["echo"]) as ws:
            for msg in (b"", b"x" * 125, b"y" * 126, b"w" * 65_535, "text ✓"):
                await ws.send_message(msg)
                assert await ws.get_message() == msg
            assert ws.subprotocol == "echo"


async def test_refused_path_gets_the_handlers_status(port):
    with trio.fail_after(TIMEOUT):
        with pytest.raises(ConnectionRejected) as e:
            async with open_websocket_url(f"ws://127.0.0.1:{port}/nope"):
                pass
        assert e.value.status_code == 404 and e.value.body == b"no such path"


@pytest.mark.parametrize("request_, status, says", [
    (b"POST /echo HTTP/1.1\r\nHost: x\r\n\r\n", 405, b"GET"),
    (b"GET /echo HTTP/1.0\r\n\r\n", 400, b"HTTP/1.1"),
    (b"hello\r\n\r\n", 400, b"request line"),
    (handshake(Upgrade=""), 426, b"Upgrade: websocket"),
    (handshake(Connection="keep-alive"), 400, b"Connection: Upgrade"),
    (handshake(Sec_WebSocket_Version="8"), 426, b"version 13"),
    (handshake(Sec_WebSocket_Key="short"), 400, b"Sec-WebSocket-Key"),
    (b"GET /echo HTTP/1.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n", 431, b"larger than"),
], ids=["post", "http1.0", "garbage", "no-upgrade", "no-connection-upgrade", "version", "key", "huge"])
async def test_bad_handshakes_get_an_http_error_naming_the_problem(port, request_, status, says):
    with trio.fail_after(TIMEOUT):
        r = await raw(port, request_)
        got, _ = await r.response()
        assert got == status
        assert says in await r.body()


async def test_fragmented_message_ping_and_close(port):
    with trio.fail_after(TIMEOUT):
        r = await opened(port)
        # a message in three fragments with a ping between them
        await r.send(frame(0x2, b"ab", fin=False) + frame(0x0, b"cd", fin=False) + frame(0x9, b"hi") +
                     frame(0x0, b"ef"))
        assert await r.frame() == (0xA, b"hi")                  # the pong echoes the ping
        assert await r.frame() == (0x2, b"abcdef")
        await r.send(frame(0xA, b"unsolicited pong") + frame(0x1, "héllo".encode()))
        assert await r.frame() == (0x1, "héllo".encode())
        await r.send(frame(0x8, struct.pack("!H", 1000) + b"bye"))
        assert await r.close_code() == (1000, "")               # the close is answered
        assert await r.body() == b""                            # and the server closes TCP


@pytest.mark.parametrize("data, code, says", [
    (frame(0x2, b"x", mask=False), 1002, "masked"),
    (frame(0x2, b"x", rsv=0x40), 1002, "reserved bits"),
    (frame(0x0, b"x"), 1002, "continuation"),
    (frame(0x2, b"a", fin=False) + frame(0x2, b"b"), 1002, "fragmented"),
    (frame(0x9, b"p", fin=False), 1002, "control frames"),
    (frame(0x3, b"x"), 1002, "opcode"),
    (frame(0x1, b"\xff\xfe"), 1007, "UTF-8"),
    (frame(0x2, b"x" * (MAX + 1)), 1009, "more than"),
    (frame(0x2, b"a" * 40_000, fin=False) + frame(0x0, b"b" * 40_000), 1009, "more than"),
    (frame(0x8, b"\x03"), 1002, "1-byte"),
])
async def test_protocol_errors_close_with_a_code_naming_them(port, data, code, says):
    with trio.fail_after(TIMEOUT):
        r = await opened(port)
        await r.send(data)
        got, reason = await r.close_code()
        assert got == code and says in reason


async def test_a_huge_declared_length_is_refused_before_it_is_read(port):
    with trio.fail_after(TIMEOUT):
        r = await opened(port)
        await r.send(bytes([0x82, 0x80 | 127]) + struct.pack("!Q", 1 << 40) + b"mask")
        assert (await r.close_code())[0] == 1009


async def test_many_messages_in_one_write_are_all_answered_in_order(port):
    with trio.fail_after(TIMEOUT):
        r = await opened(port)
        await r.send(b"".join(frame(0x2, str(i).encode()) for i in range(500)))
        for i in range(500):
            assert await r.frame() == (0x2, str(i).encode())


async def test_a_frame_begun_without_waiting_is_finished_before_any_other():
    """send_nowait writes what the socket takes and keeps the rest; a pong (or the next message)
    sent meanwhile goes out only after that frame's last byte."""
    import socket

    from stdb.server.websocket import Framed, WebSocket, _SocketTransport

    ours, theirs = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    ws = WebSocket(_SocketTransport(ours), b"", MAX)
    big = os.urandom(1 << 20)
    assert ws.send_nowait(big) == Framed(b"")           # the socket took only part of it
    assert ws.send_nowait(b"next") == Framed(b"\x82\x04next")   # nothing else starts meanwhile
    theirs.setblocking(False)
    got = bytearray()

    async def read_all():
        while True:
            await trio.lowlevel.wait_readable(theirs)
            try:
                data = theirs.recv(1 << 16)
            except BlockingIOError:
                continue
            if not data:
                return
            got.extend(data)

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as n:
            n.start_soon(read_all)
            await ws._send_all(b"\x8a\x02hi")              # a pong, as get_message sends one
            await ws.send_messages([Framed(b"\x82\x04next")])
            ours.shutdown(socket.SHUT_WR)
    theirs.close()
    ours.close()
    head = b"\x82\x7f" + struct.pack("!Q", len(big))
    assert bytes(got) == head + big + b"\x8a\x02hi" + b"\x82\x04next"


async def test_the_read_buffer_keeps_only_the_frame_in_the_making():
    """Frames arriving split across reads: every message comes out whole, and what was parsed
    is dropped (a long-lived connection's buffer does not grow)."""
    from trio.testing import memory_stream_pair

    from stdb.server.websocket import WebSocket, _StreamTransport

    client, server = memory_stream_pair()
    ws = WebSocket(_StreamTransport(server), b"", MAX)
    data = b"".join(frame(0x2, b"m%04d" % i + b"x" * 95) for i in range(2000))
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as n:
            async def feed():
                for at in range(0, len(data), 1013):         # chunks that split frames
                    await client.send_all(data[at:at + 1013])
            n.start_soon(feed)
            largest = 0
            for i in range(2000):
                assert await ws.get_message() == b"m%04d" % i + b"x" * 95
                largest = max(largest, len(ws._buf))
    # at most one read (64 KiB) and the frame it completed; all 212 KB had they been kept
    assert largest < (1 << 16) + 200 < len(data)


# ---- the frame parser in C (stdb/server/_frames.pyx) against its reference in Python


def _both(buf, pos, max_message, parts_size, fragmented):
    from stdb.server._frames import parse_frame
    from stdb.server.frames_reference import FrameError
    from stdb.server.frames_reference import parse_frame as reference

    out = []
    for fn in (parse_frame, reference):
        try:
            out.append(("ok", fn(buf, pos, max_message, parts_size, fragmented)))
        except FrameError as e:
            out.append(("error", e.code, e.reason))
    return out


@st.composite
def _frame_buffers(draw):
    """A buffer holding a client frame (well-formed or not), maybe cut short or followed by more."""
    op = draw(st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3, 0xB, 0xF]))
    fin = draw(st.booleans())
    rsv = draw(st.sampled_from([0, 0, 0, 0x10, 0x40]))
    masked = draw(st.booleans()) or draw(st.booleans())
    payload = draw(st.binary(max_size=300))
    form = draw(st.sampled_from(["short", "16", "64", "lie"]))
    n = len(payload)
    if form == "short" and n < 126:
        head = bytes([(0x80 if fin else 0) | rsv | op, (0x80 if masked else 0) | n])
    elif form in ("16", "short"):
        head = bytes([(0x80 if fin else 0) | rsv | op, (0x80 if masked else 0) | 126]) + n.to_bytes(2, "big")
    elif form == "64":
        head = bytes([(0x80 if fin else 0) | rsv | op, (0x80 if masked else 0) | 127]) + n.to_bytes(8, "big")
    else:                                       # a length that is not the payload's (huge ones too)
        head = bytes([(0x80 if fin else 0) | rsv | op, (0x80 if masked else 0) | 127]) \
            + draw(st.integers(0, (1 << 64) - 1)).to_bytes(8, "big")
    mask = draw(st.binary(min_size=4, max_size=4)) if masked else b""
    frame = head + mask + payload
    prefix = draw(st.binary(max_size=5))
    cut = draw(st.integers(0, len(frame)))
    frame = frame[:cut] if draw(st.integers(0, 3)) == 0 else frame + draw(st.binary(max_size=20))
    kind = draw(st.sampled_from([bytes, bytearray]))
    return kind(prefix + frame), len(prefix)


@settings(max_examples=2000, deadline=None)
@given(_frame_buffers(), st.sampled_from([0, 10, 125, 300, 1 << 20]), st.integers(0, 400), st.booleans())
def test_the_c_frame_parser_is_its_reference(buf_pos, max_message, parts_size, fragmented):
    buf, pos = buf_pos
    c, ref = _both(buf, pos, max_message, parts_size, fragmented)
    assert c == ref


@given(st.binary(max_size=80), st.integers(0, 80), st.booleans())
def test_the_c_frame_parser_on_arbitrary_bytes(data, pos, fragmented):
    pos = min(pos, len(data))
    c, ref = _both(bytearray(data), pos, 1 << 20, 0, fragmented)
    assert c == ref


@st.composite
def _message_runs(draw):
    """Client frames, mostly whole binary messages (the run ``parse_messages`` takes), with other
    frames and junk among them, maybe cut short."""
    def masked(op: int, payload: bytes, fin: bool = True) -> bytes:
        n, mask = len(payload), draw(st.binary(min_size=4, max_size=4))
        head = bytes([(0x80 if fin else 0) | op])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        return head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["binary"] * 5 + ["big", "text", "ping", "fragment", "junk"]))
        if kind == "binary":
            parts.append(masked(0x2, draw(st.binary(max_size=200))))
        elif kind == "big":
            parts.append(masked(0x2, bytes(draw(st.sampled_from([126, 65535, 65536, 70000])))))
        elif kind == "text":
            parts.append(masked(0x1, b"hi"))
        elif kind == "ping":
            parts.append(masked(0x9, b"p"))
        elif kind == "fragment":
            parts.append(masked(0x2, b"ab", fin=False))
        else:
            parts.append(draw(st.binary(min_size=1, max_size=12)))
    buf = b"".join(parts)
    buf = buf[:draw(st.integers(0, len(buf)))] if draw(st.booleans()) else buf
    return draw(st.sampled_from([bytes, bytearray]))(buf)


@settings(max_examples=1000, deadline=None)
@given(_message_runs(), st.sampled_from([0, 100, 1000, 1 << 20]), st.integers(0, 8))
def test_the_c_message_run_is_its_reference_and_what_parse_frame_reads(buf, max_message, limit):
    from stdb.server._frames import parse_frame, parse_messages
    from stdb.server.frames_reference import parse_messages as reference

    msgs, end = parse_messages(buf, 0, max_message, limit)
    assert (msgs, end) == reference(buf, 0, max_message, limit)
    assert len(msgs) <= limit
    pos = 0                                  # the same messages parse_frame reads one at a time
    for m in msgs:
        got = parse_frame(buf, pos, max_message, 0, False)
        assert got is not None and got[:3] == (0x2, True, m)
        pos = got[3]
    assert pos == end


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300) | st.sampled_from([bytes(125), bytes(126), bytes(65535),
                                                            bytes(65536)]), max_size=5))
def test_the_c_server_frames_are_their_reference_and_parse_back(msgs):
    from stdb.server._frames import frame_messages
    from stdb.server.frames_reference import frame_messages as reference

    out = frame_messages(msgs)
    assert out == reference(msgs)
    pos = 0
    for m in msgs:                           # each one final, unmasked binary frame
        assert out[pos] == 0x82
        n = out[pos + 1]
        h = 2 if n < 126 else 4 if n == 126 else 10
        n = n if n < 126 else int.from_bytes(out[pos + 2:pos + h], "big")
        assert out[pos + h:pos + h + n] == m
        pos += h + n
    assert pos == len(out)


def test_the_c_send_loop_is_its_reference():
    """``send_each`` (C, without the GIL) and its reference write the same amounts and report
    the same: whole writes, a partial one into a full socket, a closed peer, a bad descriptor."""
    import errno
    import socket

    from stdb.server._frames import send_each
    from stdb.server.frames_reference import send_each as reference

    def case(fn):
        pairs = [socket.socketpair() for _ in range(4)]
        for a, _ in pairs:
            a.setblocking(False)
        pairs[2][1].close()                         # the peer went away
        spare = socket.socket()
        bad = spare.fileno()
        spare.close()                               # a descriptor that is no longer open
        fds = [a.fileno() for a, _ in pairs] + [bad]
        bufs = [b"hello", bytes(range(256)) * 3, b"x", b"y" * (8 << 20), b"z"]
        got = fn(fds, bufs)
        read = b""
        while len(read) < max(got[3], 0):          # what it says it wrote is what arrives
            read += pairs[3][1].recv(1 << 20)
        assert pairs[0][1].recv(100) == b"hello" and pairs[1][1].recv(1000) == bytes(range(256)) * 3
        for a, b in pairs:
            a.close()
            if b.fileno() >= 0:
                b.close()
        return got, read
    c, c_read = case(send_each)
    r, r_read = case(reference)
    assert c[:3] == r[:3] == [5, 768, -errno.EPIPE]
    assert c[4] == r[4] == -errno.EBADF
    assert 0 < c[3] < 8 << 20 and 0 < r[3] < 8 << 20          # a partial write into a full socket
    assert c_read == b"y" * c[3] and r_read == b"y" * r[3]
    for fn in (send_each, reference):
        with pytest.raises(ValueError, match="2 sockets and 1 buffers"):
            fn([1, 2], [b""])
        with pytest.raises(TypeError, match="bytes, not str"):
            fn([1], ["text"])
    assert send_each([], []) == reference([], []) == []
