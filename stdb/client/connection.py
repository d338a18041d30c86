"""The Python client: one websocket connection to one database (docs/client.md).

    async with stdb.connect("ws://127.0.0.1:3000", "chat") as conn:
        conn.on_insert("message", lambda row, event: print(row))
        await conn.subscribe("SELECT * FROM message")
        outcome = await conn.call("send_message", "hello")

A reader task receives every server message: answers wake the request that asked (matched by
request id), transaction updates go into the client cache and fire the callbacks (on the trio
thread, before the caller's ``call`` returns).  The client needs only the protocol and the
error classes, never the engine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError, connect_websocket_url

from stdb.client.cache import ClientCache, Event, TableCache, as_row
from stdb.client.credentials import load_token, save_token
from stdb.errors import AuthError, ConnectionLost, ProtocolError, ReducerError, StdbError, error_from_dict
from stdb.protocol import MAX_MESSAGE_BYTES, SUBPROTOCOL, check_max_message, decode_server, encode, join_parts

__all__ = ["connect", "DbConnection", "ReducerOutcome", "QueryResult", "Subscription", "default_credentials"]

log = logging.getLogger("stdb.client")


@dataclass(frozen=True)
class ReducerOutcome:
    """The caller's own TransactionUpdate: ``status`` is ``committed``, ``failed``, ``trap``,
    ``out_of_fuel`` or ``timeout``; ``message`` says why a call failed."""

    reducer: str
    status: str
    message: str | None
    offset: int | None
    timestamp: int

    @property
    def ok(self) -> bool:
        return self.status == "committed"

    def raise_for_status(self) -> ReducerOutcome:
        if not self.ok:
            kind = {"failed": "error"}.get(self.status, self.status)
            raise ReducerError(f"reducer '{self.reducer}' {self.status}: {self.message}",
                               reducer=self.reducer, kind=kind, message=self.message or "")
        return self


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple]
    plan: list[str]
    types: list[str] = field(default_factory=list)      # each column's type name (older servers: none)


@dataclass
class Subscription:
    """Queries subscribed together.  ``query_ids`` change if the server asks to resubscribe
    (after a module update; the client does it by itself)."""

    queries: tuple[str, ...]
    query_ids: list[int] = field(default_factory=list)
    active: bool = True
    _conn: DbConnection | None = field(default=None, repr=False)

    async def unsubscribe(self) -> None:
        if self.active and self._conn is not None:
            await self._conn.unsubscribe(self)


def _reason_text(e: ConnectionClosed) -> str:
    r = e.reason
    if r is None:
        return "closed"
    return f"{r.code} {r.reason}" if r.reason else f"code {r.code} ({r.name})"


class _Pending:
    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: dict | None = None
        self.error: StdbError | None = None


def _database_url(url: str, database: str, confirmed: bool, max_message: int = MAX_MESSAGE_BYTES) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise StdbError(f"server URL must start with ws:// or wss://, got {url!r}", code="bad_url")
    base = url.rstrip("/")
    if "/v1/database/" not in parts.path:
        base += "/v1/database/" + quote(database, safe="")
    query = (["confirmed=true"] if confirmed else []) + \
        ([f"max_message={max_message}"] if max_message != MAX_MESSAGE_BYTES else [])
    return base + ("?" + "&".join(query) if query else "")


class DbConnection:
    """Use :func:`connect`.  Attributes: ``identity`` (32 bytes), ``token``, ``connection_id``,
    ``database``, ``cache`` (the ClientCache), ``module`` (the DescribeResult's module, once
    known), ``close_reason``."""

    def __init__(self, ws: Any, hello: dict, nursery: trio.Nursery) -> None:
        self._ws = ws
        self.identity: bytes = hello["identity"]
        self.token: str = hello["token"]
        self.connection_id: bytes = hello["connection_id"]
        self.database: str = hello["database"]
        self.cache = ClientCache()
        self.module: dict | None = None
        self.close_reason: str | None = None
        self.on_error: Callable[[StdbError], None] | None = None   # errors not answering a request
        self._nursery = nursery
        self._next_rid = 0
        self._pending: dict[int, _Pending] = {}
        self._streams: dict[int, trio.MemorySendChannel] = {}
        self._parts: dict[tuple[str, int | None, int | None], list[dict]] = {}   # of large results
        self._subs: list[Subscription] = []
        self._closed = False

    # ---- cache access and callbacks

    def table(self, name: str) -> TableCache:
        """The cached rows of ``name`` (empty until a subscription selects some)."""
        return self.cache.table(name)

    def on_insert(self, table: str, fn: Callable[[tuple, Event], None]) -> Callable:
        return self.cache.on("insert", table, fn)

    def on_delete(self, table: str, fn: Callable[[tuple, Event], None]) -> Callable:
        return self.cache.on("delete", table, fn)

    def on_update(self, table: str, fn: Callable[[tuple, tuple, Event], None]) -> Callable:
        """``fn(old, new, event)``: a row replaced by one with the same primary key."""
        return self.cache.on("update", table, fn)

    # ---- requests

    async def _request(self, type_: str, stream: trio.MemorySendChannel | None = None, **fields: Any) -> dict:
        """Send a request and wait for its answer; ``stream`` receives the LogsResult messages
        that follow the answer (``Logs`` with ``follow``)."""
        if self._closed:
            raise ConnectionLost(f"the connection is closed: {self.close_reason or 'closed by the client'}")
        self._next_rid += 1
        rid = self._next_rid
        p = self._pending[rid] = _Pending()
        if stream is not None:
            self._streams[rid] = stream
        try:
            await self._ws.send_message(encode(type_, request_id=rid, **fields))
        except ConnectionClosed as e:
            self._pending.pop(rid, None)
            self._streams.pop(rid, None)
            self.close_reason = self.close_reason or _reason_text(e)
            raise ConnectionLost(f"the connection is closed: {self.close_reason}") from None
        await p.done.wait()
        if p.error is not None:
            self._streams.pop(rid, None)
            raise p.error
        assert p.result is not None
        return p.result

    async def call(self, reducer: str, *args: Any) -> ReducerOutcome:
        """Run a reducer; its outcome once it committed (the cache already shows its changes)
        or failed.  A request the server could not run at all (no such reducer, arguments of
        the wrong types) raises its error."""
        m = await self._request("CallReducer", reducer=reducer, args=list(args))
        return ReducerOutcome(m["reducer"], m["status"], m["message"], m["offset"], m["timestamp"])

    async def query(self, sql: str) -> QueryResult:
        """A one-off query (or DML, owner only: one row with ``changed_rows``)."""
        m = await self._request("OneOffQuery", sql=sql)
        return QueryResult(list(m["columns"]), [as_row(r) for r in m["rows"]], list(m["plan"]),
                           list(m.get("types") or ()))

    async def subscribe(self, *queries: str) -> Subscription:
        """Subscribe to queries (all or none); their rows are in the cache when this returns,
        each announced to the insert callbacks."""
        if self.module is None:
            await self._load_module()
        sub = Subscription(tuple(queries), _conn=self)
        await self._subscribe(sub)
        self._subs.append(sub)
        return sub

    async def _subscribe(self, sub: Subscription) -> None:
        m = await self._request("Subscribe", queries=list(sub.queries))   # rows cached by _dispatch
        sub.query_ids = [q["query_id"] for q in m["queries"]]

    async def unsubscribe(self, sub: Subscription) -> None:
        if not sub.active:
            return
        sub.active = False
        if sub in self._subs:
            self._subs.remove(sub)
        ids = [q for q in sub.query_ids if self.cache.release(q)]     # queries no other sub holds
        if ids:
            await self._request("Unsubscribe", query_ids=ids)     # rows dropped by _dispatch

    async def publish(self, wasm: bytes) -> dict:
        """Publish a module (the first publisher of a database owns it)."""
        m = await self._request("Publish", wasm=bytes(wasm))
        self.module = None
        return {k: m[k] for k in ("created_tables", "altered_tables", "reducers", "unsubscribed")}

    async def describe(self) -> dict:
        """The published module: tables (columns, keys, indexes) and reducers (parameters)."""
        m = await self._request("Describe")
        self.module = m["module"]
        self.cache.set_keys({t["name"]: tuple(i for i, c in enumerate(t["columns"])
                                              if c["name"] in t["primary_key"])
                             for t in m["module"]["tables"]})
        return m["module"]

    async def _load_module(self) -> None:
        try:
            await self.describe()
        except StdbError as e:
            if e.code != "no_such_database":
                raise

    async def logs(self, limit: int = 100) -> list[dict]:
        """The newest module log records (owner only)."""
        m = await self._request("Logs", limit=limit, follow=False)
        return list(m["entries"])

    @asynccontextmanager
    async def follow_logs(self, limit: int = 10) -> AsyncIterator[trio.MemoryReceiveChannel]:
        """``async with conn.follow_logs() as entries: async for e in entries: …`` — the last
        ``limit`` records, then each new one (owner only).  The server goes on sending until
        the connection ends; after the block they are dropped."""
        send, recv = trio.open_memory_channel[dict](1024)
        first = await self._request("Logs", stream=send, limit=limit, follow=True)
        rid = first["request_id"]
        try:
            yield recv
        finally:
            self._streams.pop(rid, None)

    async def delete_database(self) -> None:
        """Delete this database and all its data (owner only)."""
        await self._request("DeleteDatabase")

    async def snapshot(self) -> dict:
        """Have the server write a snapshot now (owner only); ``{"offset", "rows", "bytes"}``
        once it is on disk (``offset`` None: nothing committed yet)."""
        m = await self._request("Snapshot")
        return {k: m[k] for k in ("offset", "rows", "bytes")}

    async def settings(self, changes: Mapping[str, int | float | None] | None = None) -> dict:
        """The database's settings (docs/sql.md, "Limits and settings"): every key with its
        value; with ``changes`` (key → value, None for the default), changed first (owner only)."""
        m = await self._request("Settings", set=dict(changes or {}))
        return dict(m["settings"])

    # ---- the reader

    async def _reader(self) -> None:
        try:
            while True:
                data = await self._ws.get_message()
                try:
                    msg = decode_server(data)
                except ProtocolError as e:
                    log.error("stdb client: a bad message from the server: %s", e)
                    continue
                whole = self._whole(msg)
                if whole is not None:
                    self._dispatch(whole)
        except ConnectionClosed as e:
            self.close_reason = self.close_reason or _reason_text(e)
        finally:
            self._closed = True
            err = ConnectionLost(f"the connection ended: {self.close_reason or 'closed'}")
            for p in self._pending.values():
                p.error = err
                p.done.set()
            self._pending.clear()
            for s in self._streams.values():
                s.close()

    def _whole(self, msg: dict) -> dict | None:
        """``msg``; or, when it is a part of a large result (docs/protocol.md, "Large results:
        parts"), None until its last part has come, then the result the parts make up.  A
        result's parts are told apart from other results' by type, request id and offset."""
        more = msg.get("more")
        if more is None:
            return msg
        key = (msg["type"], msg.get("request_id"), msg.get("offset"))
        if more:
            self._parts.setdefault(key, []).append(msg)
            return None
        parts = self._parts.pop(key, None)
        if parts is None:
            return msg
        parts.append(msg)
        return join_parts(parts)

    def _dispatch(self, msg: dict) -> None:
        t = msg["type"]
        rid = msg.get("request_id")
        # the cache changes here, in the order the server sent things, so that no update of a
        # new query is missed and none of a dropped one applied
        if t == "SubscribeApplied":
            for q in msg["queries"]:
                self.cache.add_query(q["query_id"], q["table"], q["rows"])
        elif t == "UnsubscribeApplied":
            for q in msg["query_ids"]:
                self.cache.remove_query(q)
        elif t == "TransactionUpdate":
            ev = Event(msg["reducer"], msg["caller"], msg["status"], msg["offset"], msg["timestamp"], rid)
            if msg["updates"]:
                self.cache.apply(msg["updates"], ev)
        elif t == "LogsResult" and rid in self._streams:
            # the answer's records and every later one, in the order they came
            for e in msg["entries"]:
                try:
                    self._streams[rid].send_nowait(e)
                except trio.WouldBlock:
                    log.warning("stdb client: log records dropped (the reader is behind)")
            if rid not in self._pending:
                return
        elif t == "Error":
            err = error_from_dict(msg)
            if rid is None or rid not in self._pending:
                if err.code == "resubscribe":
                    self._nursery.start_soon(self._resubscribe)
                if self.on_error is not None:
                    self.on_error(err)
                else:
                    log.warning("stdb server error: %s", err)
                return
            p = self._pending.pop(rid)
            p.error = err
            p.done.set()
            return
        if rid is not None:
            waiting = self._pending.pop(rid, None)
            if waiting is not None:
                waiting.result = msg
                waiting.done.set()

    async def _resubscribe(self) -> None:
        """The module was updated and every subscription ended: subscribe again."""
        self.cache.clear()
        self.module = None
        try:
            await self._load_module()
            for sub in list(self._subs):
                await self._subscribe(sub)
        except StdbError as e:
            log.error("stdb client: resubscribing after a module update failed: %s", e)
            if self.on_error is not None:
                self.on_error(e)

    async def aclose(self) -> None:
        self._closed = True
        await self._ws.aclose()


@asynccontextmanager
async def connect(url: str, database: str, *, token: str | None = None, credentials: str | None = None,
                  confirmed: bool = False, max_message: int = MAX_MESSAGE_BYTES,
                  connect_timeout: float = 30) -> AsyncIterator[DbConnection]:
    """Connect to ``database`` on the server at ``url`` (``ws://host:port``).

    Without ``token`` the server gives a new identity.  ``credentials``: a JSON file of tokens
    per server; the token for ``url`` is read from it when none is given, and the token the
    server sends is saved to it, so the identity stays the same on the next connect.
    ``confirmed``: updates arrive only once durable.  ``max_message``: the largest message this
    client reads (64 KiB to 16 MiB); the server sends larger results in parts, which the client
    puts back together.  The module's description is fetched at once (primary keys tell the
    cache which delete + insert pairs are updates)."""
    max_message = check_max_message(max_message)
    if token is None and credentials is not None:
        token = load_token(credentials, url)
    headers = [(b"Authorization", f"Bearer {token}".encode())] if token else []
    target = _database_url(url, database, confirmed, max_message)
    opened = False
    try:
        async with trio.open_nursery() as n:
            with trio.fail_after(connect_timeout):
                ws = await connect_websocket_url(n, target, subprotocols=[SUBPROTOCOL], extra_headers=headers,
                                                 max_message_size=max_message, message_queue_size=64)
                hello = decode_server(await ws.get_message())
            opened = True
            if hello["type"] != "IdentityToken":
                raise ProtocolError(f"expected IdentityToken first, got {hello['type']}")
            if credentials is not None and hello["token"] != token:
                save_token(credentials, url, hello["token"])
            conn = DbConnection(ws, hello, n)
            n.start_soon(conn._reader)
            try:
                await conn._load_module()
                yield conn
            finally:
                conn._closed = True
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await ws.aclose()
                n.cancel_scope.cancel()
    except BaseExceptionGroup as eg:      # one error (the usual case) is raised as itself
        if len(eg.exceptions) != 1:
            raise
        e = eg.exceptions[0]
        raise (e if opened else _connect_error(url, e)) from None
    except BaseException as e:
        if opened:
            raise
        raise _connect_error(url, e) from None


def _connect_error(url: str, e: BaseException) -> BaseException:
    """What a failure to connect is said as."""
    if isinstance(e, ConnectionRejected):
        body = (e.body or b"").decode("utf-8", "replace")
        if e.status_code == 401:
            return AuthError(f"the server refused the token: {body}",
                             hint="connect without a token for a new identity")
        return StdbError(f"the server refused the connection ({e.status_code}): {body}",
                         code="connection_refused")
    if isinstance(e, (HandshakeError, ConnectionClosed, OSError, trio.TooSlowError)):
        return ConnectionLost(f"cannot connect to {url}: {type(e).__name__}: {e}",
                              hint="is `stdb start` running there?")
    return e


def default_credentials() -> str:
    """``$STDB_CONFIG_DIR/credentials.json`` (default ``~/.config/stdb``)."""
    base = os.environ.get("STDB_CONFIG_DIR") or os.path.join(
        os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "stdb")
    return os.path.join(base, "credentials.json")
