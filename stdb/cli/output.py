"""How the CLI prints values, rows and errors."""

from __future__ import annotations

import datetime
import functools
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from stdb.errors import StdbError

__all__ = ["show", "show_as", "to_json", "print_table", "fail", "errors_exit"]

F = TypeVar("F", bound=Callable[..., Any])
console = Console(highlight=False, soft_wrap=True)


def show(v: Any) -> str:
    """A value as a person reads it: bytes (identities) in hex, text as itself."""
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(show(x) for x in v) + "]"
    return str(v)


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def show_as(v: Any, type_name: str | None) -> str:
    """``show`` knowing the column's type: a timestamp (µs since the Unix epoch) as a UTC date
    and time; an option or array of timestamps likewise, element by element."""
    if type_name is not None and "timestamp" in type_name and v is not None:
        inner = type_name[len("option<"):-1] if type_name.startswith("option<") else type_name
        if inner == "array<timestamp>" and isinstance(v, (list, tuple)):
            return "[" + ", ".join(show_as(x, "timestamp") for x in v) + "]"
        if inner == "timestamp" and isinstance(v, int) and not isinstance(v, bool):
            try:
                when = _EPOCH + datetime.timedelta(microseconds=v)      # (exact: no float)
            except OverflowError:               # outside the years datetime holds
                return str(v)
            return when.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    return show(v)


def to_json(v: Any) -> Any:
    """A value as JSON (bytes become hex strings)."""
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, (list, tuple)):
        return [to_json(x) for x in v]
    if isinstance(v, dict):
        return {str(k): to_json(x) for k, x in v.items()}
    return v


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], as_json: bool = False,
                types: Sequence[str] = ()) -> None:
    """Rows as a table (values as ``show_as`` their column's type shows them), or with
    ``as_json`` one JSON object per row (raw values: timestamps as µs)."""
    if as_json:
        for r in rows:
            click.echo(json.dumps(dict(zip(columns, to_json(list(r)), strict=True)), ensure_ascii=False))
        return
    t = Table(*columns, show_lines=False, header_style="bold")
    kinds: list[str | None] = list(types) if len(types) == len(columns) else [None] * len(columns)
    for r in rows:
        t.add_row(*(show_as(v, k) for v, k in zip(r, kinds, strict=True)))
    console.print(t)
    console.print(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")


def fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def errors_exit(fn: F) -> F:
    """Run a command; a StdbError is printed (code, detail, hint) and exits 1."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        try:
            return fn(*args, **kw)
        except StdbError as e:
            fail(f"{e.code}: {e.detail}" + (f"\nhint: {e.hint}" if e.hint else ""))
        except KeyboardInterrupt:
            sys.exit(130)
    return wrapper  # type: ignore[return-value]
