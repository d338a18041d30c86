"""One epoll for every connection's socket: the I/O thread reads requests without a task switch
per message.

With a trio task per connection, each request cost a park and a wake-up of its task (trio's
``wait_readable``: an epoll registration, a reschedule, a run of the scheduler), most of the I/O
thread's time at 50 clients (py-spy, issue 22).  Here one task waits on one epoll for all of
them and, when it wakes, calls each ready socket's reader in turn: the reader takes what the
socket holds, parses the frames and hands the requests to their database, all without leaving
this task.  A connection's own task only runs for what is rare: control frames, the close,
protocol errors and backpressure (it unregisters its socket here, does it, registers again).

Level-triggered: a socket that still holds data after its reader ran is reported again.
A socket must be unregistered before it is closed (its descriptor could be reused).
"""

from __future__ import annotations

import logging
import select
from collections.abc import Callable

import trio

__all__ = ["Poller"]

log = logging.getLogger("stdb.server")

MAX_EVENTS = 512


class Poller:
    def __init__(self, begin: Callable[[], None] | None = None,
                 end: Callable[[], None] | None = None) -> None:
        self._ep: select.epoll | None = select.epoll()
        self._begin = begin         # run around each wake's readers (the server gathers what they
        self._end = end             # read and hands it across at the end)
        self._readers: dict[int, Callable[[], None]] = {}
        self.wakeups = 0            # statistics (tests, benchmarks)
        self.reads = 0

    def register(self, fd: int, reader: Callable[[], None]) -> bool:
        """Call ``reader()`` (in the poller's task) whenever ``fd`` has something to read;
        False when the poller has stopped (the server is shutting down)."""
        if self._ep is None:
            return False
        self._ep.register(fd, select.EPOLLIN)
        self._readers[fd] = reader
        return True

    def unregister(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None and self._ep is not None:
            self._ep.unregister(fd)

    def __contains__(self, fd: int) -> bool:
        return fd in self._readers

    async def run(self) -> None:
        """Serve the registered sockets until cancelled; then the epoll is closed."""
        ep = self._ep
        assert ep is not None
        try:
            while True:
                await trio.lowlevel.wait_readable(ep.fileno())
                self.wakeups += 1
                if self._begin is not None:
                    self._begin()
                for fd, _ in ep.poll(0, MAX_EVENTS):
                    reader = self._readers.get(fd)
                    if reader is not None:       # (unregistered by an earlier reader meanwhile)
                        self.reads += 1
                        try:
                            reader()
                        except Exception:       # a bug of ours: that connection is no longer read
                            log.exception("reading socket %d failed", fd)
                            self.unregister(fd)
                if self._end is not None:
                    self._end()
        finally:
            self._ep = None
            self._readers.clear()
            ep.close()
