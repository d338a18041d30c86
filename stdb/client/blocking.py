"""A blocking client for scripts: the async client run by trio in a thread of its own.

    with stdb.client.connect_blocking("ws://127.0.0.1:3000", "chat") as conn:
        conn.subscribe("SELECT * FROM message")
        conn.call("send_message", "hi").raise_for_status()
        print(conn.rows("message"))

Each method waits for the answer.  Callbacks registered with ``on_insert`` & co. (and
``on_disconnect``, ``on_reconnect``, ``on_error``) run on the client's thread, not the
caller's.  Reconnecting is the async client's (docs/client.md, "Reconnecting"): on by default,
``close()`` stops it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import trio

from stdb.client.cache import Event
from stdb.client.connection import DbConnection, QueryResult, ReducerOutcome, Subscription, connect
from stdb.errors import ConnectionLost, StdbError

__all__ = ["BlockingConnection", "connect_blocking"]


class BlockingConnection:
    def __init__(self, url: str, database: str, **kw: Any) -> None:
        self._conn: DbConnection | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main, url, database, kw),
                                        name="stdb-client", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    async def _main(self, url: str, database: str, kw: dict) -> None:
        try:
            async with connect(url, database, **kw) as conn:
                self._conn = conn
                self._token = trio.lowlevel.current_trio_token()
                self._stop = trio.Event()
                self._ready.set()
                await self._stop.wait()
        except BaseException as e:                 # noqa: B902 - handed to the caller's thread
            self._error = e
        finally:
            self._conn = None
            self._ready.set()

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._conn is None or self._token is None:
            raise ConnectionLost("the connection is closed")
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def _run_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._conn is None or self._token is None:
            raise ConnectionLost("the connection is closed")
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    @property
    def connection(self) -> DbConnection:
        if self._conn is None:
            raise ConnectionLost("the connection is closed")
        return self._conn

    @property
    def identity(self) -> bytes:
        return self.connection.identity

    @property
    def state(self) -> str:
        """``connected``, ``reconnecting`` or ``closed``."""
        return self.connection.state if self._conn is not None else "closed"

    @property
    def close_reason(self) -> str | None:
        """Why the socket ended (None while connected)."""
        return self._conn.close_reason if self._conn is not None else "closed by the client"

    # the connection's callbacks (set from any thread; they run on the client's)

    @property
    def on_disconnect(self) -> Callable[[str], None] | None:
        return self.connection.on_disconnect

    @on_disconnect.setter
    def on_disconnect(self, fn: Callable[[str], None] | None) -> None:
        self.connection.on_disconnect = fn

    @property
    def on_reconnect(self) -> Callable[[DbConnection], None] | None:
        return self.connection.on_reconnect

    @on_reconnect.setter
    def on_reconnect(self, fn: Callable[[DbConnection], None] | None) -> None:
        self.connection.on_reconnect = fn

    @property
    def on_error(self) -> Callable[[StdbError], None] | None:
        return self.connection.on_error

    @on_error.setter
    def on_error(self, fn: Callable[[StdbError], None] | None) -> None:
        self.connection.on_error = fn

    @property
    def token(self) -> str:
        return self.connection.token

    def call(self, reducer: str, *args: Any) -> ReducerOutcome:
        return self._run(self.connection.call, reducer, *args)

    def query(self, sql: str) -> QueryResult:
        return self._run(self.connection.query, sql)

    def subscribe(self, *queries: str) -> Subscription:
        return self._run(self.connection.subscribe, *queries)

    def unsubscribe(self, sub: Subscription) -> None:
        self._run(self.connection.unsubscribe, sub)

    def publish(self, wasm: bytes) -> dict:
        return self._run(self.connection.publish, wasm)

    def describe(self) -> dict:
        return self._run(self.connection.describe)

    def logs(self, limit: int = 100) -> list[dict]:
        return self._run(self.connection.logs, limit)

    def settings(self, changes: Mapping[str, int | float | None] | None = None) -> dict:
        return self._run(self.connection.settings, changes)  # type: ignore[no-any-return]

    def delete_database(self) -> None:
        self._run(self.connection.delete_database)

    def rows(self, table: str) -> list[tuple]:
        """A copy of the cached rows of ``table`` (read on the client's thread)."""
        return self._run_sync(lambda: self.connection.table(table).rows())

    def on_insert(self, table: str, fn: Callable[[tuple, Event], None]) -> Callable:
        return self._run_sync(self.connection.on_insert, table, fn)

    def on_delete(self, table: str, fn: Callable[[tuple, Event], None]) -> Callable:
        return self._run_sync(self.connection.on_delete, table, fn)

    def on_update(self, table: str, fn: Callable[[tuple, tuple, Event], None]) -> Callable:
        return self._run_sync(self.connection.on_update, table, fn)

    def close(self) -> None:
        """Close the connection and end its thread (a reconnect loop stops at once)."""
        if self._stop is not None and self._token is not None and self._conn is not None:
            try:
                trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
            except trio.RunFinishedError:
                pass
        self._thread.join(timeout=10)

    def __enter__(self) -> BlockingConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_blocking(url: str, database: str, **kw: Any) -> BlockingConnection:
    """:func:`stdb.client.connect` for code without an event loop (same keyword arguments)."""
    return BlockingConnection(url, database, **kw)
