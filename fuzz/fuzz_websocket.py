"""Fuzz target: the server's websocket layer on arbitrary client bytes — frames and handshakes.

Input: one byte choosing what is fed and how (bit 0: a handshake or frames; bits 1-2 the
largest message allowed; bit 3: inside a fragmented message), then the bytes.

* frames: the C parser (stdb/server/_frames.pyx) and its Python reference
  (stdb/server/frames_reference.py) give the same frame, or the same FrameError (close code and
  reason), at every position of the buffer a frame could start at; the run of whole binary
  messages the poller takes at once (``parse_messages``) is its reference's, and what
  ``parse_frame`` reads one at a time, and framed back as server frames (``frame_messages``)
  it is its reference's, and ``send_each`` writes it whole to a socket; and the websocket's own
  receive loop (``WebSocket._parse``: fragments, control frames, UTF-8 of text messages) over
  the same bytes returns messages or raises ``Closed``, nothing else;
* handshakes: the request parser (``websocket._parse_request``) returns the path, the headers,
  the subprotocols and the key, or refuses with an HTTP status (``_Refuse``), nothing else;
  with static files on (``plain``), a plain request's target resolves (stdb/server/static.py)
  to a path inside the directory, or to 400 / 404, never to anything outside it.

    python -m fuzz.fuzz_websocket fuzz/corpus/websocket -max_total_time=60
"""

from __future__ import annotations

import os
import pathlib
import socket

from fuzz._harness import fuzz, instrument_module, instrumented

with instrumented(__name__ == "__main__"):
    from stdb.server import websocket
    from stdb.server._frames import frame_messages, parse_frame, parse_messages, send_each
    from stdb.server.frames_reference import FrameError
    from stdb.server.frames_reference import frame_messages as reference_frames
    from stdb.server.frames_reference import parse_frame as reference
    from stdb.server.frames_reference import parse_messages as reference_messages
    from stdb.server.static import StaticFiles
    from stdb.server.websocket import Closed, WebSocket

MAX_MESSAGE = (16, 125, 4096, 16 << 20)
STATIC = StaticFiles(str(pathlib.Path(__file__).resolve().parents[1] / "docs"))
_PAIR = socket.socketpair()         # send_each writes to one end, the target reads the other
_PAIR[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 18)


class _NoTransport:
    """The websocket is only parsed here: nothing is ever sent or received."""


def _one(fn, buf, pos, max_message, parts_size, fragmented):   # type: ignore[no-untyped-def]
    try:
        return "ok", fn(buf, pos, max_message, parts_size, fragmented)
    except FrameError as e:
        return "error", e.code, e.reason


def frames(data: bytes, max_message: int, fragmented: bool) -> None:
    buf = bytearray(data)
    if not fragmented:
        run = parse_messages(buf, 0, max_message, 64)
        assert run == reference_messages(buf, 0, max_message, 64)
        at = 0
        for m in run[0]:
            got = parse_frame(buf, at, max_message, 0, False)
            assert got is not None and got[:3] == (0x2, True, m)
            at = got[3]
        assert at == run[1]
        framed = frame_messages(run[0])                 # framed back as the server would, and sent
        assert framed == reference_frames(run[0])
        if len(framed) <= 1 << 16:
            assert send_each([_PAIR[0].fileno()], [framed]) == [len(framed)]
            got = b""
            while len(got) < len(framed):
                got += _PAIR[1].recv(1 << 17)
            assert got == framed
    pos = 0
    parts = 7 if fragmented else 0
    while pos < len(buf):
        c = _one(parse_frame, buf, pos, max_message, parts, fragmented)
        r = _one(reference, buf, pos, max_message, parts, fragmented)
        assert c == r, (pos, c, r)
        if c[0] != "ok" or c[1] is None:
            break
        op, fin, payload, end = c[1]
        assert end > pos and len(payload) <= end - pos
        pos = end
        if op < 8:
            fragmented = not fin
    ws = WebSocket(_NoTransport(), data, max_message)     # type: ignore[arg-type]
    try:
        for _ in range(len(data) + 1):
            got = ws._parse()
            if got is None:
                break
            op, payload = got
            assert op in (0x1, 0x2, 0x8, 0x9, 0xA) and isinstance(payload, (bytes, str))
    except Closed as e:
        assert 1000 <= e.code < 5000 and e.reason


def handshake(data: bytes) -> None:
    try:
        path, headers, subprotocols, key = websocket._parse_request(data)
    except websocket._Refuse as e:
        assert 400 <= e.status < 600 and e.body
        return
    assert isinstance(path, str) and isinstance(key, bytes)
    assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in headers)
    assert all(isinstance(s, str) for s in subprotocols)


def plain(data: bytes) -> None:
    try:
        websocket._parse_request(data, plain=True)
    except websocket._Refuse as e:
        assert 400 <= e.status < 600 and e.body
    except websocket._Plain as p:
        status, found = STATIC.resolve(p.target)
        assert status in (200, 400, 404) and found
        if status == 200:
            assert found == STATIC.root or found.startswith(STATIC.root + os.sep), found


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    mode, rest = data[0], data[1:]
    if mode & 1:
        handshake(rest)
        plain(rest)
    else:
        frames(rest, MAX_MESSAGE[(mode >> 1) & 3], bool(mode & 8))


instrument_module(globals(), __name__ == "__main__")


def main() -> None:
    fuzz(TestOneInput)


if __name__ == "__main__":
    main()
