"""How many rows each step of a SELECT's plan will examine, estimated before it runs (issue 23).

The executor (stdb/query/execute.py) plans a query, asks this module for a ``Step`` per table —
the rows it is expected to examine (``rows``, what ``EXPLAIN`` shows) and the rows it examines
for certain (``floor``) — and, under a ``Budget``, refuses a plan whose certain rows already go
over ``rows_examined`` before reading any row.  Only exact counts and lower bounds make a floor,
so an estimate built on an average or a default fraction never refuses a query that would fit.

Where the numbers come from:

- full scan: the table's rows (exact);
- index seek or range: the index counts its entries for the keys or the interval (exact; the
  count stops at the budget, then it is a lower bound) — ``Table.seek_count``, ``range_count``;
- column scan (a comparison no index serves, on a packed column): the table's rows times
  ``EQ_FRACTION`` for ``==``, ``RANGE_FRACTION`` for an inequality;
- WHERE terms the access does not serve keep ``FILTER_FRACTION`` of a step's rows;
- index join: outer rows × rows per key, from ``Table.key_runs`` over the index's first
  ``KEY_SAMPLE`` entries (exact for smaller tables; a multi-column index, looked up by a prefix,
  assumes ``DEFAULT_DISTINCT`` values);
- hash join: the inner table is read whole (exact), then outer × inner / distinct keys pairs
  (distinct from an index on the inner column when there is one, else ``DEFAULT_DISTINCT``);
- nested loop: the inner table is read whole, then outer × inner pairs (exact when neither side
  has a WHERE term of its own);
- a LIMIT without ORDER BY or GROUP BY stops the last step early: about LIMIT + ``CHUNK`` rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Step", "Estimate", "EQ_FRACTION", "RANGE_FRACTION", "FILTER_FRACTION", "KEY_SAMPLE",
           "DEFAULT_DISTINCT", "COUNT_CAP", "CHUNK"]

EQ_FRACTION = 0.1          # rows an equality keeps where no index counts them
RANGE_FRACTION = 0.25      # rows an inequality keeps where no index counts them
FILTER_FRACTION = 0.25     # rows a step's WHERE terms (those no index serves) keep
KEY_SAMPLE = 4096          # index entries Table.key_runs looks at for rows per key
DEFAULT_DISTINCT = 200     # distinct values assumed of a join column no index describes
COUNT_CAP = 1_000_000      # an index count stops here without a budget (EXPLAIN)
CHUNK = 1024               # rows a join counts at a time (stdb/query/execute.py)


@dataclass
class Step:
    """One table's step of a plan."""

    plan: str              # the plan line, as QueryResult.plan shows it
    what: str              # the step as an error names it
    rows: int              # estimated rows it examines
    floor: int             # rows it examines for certain (0: nothing certain)
    out: int               # estimated rows it passes on
    out_floor: int         # rows it passes on for certain
    how: str               # where the estimate comes from


@dataclass
class Estimate:
    steps: list[Step]

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.steps)

    @property
    def floor(self) -> int:
        return sum(s.floor for s in self.steps)

    def over(self, allowed: int) -> tuple[Step, int] | None:
        """The first step after which the certain rows pass ``allowed``, and the certain rows
        before it; None when the plan may fit."""
        before = 0
        for s in self.steps:
            if before + s.floor > allowed:
                return s, before
            before += s.floor
        return None


def _n(x: float) -> int:
    return max(0, math.ceil(x))


def _stream(rows: float, limit: int | None) -> float:
    """Rows a step that stops after ``limit`` rows made examines at most (about)."""
    return rows if limit is None else min(rows, limit + CHUNK)


# ---- the first table


def first(plan: str, what: str, counted: tuple[int, int, str], filtered: bool, terms: bool,
          limit: int | None) -> Step:
    """The first table's step: ``counted`` = (estimated rows its access reads, rows it reads for
    certain, how); ``filtered``: WHERE terms the access does not serve; ``terms``: any WHERE
    term on this table (then no row is certain to pass); ``limit``: the LIMIT when this step
    alone streams (a one-table query without ORDER BY or GROUP BY)."""
    rows, floor, how = counted
    keep = FILTER_FRACTION if filtered else 1.0
    out = rows * keep
    if limit is not None:
        # each row is counted before the filter: at least min(rows, LIMIT) are read
        rows = min(rows, _n(limit / keep))
        floor = min(floor, limit)
        out = min(out, limit)
        how += f"; LIMIT {limit} stops it early"
    rows = max(rows, floor)
    return Step(plan, what, rows, floor, _n(out), 0 if terms else floor, how)


