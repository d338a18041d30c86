"""The leader's side of one database's stream (docs/replication.md, "Leading").

The commit log's writer thread hands over each group it wrote (``written``); the execution
thread hands over module and settings changes (``meta``), after the records they follow.  One
task on the NATS loop publishes them in that order, consecutive records joined into messages
up to what the NATS servers take, each publish fenced by the stream's expected last sequence:
if any other node appended to the stream since, JetStream refuses it and this node stops
leading (``on_fenced``).  ``offset``/``wait``: the last offset JetStream acknowledged — in a
replicated stream, stored on a majority of its servers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import nats.errors
import nats.js.errors

from stdb.errors import ReplicationError
from stdb.replication import wire
from stdb.replication.bridge import AsyncioThread
from stdb.storage import logformat as lf
from stdb.storage.commitlog import split_value

__all__ = ["Publisher", "Fenced", "SteppedDown"]

log = logging.getLogger("stdb.replication")
WRONG_LAST_SEQUENCE = 10071
RETRY_S = (0.05, 0.1, 0.2, 0.5, 1.0)


class Fenced(ReplicationError):
    """Another node appended to the stream: this one no longer leads."""


class Publisher:
    def __init__(self, bridge: AsyncioThread, js: Any, database: str, *, expected_seq: int,
                 replicated_offset: int, term: int, max_payload: int, lease_ok: Callable[[], bool],
                 on_fenced: Callable[[str], None]) -> None:
        self.bridge = bridge
        self.js = js
        self.database = database
        self.stream = wire.stream_name(database)
        self.subject = wire.subject(database)
        self.expected_seq = expected_seq        # the stream's last sequence, as this leader wrote it
        self.term = term
        self.limit = max(4096, max_payload - 8192)      # room for the headers
        self.lease_ok = lease_ok
        self.on_fenced = on_fenced
        self._q: deque[tuple[Any, ...]] = deque()
        self._wake = asyncio.Event()
        self._cond = threading.Condition()
        self._offset = replicated_offset
        self._failed: ReplicationError | None = None
        self._task: asyncio.Task | None = None
        self._meta_seq = 0
        self.published = 0                      # messages (stats)
        self.last_publish_s = 0.0

    # ---- any thread

    @property
    def offset(self) -> int:
        return self._offset

    def wait(self, offset: int, timeout: float | None = None) -> None:
        """Until JetStream acknowledged ``offset``; ReplicationError if this node stopped leading
        first (the commit may or may not be in the stream: the new leader's log says)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._offset < offset and self._failed is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise ReplicationError(f"offset {offset} not replicated after {timeout} s")
                self._cond.wait(left)
            if self._offset < offset and self._failed is not None:
                raise self._failed

    def written(self, items: list[tuple[bytes, bytes]]) -> None:
        """(the writer thread) a group's values, as stored."""
        self._q.append(("log", items))
        self.bridge.call_soon(self._wake.set)

    def meta(self, kind: str, data: bytes | None, info: bytes | None, after: int) -> None:
        """(the execution thread) a module or settings change, after the records before ``after``."""
        self._q.append(("meta", kind, data, info, after))
        self.bridge.call_soon(self._wake.set)

    def fail(self, why: str) -> None:
        with self._cond:
            if self._failed is None:
                self._failed = ReplicationError(f"database '{self.database}' stopped replicating: {why}",
                                                hint="this node no longer leads; the leader's log decides "
                                                     "whether the commit survived")
            self._cond.notify_all()

    # ---- the NATS loop

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self, why: str) -> None:
        self.fail(why)
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._q:
                    for msg in self._take():
                        await self._publish(msg)
        except Fenced as e:
            self.fail(e.detail)
            self.on_fenced(e.detail)
        except asyncio.CancelledError:
            raise
        except Exception as e:     # noqa: BLE001 - reported; the node steps down
            log.exception("%s: publishing failed", self.database)
            self.fail(repr(e))
            self.on_fenced(f"publishing failed: {e!r}")

    def _take(self) -> list[wire.Message]:
        """What is queued, as messages: consecutive log values joined up to the limit."""
        out: list[wire.Message] = []
        parts: list[bytes] = []
        first, count, size = -1, 0, 0

        def close() -> None:
            nonlocal parts, first, count, size
            if parts:
                out.append(wire.Message.log(first, count, b"".join(parts)))
            parts, first, count, size = [], -1, 0, 0
        while self._q:
            item = self._q.popleft()
            if item[0] == "meta":
                close()
                _, kind, data, info, after = item
                out.append(wire.Message(kind, data or b"", after, info=info))
                continue
            for key, value in item[1]:
                off = lf.key_offset(key)
                n = len(split_value(off, value))
                if parts and (size + len(value) > self.limit or off != first + count):
                    close()
                if not parts:
                    first = off
                parts.append(bytes(value))
                count += n
                size += len(value)
        close()
        return out

    async def _publish(self, msg: wire.Message) -> None:
        pieces = wire.split_parts(msg.payload, self.limit)
        for i, piece in enumerate(pieces):
            headers = msg.header_map(self.term)
            if msg.kind != "log":
                self._meta_seq += 1
                headers[wire.MSG_ID] = f"{msg.kind}.{msg.after}.{self.term}.{self._meta_seq}"
            if len(pieces) > 1:
                headers[wire.PART] = f"{i + 1}/{len(pieces)}"
                headers[wire.MSG_ID] += f".{i + 1}"
            await self._publish_one(piece, headers)
        self.published += 1
        if msg.kind == "log":
            with self._cond:
                self._offset = msg.after - 1
                self._cond.notify_all()

    async def _publish_one(self, data: bytes, headers: dict[str, str]) -> None:
        attempt = 0
        while True:
            if not self.lease_ok():
                raise Fenced("the lease ran out before the stream took the message")
            h = dict(headers)
            h[wire.EXPECTED_LAST_SEQ] = str(self.expected_seq)
            t0 = time.perf_counter()
            try:
                ack = await self.js.publish(self.subject, data, timeout=2.0, headers=h)
            except nats.js.errors.APIError as e:
                if e.err_code == WRONG_LAST_SEQUENCE:
                    if await self._already_stored(headers[wire.MSG_ID]):
                        return
                    raise Fenced(f"the stream {self.stream} has messages this node did not write "
                                 f"(expected last sequence {self.expected_seq})") from None
                if attempt >= 30:
                    raise
            except (TimeoutError, nats.errors.Error) as e:
                if attempt >= 30:
                    raise ReplicationError(f"publishing to {self.stream} failed {attempt + 1} times: {e!r}") \
                        from None
            else:
                self.last_publish_s = time.perf_counter() - t0
                self.expected_seq = ack.seq
                return
            await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
            attempt += 1

    async def _already_stored(self, msg_id: str) -> bool:
        """After a refused publish: whether the stream's last message is ours (an earlier
        attempt of this publish was stored, its acknowledgement lost)."""
        try:
            info = await self.js.stream_info(self.stream)
            last = await self.js.get_msg(self.stream, info.state.last_seq)
        except Exception:  # noqa: BLE001 - then it is not known to be ours
            return False
        if (last.headers or {}).get(wire.MSG_ID) == msg_id:
            self.expected_seq = info.state.last_seq
            return True
        return False


class SteppedDown:
    """What a database's confirmed clients wait on after this node stopped leading it: the
    commits JetStream acknowledged (through ``acked``) are confirmed; the node's own later ones
    (through ``own``) may never be in the stream, so a client waiting for one is disconnected
    (ReplicationError) rather than told; what the node applies from the stream afterwards
    (past ``own``) came from the stream, so it is confirmed."""

    def __init__(self, database: str, acked: int, own: int) -> None:
        self.database = database
        self.offset = acked
        self.own = own

    def wait(self, offset: int) -> None:
        if self.offset < offset <= self.own:
            raise ReplicationError(f"database '{self.database}': this node stopped leading before the "
                                   f"stream acknowledged offset {offset}",
                                   hint="the new leader's log decides whether that commit survived")
