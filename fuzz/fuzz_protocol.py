"""Fuzz target: client messages — CBOR decoding and the server's request handling.

Input: one byte choosing the sender (bit 0: the database's owner, else another identity), then
one websocket frame as a client sends it.  What the server's receive loop does with a frame is
done here without a network (``stdb.server.connection.Connection``, no websocket):

* ``decode_client`` returns a checked message or raises ``ProtocolError`` (answered with an
  ``Error``);
* a message is dispatched by ``HostedDatabase.dispatch`` (what the database's execution thread
  runs) to a real hosted database running the chat example (examples/chat/chat.c, built once
  per process): reducer calls with the decoded arguments, subscriptions, one-off queries and
  DML, describe, logs, publish.  A bad request raises a ``StdbError`` (answered with an
  ``Error``) and nothing else (the server would log an internal error);
* every message the server queued for the client decodes with ``decode_server``.

``DeleteDatabase`` from the owner is decoded but not dispatched (it would delete the
database under the fuzzer); the database is rebuilt when a publish replaced its module, and
every ``RESET_EVERY`` inputs so that the state stays small.

    python -m fuzz.fuzz_protocol fuzz/corpus/protocol -max_total_time=60
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from fuzz._harness import CACHE_ENV, fuzz, instrument_module, instrumented

with instrumented(__name__ == "__main__"):
    import trio

    from stdb.errors import ProtocolError, StdbError
    from stdb.module.build import build_module
    from stdb.protocol import decode_client, decode_server
    from stdb.server.connection import Connection, QueueLimits
    from stdb.server.server import Server

ROOT = Path(__file__).resolve().parent.parent
CHAT = ROOT / "examples" / "chat" / "chat.c"
DB = "chat"
OWNER = b"\x07" * 32
OTHER = b"\x08" * 32
RESET_EVERY = 20_000


def chat_wasm() -> bytes:
    """examples/chat built with the C SDK (cached by source hash in the temp directory)."""
    digest = hashlib.sha256(CHAT.read_bytes() + (ROOT / "sdk" / "c" / "stdb.h").read_bytes()).hexdigest()
    out = Path(os.environ.get(CACHE_ENV) or tempfile.gettempdir()) / f"stdb-fuzz-chat-{digest[:16]}.wasm"
    if not out.exists():
        tmp = out.with_suffix(f".{os.getpid()}.wasm")
        build_module(str(CHAT), str(tmp))
        os.replace(tmp, out)
    return out.read_bytes()


class Captured:
    """Stands in for the websocket: takes every message at once (as a socket with room does)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send_nowait(self, msg: bytes) -> None:
        self.sent.append(msg)

    def send_nowait_many(self, msgs: list[bytes]) -> None:
        self.sent.extend(msgs)

    def socket_now(self) -> None:
        """Not on a socket: the server writes through ``send_nowait``."""
        return None


class World:
    """A server (never started) hosting the chat database, and one connection per sender."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="stdb-fuzz-protocol-")
        self.server = Server(self.dir)
        self.server.publish(DB, OWNER, chat_wasm())
        self.hosted = self.server.databases[DB]
        self.schema = self.hosted.db.schema
        self.inputs = 0

    def connection(self, identity: bytes) -> Connection:
        return Connection(self.server, Captured(), identity, DB, confirmed=False,  # type: ignore[arg-type]
                          limits=QueueLimits(messages=4096, bytes_=64 << 20, queries=64))

    def close(self) -> None:
        for h in self.server.databases.values():
            h.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def broken(self) -> bool:
        h = self.server.databases.get(DB)
        return h is not self.hosted or h.closed or h.db.schema is not self.schema


_world: World | None = None


def world() -> World:
    global _world
    if _world is None or _world.broken() or _world.inputs >= RESET_EVERY:
        if _world is not None:
            _world.close()
        _world = World()
        atexit.register(_world.close)
    _world.inputs += 1
    return _world


def _drain(conn: Connection) -> list[dict[str, Any]]:
    out = [decode_server(m) for m in conn.ws.sent]      # type: ignore[attr-defined]
    while True:
        try:
            msg = conn._recv.receive_nowait()
        except trio.WouldBlock:
            return out
        out.append(decode_server(msg))


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    w = world()
    identity = OWNER if data[0] & 1 else OTHER
    conn = w.connection(identity)
    frame = data[1:]
    try:
        try:
            msg = decode_client(frame)
        except ProtocolError as e:
            assert e.request_id is None or type(e.request_id) is int
            conn.error(e, e.request_id)
            return
        if msg["type"] == "DeleteDatabase" and identity == OWNER:
            return
        try:            # what HostedDatabase.handle does, with a bug of ours raised, not logged
            w.hosted.dispatch(conn, msg)
        except StdbError as e:
            conn.error(e, msg["request_id"])
        w.hosted.flush()         # the server is not serving: its outbox is delivered here
    finally:
        try:
            _drain(conn)
        finally:
            w.hosted.db.unsubscribe_all(conn)
            w.hosted.log_followers.pop(conn, None)
            w.hosted.connections.discard(conn)


instrument_module(globals(), __name__ == "__main__")


def main() -> None:
    fuzz(TestOneInput)


if __name__ == "__main__":
    main()
