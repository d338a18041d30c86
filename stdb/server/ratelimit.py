"""Rate limits per identity: a token bucket each (issue 23).

A database's settings (stdb/module/settings.py) give each role a rate and a burst for reducer
calls and for queries (one-off queries and subscribes).  Each identity has a bucket per kind
holding up to ``burst`` tokens and refilled at ``rate`` tokens a second; a request takes one,
and a request that finds the bucket empty is refused with ``RateLimited`` saying when the next
would be accepted.  The buckets live on the database's execution thread (no lock): the database
serves its requests one at a time.  Full buckets are forgotten now and then, so an identity
that stopped sending costs nothing.
"""

from __future__ import annotations

from stdb.errors import RateLimited

__all__ = ["Buckets"]

SWEEP_FROM = 4096           # identities held before full buckets are first swept away


class Buckets:
    """One kind of request's buckets: identity → [tokens, when last counted (s)]."""

    def __init__(self, what: str) -> None:
        self.what = what                    # "reducer calls", "queries"
        self._b: dict[bytes, list[float]] = {}
        self._sweep_at = SWEEP_FROM

    def __len__(self) -> int:
        return len(self._b)

    def take(self, who: bytes, rate: float, burst: int, now: float) -> None:
        """One request of ``who``'s at ``now`` (seconds, monotonic); RateLimited when its bucket
        is empty.  ``rate`` 0: no limit."""
        if rate <= 0:
            return
        b = self._b.get(who)
        if b is None:
            if len(self._b) >= self._sweep_at:
                self._sweep(rate, burst, now)
            self._b[who] = [burst - 1.0, now]
            return
        tokens = b[0] + (now - b[1]) * rate
        if tokens > burst:
            tokens = burst
        b[1] = now
        if tokens >= 1.0:
            b[0] = tokens - 1.0
            return
        b[0] = tokens
        after = (1.0 - tokens) / rate
        raise RateLimited(f"too many {self.what}: at most {rate:g} a second per identity, in bursts of "
                          f"up to {burst:,}; the next is accepted in {after * 1000:.0f} ms",
                          hint=f"wait retry_after seconds ({after:.3f}) and send it again; the database's "
                               "owner sets the limits (stdb settings)", retry_after=after)

    def _sweep(self, rate: float, burst: int, now: float) -> None:
        """Forget the buckets that are full again by ``now``."""
        self._b = {k: b for k, b in self._b.items() if b[0] + (now - b[1]) * rate < burst}
        self._sweep_at = max(SWEEP_FROM, 2 * len(self._b))
