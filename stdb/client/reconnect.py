"""How a client connection comes back after it drops (docs/client.md, "Reconnecting").

The rules are the TypeScript SDK's (sdk/typescript/src/connection.js): attempt ``n`` (from 0)
waits ``min(max_delay, initial_delay * 2**n)``, drawn at random from the upper half of that
(jitter, so that many clients dropped together do not come back in step); a close the server
or the client meant for good (1000 closed by the client, 4003 refused, 4004 database deleted)
and a refused token end it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from stdb.errors import DataError

__all__ = ["Reconnect", "reconnect_options", "FATAL_CLOSE"]

# close codes after which there is nothing to come back to: closed by the client (normal
# closure), refused by the module's client_connected, the database deleted
FATAL_CLOSE = frozenset({1000, 4003, 4004})


@dataclass(frozen=True)
class Reconnect:
    """Reconnect options: ``connect(..., reconnect=Reconnect(initial_delay=0.5))``.

    ``initial_delay`` and ``max_delay`` bound the wait before each attempt (seconds);
    ``max_attempts`` (None: no limit) ends it; ``on_retry(attempt, delay)``, if given, is
    called before each wait (attempts count from 1) — for a status line or a log."""

    initial_delay: float = 0.1
    max_delay: float = 10.0
    max_attempts: int | None = None
    on_retry: Callable[[int, float], None] | None = None

    def __post_init__(self) -> None:
        if not self.initial_delay > 0:
            raise DataError(f"Reconnect.initial_delay must be over 0 seconds, got {self.initial_delay!r}")
        if not self.max_delay >= self.initial_delay:
            raise DataError(f"Reconnect.max_delay ({self.max_delay!r}) must be at least initial_delay "
                            f"({self.initial_delay!r})")
        n = self.max_attempts
        if n is not None and not (isinstance(n, int) and n >= 1):
            raise DataError(f"Reconnect.max_attempts must be None (no limit) or at least 1, "
                            f"got {self.max_attempts!r}")

    def bound(self, attempt: int) -> float:
        """The longest wait before attempt ``attempt`` (from 0)."""
        return min(self.max_delay, self.initial_delay * 2.0 ** min(attempt, 64))

    def delay(self, attempt: int, rand: float) -> float:
        """The wait before attempt ``attempt`` (from 0), ``rand`` in [0, 1): in the upper half
        of its bound."""
        full = self.bound(attempt)
        return full / 2 + rand * (full / 2)


def reconnect_options(value: bool | Reconnect | None) -> Reconnect | None:
    """``connect``'s ``reconnect`` argument as options (None: no reconnecting)."""
    if value is None or value is False:
        return None
    if value is True:
        return Reconnect()
    if isinstance(value, Reconnect):
        return value
    raise DataError(f"reconnect must be True, False or a stdb.Reconnect, got {type(value).__name__}")
