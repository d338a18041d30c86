"""Progress display for long work (recovery, log verification, replay).

``progress_bar(total, label)`` yields a ``tick(done)`` callable.  It draws a rich progress
bar on stderr when stderr is a terminal and the work is long enough to be worth it, and
does nothing otherwise (tests, pipes, CI logs).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["progress_bar"]

MIN_TOTAL = 5000


@contextmanager
def progress_bar(total: int, label: str, *, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    if not enabled or total < MIN_TOTAL or not sys.stderr.isatty():
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as p:
        task = p.add_task(label, total=total)
        yield lambda done: p.update(task, completed=done)