def full_scan(table: Any) -> tuple[int, int, str]:
    n = len(table)
    return n, n, "the table's rows (exact)"


def column_scan(table: Any, op: str) -> tuple[int, int, str]:
    f = EQ_FRACTION if op == "==" else RANGE_FRACTION
    return _n(len(table) * f), 0, f"{f:g} of the table's rows (a default fraction)"


def counted(n: int, cap: int) -> tuple[int, int, str]:
    """An index's count of ``n`` entries, stopped at ``cap``."""
    if n >= cap:
        return n, n, f"counted in the index (at least: counting stopped at {cap:,})"
    return n, n, "counted in the index (exact)"


def seek_count(table: Any, ix: str, keys: Sequence[Any], cap: int) -> int:
    """Rows an index seek of ``keys`` reads (a key the column cannot hold: none), at most ``cap``."""
    from stdb.errors import DataError
    total = 0
    for k in keys:
        if total >= cap:
            break
        try:
            total += table.seek_count(ix, k, cap - total)
        except DataError:
            pass
    return total


# ---- joins


def rows_per_key(table: Any, ix: str | None, columns: int) -> tuple[float, str]:
    """Rows of ``table`` per distinct value of a join column (``ix``: an index whose first
    column it is, with ``columns`` columns; None: no index)."""
    n = len(table)
    if n == 0:
        return 0.0, "an empty table"
    if ix is None or columns > 1:
        return n / min(n, DEFAULT_DISTINCT), f"{DEFAULT_DISTINCT} distinct values assumed"
    entries, distinct = table.key_runs(ix, KEY_SAMPLE)
    if not distinct:
        return 0.0, "an empty index"
    exact = "exact" if entries == n else f"its first {entries:,} entries"
    return entries / distinct, f"rows per key from index {ix} ({exact})"


def index_join(plan: str, what: str, prev: Step, per_key: tuple[float, str], filtered: bool,
               on_more: bool, limit: int | None) -> Step:
    pk, how = per_key
    rows = _stream(prev.out * pk, limit)
    keep = (FILTER_FRACTION if filtered else 1.0) * (FILTER_FRACTION if on_more else 1.0)
    out = rows * keep if limit is None else min(rows * keep, limit)
    return Step(plan, what, _n(rows), 0, _n(out), 0, f"outer rows × {pk:.3g} ({how})")


def hash_join(plan: str, what: str, prev: Step, inner: int, per_key: tuple[float, str], certain: bool,
              filtered: bool, on_more: bool, limit: int | None) -> Step:
    """``certain``: the hash join is sure to run (it reads ``inner`` rows whatever matches)."""
    pk, how = per_key
    pairs = _stream(prev.out * pk * (FILTER_FRACTION if filtered else 1.0), limit)
    out = pairs * (FILTER_FRACTION if on_more else 1.0)
    if limit is not None:
        out = min(out, limit)
    return Step(plan, what, inner + _n(pairs), inner if certain else 0, _n(out), 0,
                f"reads {inner:,} rows (exact), then outer rows × {pk:.3g} pairs ({how})")


def nested_loop(plan: str, ref: str, prev: Step, inner: int, filtered: bool, limit: int | None) -> Step:
    kept = inner * (FILTER_FRACTION if filtered else 1.0)
    pairs = _stream(prev.out * kept, limit)
    sure = 0 if filtered or limit is not None else prev.out_floor * inner
    what = f"the join of '{ref}' (" + (f"a nested loop: {prev.out_floor:,} × {inner:,} pairs" if sure else
                                        f"a nested loop reading all {inner:,} rows") + \
        "; no equality between columns to join on)"
    out = pairs * FILTER_FRACTION
    if limit is not None:
        out = min(out, limit)
    return Step(plan, what, max(inner + _n(pairs), inner + sure), inner + sure, _n(out), 0,
                f"reads {inner:,} rows (exact), then outer rows × {_n(kept):,} pairs"
                + (" (exact)" if sure and sure == _n(prev.out * kept) else ""))
