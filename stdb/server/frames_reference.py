"""The reference of the websocket frames in C (stdb/server/_frames.pyx), in plain Python: one
client frame out of a receive buffer (RFC 6455 section 5.2), its checks in the order the server
makes them; the run of plain binary messages the poller takes at once; a batch of server
frames and their writes.  tests/test_websocket.py and the ``websocket`` fuzz target hold the C
side to it.
"""

from __future__ import annotations

import errno
import socket
import struct

__all__ = ["FrameError", "frame_messages", "parse_frame", "parse_messages", "send_each"]

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
PROTOCOL_ERROR = 1002
MESSAGE_TOO_BIG = 1009


class FrameError(Exception):
    """The client broke the protocol: the close ``code`` and ``reason`` to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def parse_frame(buf: bytes | bytearray, pos: int, max_message: int, parts_size: int,
                fragmented: bool) -> tuple[int, bool, bytes, int] | None:
    """The frame at ``buf[pos:]``: (opcode, final, unmasked payload, where it ends), or None
    when more bytes are needed.  ``parts_size`` bytes of a fragmented message came before it
    (``fragmented``); a message may have at most ``max_message`` bytes.  FrameError when the
    frame breaks the protocol."""
    avail = len(buf) - pos
    if avail < 2:
        return None
    b0, b1 = buf[pos], buf[pos + 1]
    n = b1 & 0x7F
    h = 2
    if n == 126:
        if avail < 4:
            return None
        n = (buf[pos + 2] << 8) | buf[pos + 3]
        h = 4
    elif n == 127:
        if avail < 10:
            return None
        n = int.from_bytes(buf[pos + 2:pos + 10], "big")
        h = 10
    op = b0 & 0x0F
    fin = bool(b0 & 0x80)
    if b0 & 0x70:
        raise FrameError(PROTOCOL_ERROR, "reserved bits set (no extension was negotiated)")
    if not b1 & 0x80:
        raise FrameError(PROTOCOL_ERROR, "client frames must be masked")
    if op >= 0x8:
        if not fin or n > 125:
            raise FrameError(PROTOCOL_ERROR, "control frames must be final and at most 125 bytes")
        if op not in (OP_CLOSE, OP_PING, OP_PONG):
            raise FrameError(PROTOCOL_ERROR, f"unknown opcode {op:#x}")
    elif op == OP_CONT:
        if not fragmented:
            raise FrameError(PROTOCOL_ERROR, "continuation frame without a message to continue")
    elif op in (OP_TEXT, OP_BINARY):
        if fragmented:
            raise FrameError(PROTOCOL_ERROR, "new message before the fragmented one ended")
    else:
        raise FrameError(PROTOCOL_ERROR, f"unknown opcode {op:#x}")
    if op < 0x8 and parts_size + n > max_message:
        raise FrameError(MESSAGE_TOO_BIG, f"message of more than {max_message:,} bytes")
    end = pos + h + 4 + n
    if len(buf) < end:
        return None
    mask = bytes(buf[pos + h:pos + h + 4])
    data = bytes(buf[pos + h + 4:end])
    payload = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
    return op, fin, payload, end


def parse_messages(buf: bytes | bytearray, pos: int, max_message: int,
                   limit: int) -> tuple[list[bytes], int]:
    """The whole binary messages of one final, masked frame each at ``buf[pos:]``, at most
    ``limit``: (payloads, where they end).  Stops before a frame of any other kind, one not all
    in the buffer, or one over ``max_message`` (``parse_frame`` reads that one)."""
    if pos < 0 or pos > len(buf):
        raise ValueError(f"position {pos} outside a buffer of {len(buf)} bytes")
    out: list[bytes] = []
    while len(out) < limit:
        if len(buf) - pos < 2 or buf[pos] != 0x80 | OP_BINARY or not buf[pos + 1] & 0x80:
            break
        try:
            got = parse_frame(buf, pos, max_message, 0, False)
        except FrameError:
            break
        if got is None:
            break
        out.append(got[2])
        pos = got[3]
    return out, pos


def frame_messages(messages: list[bytes]) -> bytes:
    """One final, unmasked binary frame for each message, concatenated (server to client)."""
    out = bytearray()
    for m in messages:
        n = len(m)
        if n < 126:
            out += bytes((0x80 | OP_BINARY, n))
        elif n < 1 << 16:
            out += struct.pack("!BBH", 0x80 | OP_BINARY, 126, n)
        else:
            out += struct.pack("!BBQ", 0x80 | OP_BINARY, 127, n)
        out += m
    return bytes(out)


def send_each(fds: list[int], buffers: list[bytes]) -> list[int]:
    """Write ``buffers[i]`` to the socket ``fds[i]`` without waiting, for each ``i``: how many
    bytes of each were written (0 when its socket takes nothing now, ``-errno`` when it failed)."""
    if len(fds) != len(buffers):
        raise ValueError(f"{len(fds)} sockets and {len(buffers)} buffers")
    for b in buffers:
        if not isinstance(b, bytes):
            raise TypeError(f"a buffer to send is bytes, not {type(b).__name__}")
    out = []
    for fd, b in zip(fds, buffers, strict=True):
        try:
            s = socket.socket(fileno=fd)
        except OSError as e:
            out.append(-(e.errno or errno.EIO))
            continue
        try:
            out.append(s.send(b, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL))
        except BlockingIOError:
            out.append(0)
        except OSError as e:
            out.append(-(e.errno or errno.EIO))
        finally:
            s.detach()              # the descriptor stays the caller's
    return out
