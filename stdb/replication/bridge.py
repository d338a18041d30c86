"""An asyncio event loop in a thread of its own, for nats-py beside the server's trio.

Why a thread and not trio-asyncio (docs/architecture.md, "Replication"): the loop's work —
publishing log groups, consuming streams, renewing the lease — must not wait behind the I/O
thread's Python (a thousand subscribers' writes) nor make it wait, and nats-py's reconnect and
heartbeat tasks need a loop that keeps turning; the hand-offs are few (one per log group, one
per replicated message) and each is one thread-safe call.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["AsyncioThread"]

T = TypeVar("T")


class AsyncioThread:
    def __init__(self, name: str = "stdb-nats") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop; its future, to wait for from any other thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """``fn(*args)`` on the loop's thread (from any thread; not after ``stop``)."""
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:        # the loop has stopped: nothing runs on it any more
            pass

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel what runs on the loop, stop it and join its thread."""
        if not self._thread.is_alive():
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks(self.loop) if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            self.submit(cancel_all()).result(timeout)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
