"""A database's execution thread: the jobs submitted to it run there, in order, in batches.

Every hosted database has one (stdb/server/hosted.py).  The server's I/O thread (trio) submits
a job per request it read; the thread takes everything queued when it wakes and hands the whole
batch to its worker, which runs the jobs one after another and returns what it produced to the
I/O thread in one go.  Between batches the thread sleeps until a job arrives or until the
worker's next timed wake-up (a scheduled reducer's time).

Why a thread per database: a reducer runs with the GIL released for the whole call (the native
call path, stdb/module/_call.pyx), so while one database's reducer loops until its limit the
I/O thread and every other database's thread go on.  Within one database the rule stays that
one request runs at a time and a reducer runs to completion.

The thread never touches trio; the worker hands results across thread-safely: posted to the
server's poller (``Poller.post``, an eventfd in its epoll), or with ``TrioToken.run_sync_soon``
when the poller is not running (stdb/server/hosted.py, ``flush``).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Protocol

__all__ = ["ExecutionThread", "Worker"]

log = logging.getLogger("stdb.server")

Job = Callable[[], None]
_STOP: Job = lambda: None  # noqa: E731 - a sentinel: the thread ends after the jobs before it


class Worker(Protocol):
    def run_batch(self, jobs: list[Job]) -> None:
        """Run ``jobs`` in order (and whatever is due), then hand the results across."""

    def next_wake(self) -> float | None:
        """Seconds until the worker wants to run without a job (None: only for a job)."""


class ExecutionThread:
    def __init__(self, name: str, worker: Worker) -> None:
        self.name = name
        self._worker = worker
        self._inbox: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.stopping = False       # stop() was called: nothing more is accepted
        self.batches = 0            # statistics (tests, benchmarks): batches and jobs taken
        self.jobs = 0
        self.in_batch = False       # a batch is running

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"stdb-db-{self.name}", daemon=True)
            self._thread.start()

    def submit(self, job: Job) -> bool:
        """Queue ``job``; it runs after everything queued before it.  False (and it never runs)
        once ``stop`` was called.  One thread submits (the server's I/O thread)."""
        if self.stopping:
            return False
        self._inbox.put(job)
        return True

    def stop(self, timeout: float | None = None) -> bool:
        """Run what is queued, then end the thread; True once it has ended (a job that is
        running finishes first: a reducer is bounded by its module's limits)."""
        t = self._thread
        if not self.stopping:
            self.stopping = True
            self._inbox.put(_STOP)
        if t is None:
            return True
        if t is not threading.current_thread():
            t.join(timeout)
        return not t.is_alive()

    def _loop(self) -> None:
        inbox, worker = self._inbox, self._worker
        while True:
            try:
                first = inbox.get(timeout=worker.next_wake())
            except queue.Empty:
                batch: list[Job] = []
            else:
                batch = [first]
                while True:
                    try:
                        batch.append(inbox.get_nowait())
                    except queue.Empty:
                        break
            stop = False
            for i, job in enumerate(batch):
                if job is _STOP:
                    del batch[i:]
                    stop = True
                    break
            self.batches += 1           # counted first: a job's answers come after its count
            self.jobs += len(batch)
            self.in_batch = True
            try:
                worker.run_batch(batch)
            except Exception:       # a bug of ours: the database must keep serving
                log.exception("%s: execution thread: a batch failed", self.name)
            self.in_batch = False
            if stop:
                return
