"""What one query may cost: rows examined, rows returned, result bytes and time (issue 23).

A one-off query runs on its database's execution thread with the GIL held between rows, so a
query without a bound is a denial of service: a three-way join over 3,000 equal keys is
9,000,000 rows and ~20 s, and its answer is larger than any message a client accepts.  Every
one-off query therefore runs under ``QueryLimits``: generous for the database's owner, small
for everyone else (``DEFAULT_LIMITS``).  ``Budget`` counts as the executor reads and joins
(stdb/query/execute.py), refuses before reading any row a plan certain to examine too many
(``refuse_plan``: full scans, nested loops, index counts; stdb/query/estimate.py), refuses a
join whose size it can tell before producing it (a hash join's output is the sum of its
buckets; a nested loop's is the product of its sides), and checks the clock (and whether the
query was cancelled: its client went away) every ``CLOCK_EVERY`` rows.  Going over raises
``QueryError`` naming the limit, its value and what to do instead; nothing is changed by a
SELECT, so nothing is undone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stdb.errors import QueryError

if TYPE_CHECKING:
    from stdb.query.estimate import Estimate

__all__ = ["Budget", "DEFAULT_LIMITS", "OWNER_LIMITS", "QueryLimits", "over", "whose"]

CLOCK_EVERY = 4096              # rows between two looks at the clock


@dataclass(frozen=True)
class QueryLimits:
    """The most one query may cost.  ``rows_examined``: rows read from tables plus rows a join
    produces before the WHERE terms over several tables filter them; ``rows_returned``: rows
    in the answer; ``result_bytes``: the encoded answer (checked by the server); ``seconds``:
    wall time on the database's thread."""

    rows_examined: int = 100_000
    rows_returned: int = 10_000
    result_bytes: int = 4 << 20
    seconds: float = 0.5

    def __post_init__(self) -> None:
        for name in ("rows_examined", "rows_returned", "result_bytes"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise QueryError(f"query limit {name} must be a whole number ≥ 1, not {v!r}")
        if not isinstance(self.seconds, (int, float)) or isinstance(self.seconds, bool) or \
                not 0 < self.seconds <= 3600:
            raise QueryError(f"query limit seconds must be a number in (0, 3600], not {self.seconds!r}")


DEFAULT_LIMITS = QueryLimits()                  # anyone but the database's owner
# (result_bytes: an answer waits whole in its connection's outbound queue, 16 MiB by default, and
# the server holds a one-off answer to half of it: stdb/server/hosted.py)
OWNER_LIMITS = QueryLimits(rows_examined=10_000_000, rows_returned=1_000_000, result_bytes=8 << 20,
                           seconds=10.0)

_WHAT_TO_DO = {
    "rows_examined": "filter on an indexed column in WHERE, join on indexed columns, or add a LIMIT: "
                     "without ORDER BY or GROUP BY, a LIMIT stops reading early",
    "rows_returned": "add a LIMIT or a narrower WHERE",
    "result_bytes": "select fewer columns, add a LIMIT or a narrower WHERE",
    "seconds": "filter on an indexed column in WHERE, join on indexed columns, or add a LIMIT",
    "subscribed_rows": "subscribe to narrower queries (a WHERE on an indexed column), or unsubscribe "
                       "some first",
}


def over(limit: str, value: int | float, what: str, who: str) -> QueryError:
    """The error for a query past ``limit`` (``value``): ``what`` it came to."""
    shown = f"{value:g} s" if limit == "seconds" else f"{value:,}"
    e = QueryError(f"query over its limit {limit} = {shown} ({who}): {what}",
                   hint=_WHAT_TO_DO[limit] + ". The database's owner queries under larger limits "
                                             "and sets them (stdb settings).")
    e.limit = limit
    return e


def whose(owner: bool) -> str:
    """Whose query an error names."""
    return "the owner's query" if owner else "a client's query"


class Budget:
    """One query's running count against its ``limits``."""

    def __init__(self, limits: QueryLimits, who: str = "a client's query",
                 clock: Callable[[], float] | None = None,
                 cancelled: Callable[[], bool] | None = None) -> None:
        self.limits = limits
        self.who = who
        self.cancelled = cancelled          # true once nobody waits for the answer any more
        self.examined = 0
        self._clock = time.monotonic if clock is None else clock
        self._deadline = self._clock() + limits.seconds
        self._next_look = CLOCK_EVERY

    def examine(self, n: int, what: str | None = None) -> None:
        """``n`` more rows are about to be read or produced (``what``: by which step); refused,
        without counting them, when that would go over: ``examined`` never passes the limit."""
        if self.examined + n > self.limits.rows_examined:
            raise over("rows_examined", self.limits.rows_examined,
                       f"{what or 'the query'} would examine {n:,} more rows after {self.examined:,}",
                       self.who)
        self.examined += n
        if self.examined >= self._next_look:
            self._next_look = self.examined + CLOCK_EVERY
            self.check_time()

    def expect(self, n: int, what: str) -> None:
        """Refuse up front a step that will examine ``n`` more rows than the budget has left
        (they are counted as they are made)."""
        if self.examined + n > self.limits.rows_examined:
            raise over("rows_examined", self.limits.rows_examined,
                       f"{what} would examine {n:,} rows after {self.examined:,}", self.who)

    def refuse_plan(self, est: Estimate) -> None:
        """Refuse up front, before a row is read, a plan certain to examine more rows than the
        budget has left (stdb/query/estimate.py: only exact counts and lower bounds count)."""
        hit = est.over(self.limits.rows_examined - self.examined)
        if hit is not None:
            step, before = hit
            after = f" after at least {before:,}" if before else ""
            raise over("rows_examined", self.limits.rows_examined,
                       f"{step.what} would examine at least {step.floor:,} rows{after}, refused before "
                       f"reading any (the plan's estimate: {est.rows:,} rows examined; EXPLAIN shows it)",
                       self.who)

    def check_time(self) -> None:
        """Over time, or cancelled: raise (every ``CLOCK_EVERY`` rows examined)."""
        if self.cancelled is not None and self.cancelled():
            raise QueryError(f"{self.who} was cancelled after {self.examined:,} rows examined: "
                             "its client went away")
        if self._clock() > self._deadline:
            raise over("seconds", self.limits.seconds,
                       f"still running after {self.examined:,} rows examined", self.who)

    def returned(self, n: int) -> None:
        if n > self.limits.rows_returned:
            raise over("rows_returned", self.limits.rows_returned, f"the answer has {n:,} rows or more",
                       self.who)
