"""Every connection's requests, decoded and handled in arrival order by one task, in batches.

A connection's task reads its client's messages and submits them here; this task decodes and
handles everything submitted since its last turn in one go, and the answers that produces go
out after the batch (``defer``).  Why not handle each request in its connection's task: the
database code then ran between two connections' socket calls, with the kernel's networking and
trio's scheduler in between, and found its caches cold (the same decode took ~10 µs in the
server against ~3.4 µs warm).  Handling what 50 clients sent in one run, then writing all the
answers, took the server from ~6.9k to ~9.3k transfer calls/s (issue 7; docs/architecture.md).

Order is kept: one connection's requests are handled in the order they arrived; a message that
does not decode is answered with an Error in its place in that order.  Handling is
synchronous, so the rule that one request of a server runs at a time (and a reducer runs to
completion) holds as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from stdb.server.connection import Connection

__all__ = ["Requests"]


class Requests:
    def __init__(self) -> None:
        self._inbox: list[tuple[Connection, bytes | str]] = []
        self._wake = trio.Event()
        self._deferred: list[tuple[Connection, bytes]] | None = None
        self.batches = 0            # stats (tests, benchmarks)
        self.handled = 0

    def submit(self, conn: Connection, data: bytes | str) -> None:
        """Queue a message ``conn`` received (it is decoded when its turn comes)."""
        self._inbox.append((conn, data))
        self._wake.set()

    def defer(self, conn: Connection, msg: bytes) -> bool:
        """While a batch runs: keep ``msg`` to send once the batch is done (True)."""
        if self._deferred is None:
            return False
        self._deferred.append((conn, msg))
        return True

    async def run(self) -> None:
        """Handle what is submitted, batch after batch, until cancelled."""
        while True:
            if not self._inbox:
                self._wake = trio.Event()
                await self._wake.wait()
            batch, self._inbox = self._inbox, []
            deferred: list[tuple[Connection, bytes]] = []
            self._deferred = deferred
            try:
                for conn, data in batch:
                    conn.run_request(data)
            finally:
                self._deferred = None
                for conn, out in deferred:
                    conn.push(out)
            self.batches += 1
            self.handled += len(batch)
            # let the connections read what has arrived before the next batch
            await trio.lowlevel.checkpoint()
