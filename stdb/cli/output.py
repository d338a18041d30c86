"""How the CLI prints values, rows and errors."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from stdb.errors import StdbError

__all__ = ["show", "to_json", "print_table", "fail", "errors_exit"]

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


def to_json(v: Any) -> Any:
    """A value as JSON (bytes become hex strings)."""
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    if isinstance(v, (list, tuple)):
        return [to_json(x) for x in v]
    if isinstance(v, dict):
        return {str(k): to_json(x) for k, x in v.items()}
    return v


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], as_json: bool = False) -> None:
    if as_json:
        for r in rows:
            click.echo(json.dumps(dict(zip(columns, to_json(list(r)), strict=True)), ensure_ascii=False))
        return
    t = Table(*columns, show_lines=False, header_style="bold")
    for r in rows:
        t.add_row(*(show(v) for v in r))
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
