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

The same epoll also carries what other threads hand this one (``post``): the databases'
execution threads post each batch's answers, and the poller runs them when it wakes, through
an eventfd it watches like a socket.  trio's ``run_sync_soon`` did this before, at the cost of
a task of its own woken through a socket pair and re-armed in trio's epoll every time (~15% of
the I/O thread's busy time at 50 clients, py-spy --native).
"""

from __future__ import annotations

import logging
import os
import select
import threading
from collections.abc import Callable
from typing import Any

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
        # posts from other threads: (fn, arg) run here in order; the eventfd is readable while
        # some wait (``_signalled``: written once until the poller takes them)
        self._lock = threading.Lock()
        self._posts: list[tuple[Callable[[Any], None], Any]] = []
        self._signalled = False
        self._closed = False
        self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._ep.register(self._efd, select.EPOLLIN)
        self._readers[self._efd] = self._take_posts

    def post(self, fn: Callable[[Any], None], arg: Any) -> bool:
        """Run ``fn(arg)`` in the poller's task soon, after what was posted before (from any
        thread); False, and it will not run, once the poller has closed."""
        with self._lock:
            if self._closed:
                return False
            self._posts.append((fn, arg))
            if not self._signalled:
                self._signalled = True
                os.eventfd_write(self._efd, 1)
        return True

    def _take_posts(self) -> None:
        with self._lock:
            self._signalled = False
            try:
                os.eventfd_read(self._efd)
            except BlockingIOError:
                pass
            posts, self._posts = self._posts, []
        self._run_posts(posts)

    @staticmethod
    def _run_posts(posts: list[tuple[Callable[[Any], None], Any]]) -> None:
        for fn, arg in posts:
            try:
                fn(arg)
            except Exception:       # a bug of ours: the other posts still run
                log.exception("a posted call failed: %r", fn)

    def register(self, fd: int, reader: Callable[[], None]) -> bool:
        """Call ``reader()`` (in the poller's task) whenever ``fd`` has something to read;
        False when the poller has stopped (the server is shutting down)."""
        if self._ep is None:
            return False
        self._ep.register(fd, select.EPOLLIN)
        self._readers[fd] = reader
        return True

    def unregister(self, fd: int) -> None:
        if fd != self._efd and self._readers.pop(fd, None) is not None and self._ep is not None:
            self._ep.unregister(fd)

    def __contains__(self, fd: int) -> bool:
        return fd in self._readers and fd != self._efd

    @property
    def sockets(self) -> int:
        """How many sockets are registered."""
        return len(self._readers) - (0 if self._closed else 1)

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
            self.close()

    def close(self) -> None:
        """Stop: the epoll and the eventfd are closed, nothing more can be posted, and what
        was posted and has not run runs now (from the trio thread)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            posts, self._posts = self._posts, []
            os.close(self._efd)
        ep, self._ep = self._ep, None
        self._readers.clear()
        if ep is not None:
            ep.close()
        self._run_posts(posts)
