"""The Python client: one websocket connection to one database (docs/client.md).

    async with stdb.connect("ws://127.0.0.1:3000", "chat") as conn:
        conn.on_insert("message", lambda row, event: print(row))
        await conn.subscribe("SELECT * FROM message")
        outcome = await conn.call("send_message", "hello")

A reader task receives every server message: answers wake the request that asked (matched by
request id), transaction updates go into the client cache and fire the callbacks (on the trio
thread, before the caller's ``call`` returns).  When the socket drops, a reconnect task opens a
new one with the same token, subscribes every subscription again into a fresh cache and hands
the differences to the callbacks (docs/client.md, "Reconnecting").  The client needs only the
protocol and the error classes, never the engine.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from stdb.client.cache import ClientCache, Event, TableCache, as_row
from stdb.client.credentials import load_token, save_token
from stdb.client.reconnect import FATAL_CLOSE, Reconnect, reconnect_options
from stdb.client.socket import (
    close_code,
    connect_error,
    database_url,
    only_error,
    open_websocket,
    reason_text,
)
from stdb.errors import AuthError, ConnectionLost, ProtocolError, ReducerError, StdbError, error_from_dict
from stdb.protocol import MAX_MESSAGE_BYTES, check_max_message, decode_server, encode, join_parts

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
    """Queries subscribed together.  ``query_ids`` change when the client subscribes again by
    itself (after a reconnect, or when the server asks to after a module update); ``active``
    turns False on unsubscribing, or when the server refuses the queries on subscribing again."""

    queries: tuple[str, ...]
    query_ids: list[int] = field(default_factory=list)
    active: bool = True
    _conn: DbConnection | None = field(default=None, repr=False)

    async def unsubscribe(self) -> None:
        if self.active and self._conn is not None:
            await self._conn.unsubscribe(self)


class _Pending:
    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: dict | None = None
        self.error: StdbError | None = None


@dataclass(frozen=True)
class _Endpoint:
    """Where and how a connection's sockets are opened (the first and every reconnect)."""

    url: str                    # as given to connect
    target: str                 # the database's URL, with confirmed / max_message
    max_message: int
    connect_timeout: float
    credentials: str | None     # where the server's token is saved


class DbConnection:
    """Use :func:`connect`.  Attributes: ``identity`` (32 bytes), ``token``, ``connection_id``,
    ``database``, ``cache`` (the ClientCache), ``module`` (the DescribeResult's module, once
    known), ``state`` (``connected``, ``reconnecting`` or ``closed``), ``close_reason`` (why
    the socket ended; None while connected).

    Callbacks, set as attributes, run on the trio thread: ``on_disconnect(reason)`` when a
    connected socket drops, ``on_reconnect(conn)`` once it is back with the cache caught up,
    ``on_error(error)`` for errors that answer no request (a module update's ``resubscribe``
    notice, a subscription the server refuses on subscribing again, a refused token or a
    fatal close that ends reconnecting)."""

    def __init__(self, hello: dict, nursery: trio.Nursery, endpoint: _Endpoint | None = None,
                 reconnect: Reconnect | None = None) -> None:
        self.identity: bytes = hello["identity"]
        self.token: str = hello["token"]
        self.connection_id: bytes = hello["connection_id"]
        self.database: str = hello["database"]
        self.cache = ClientCache()
        self.module: dict | None = None
        self.state = "connected"
        self.close_reason: str | None = None
        self.on_error: Callable[[StdbError], None] | None = None
        self.on_disconnect: Callable[[str], None] | None = None
        self.on_reconnect: Callable[[DbConnection], None] | None = None
        self._ws: WebSocketConnection | None = None
        self._nursery = nursery
        self._endpoint = endpoint
        self._reconnect = reconnect
        self._target = self.cache       # the cache answers go into (a staging one while resubscribing)
        self._resyncing: trio.Event | None = None    # set once a module update's resubscribing is done
        self._looping = False
        self._loop_scope: trio.CancelScope | None = None
        self._stale = False             # a module update came while subscribing again after a drop
        self._next_rid = 0
        self._pending: dict[int, _Pending] = {}
        self._streams: dict[int, trio.MemorySendChannel] = {}
        self._parts: dict[tuple[str, int | None, int | None], list[dict]] = {}   # of large results
        self._subs: list[Subscription] = []

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

    def _emit(self, fn: Callable[..., None] | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:
            log.exception("stdb client: the %s callback failed", getattr(fn, "__name__", "connection"))

    def _emit_error(self, e: StdbError) -> None:
        if self.on_error is not None:
            self._emit(self.on_error, e)
        else:
            log.warning("stdb client: %s", e)

    # ---- requests

    async def _request(self, type_: str, stream: trio.MemorySendChannel | None = None, *,
                       internal: bool = False, **fields: Any) -> dict:
        """Send a request and wait for its answer; ``stream`` receives the LogsResult messages
        that follow the answer (``Logs`` with ``follow``).  Not connected: ConnectionLost at
        once (nothing is queued).  ``internal``: the client's own, while (re)subscribing."""
        while not internal and self._resyncing is not None:
            await self._resyncing.wait()            # after a module update: once the cache is whole
        ws = self._ws
        if ws is None or (self.state != "connected" and not internal):
            raise self._not_open()
        self._next_rid += 1
        rid = self._next_rid
        p = self._pending[rid] = _Pending()
        if stream is not None:
            self._streams[rid] = stream
        try:
            await ws.send_message(encode(type_, request_id=rid, **fields))
        except ConnectionClosed as e:
            self._pending.pop(rid, None)
            self._streams.pop(rid, None)
            raise ConnectionLost(f"the connection ended: {self.close_reason or reason_text(e)}") from None
        await p.done.wait()
        if p.error is not None:
            self._streams.pop(rid, None)
            raise p.error
        assert p.result is not None
        return p.result

    def _not_open(self) -> ConnectionLost:
        if self.state == "reconnecting":
            return ConnectionLost(f"the connection is not open (reconnecting: {self.close_reason})",
                                  hint="wait for on_reconnect and send it again")
        return ConnectionLost(f"the connection is closed: {self.close_reason or 'closed by the client'}")

    async def call(self, reducer: str, *args: Any) -> ReducerOutcome:
        """Run a reducer; its outcome once it committed (the cache already shows its changes)
        or failed.  A request the server could not run at all (no such reducer, arguments of
        the wrong types) raises its error; so does a call while disconnected (ConnectionLost,
        at once: it is not sent later)."""
        m = await self._request("CallReducer", reducer=reducer, args=list(args))
        return ReducerOutcome(m["reducer"], m["status"], m["message"], m["offset"], m["timestamp"])

    async def query(self, sql: str) -> QueryResult:
        """A one-off query (or DML, owner only: one row with ``changed_rows``)."""
        m = await self._request("OneOffQuery", sql=sql)
        return QueryResult(list(m["columns"]), [as_row(r) for r in m["rows"]], list(m["plan"]),
                           list(m.get("types") or ()))

    async def subscribe(self, *queries: str) -> Subscription:
        """Subscribe to queries (all or none); their rows are in the cache when this returns,
        each announced to the insert callbacks.  While disconnected: ConnectionLost at once."""
        if self.module is None:
            await self._load_module()
        sub = Subscription(tuple(queries), _conn=self)
        await self._subscribe(sub)
        self._subs.append(sub)
        return sub

    async def _subscribe(self, sub: Subscription, internal: bool = False) -> None:
        m = await self._request("Subscribe", queries=list(sub.queries), internal=internal)  # rows: _dispatch
        sub.query_ids = [q["query_id"] for q in m["queries"]]

    async def unsubscribe(self, sub: Subscription) -> None:
        """Drop a subscription (its rows leave the cache, each announced to the delete
        callbacks).  While disconnected it is dropped here only: the server forgot it."""
        if not sub.active:
            return
        sub.active = False
        if sub in self._subs:
            self._subs.remove(sub)
        ids = [q for q in sub.query_ids if self.cache.release(q)]     # queries no other sub holds
        if not ids:
            return
        if self.state == "connected":
            await self._request("Unsubscribe", query_ids=ids)     # rows dropped by _dispatch
        else:
            for q in ids:
                self.cache.remove_query(q)

    async def publish(self, wasm: bytes) -> dict:
        """Publish a module (the first publisher of a database owns it)."""
        m = await self._request("Publish", wasm=bytes(wasm))
        self.module = None
        return {k: m[k] for k in ("created_tables", "altered_tables", "reducers", "unsubscribed")}

    async def describe(self) -> dict:
        """The published module: tables (columns, keys, indexes) and reducers (parameters)."""
        return await self._describe()

    async def _describe(self, internal: bool = False) -> dict:
        m = await self._request("Describe", internal=internal)
        self.module = m["module"]
        self._target.set_keys({t["name"]: tuple(i for i, c in enumerate(t["columns"])
                                                if c["name"] in t["primary_key"])
                               for t in m["module"]["tables"]})
        return m["module"]

    async def _load_module(self, internal: bool = False) -> None:
        try:
            await self._describe(internal)
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
        the connection ends (the iteration ends too: following is not resumed after a
        reconnect); after the block they are dropped."""
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

    # ---- the socket

    async def _open(self) -> None:
        """Open a socket with this connection's token (the reader then runs in the
        connection's nursery); the error saying why it could not be opened."""
        assert self._endpoint is not None
        try:
            await self._nursery.start(self._socket, self._endpoint, self.token)
        except BaseException as e:                 # noqa: B902 - said as a client error, or re-raised
            one = only_error(e)
            if not isinstance(one, Exception) or isinstance(one, BaseExceptionGroup):
                raise                               # a cancellation, or several errors at once
            raise connect_error(self._endpoint.url, one) from None

    async def _socket(self, endpoint: _Endpoint, token: str | None,
                      task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """One socket's life: open it (its own nursery, so that a refused handshake fails only
        this), take the IdentityToken, then read until it ends."""
        async with trio.open_nursery() as n:
            with trio.fail_after(endpoint.connect_timeout):
                ws = await open_websocket(n, endpoint.target, token, endpoint.max_message)
                hello = decode_server(await ws.get_message())
            if hello["type"] != "IdentityToken":
                raise ProtocolError(f"expected IdentityToken first, got {hello['type']}")
            if endpoint.credentials is not None and hello["token"] != token:
                save_token(endpoint.credentials, endpoint.url, hello["token"])
            self.identity, self.token = hello["identity"], hello["token"]
            self.connection_id, self.database = hello["connection_id"], hello["database"]
            self._ws = ws
            self._parts.clear()
            task_status.started()
            try:
                await self._reader(ws)
            finally:
                n.cancel_scope.cancel()

    async def _reader(self, ws: WebSocketConnection) -> None:
        reason, code = "closed", None
        try:
            while True:
                data = await ws.get_message()
                try:
                    msg = decode_server(data)
                except ProtocolError as e:
                    log.error("stdb client: a bad message from the server: %s", e)
                    continue
                whole = self._whole(msg)
                if whole is not None:
                    self._dispatch(whole)
        except ConnectionClosed as e:
            reason, code = reason_text(e), close_code(e)
        finally:
            self._lost(ws, reason, code)

    def _lost(self, ws: WebSocketConnection, reason: str, code: int | None) -> None:
        """The socket ``ws`` ended: fail what waits on it; reconnect unless that is off, the
        close was meant for good, or the client closed the connection."""
        if ws is not self._ws:
            return
        self._ws = None
        self._parts.clear()
        if self.state == "closed":
            self.close_reason = self.close_reason or reason
            self._fail_waiting()
            return
        was = self.state
        retry = self._reconnect is not None and code not in FATAL_CLOSE
        self.close_reason = reason
        self.state = "reconnecting" if retry else "closed"
        self._fail_waiting()
        if was == "connected":
            self._emit(self.on_disconnect, reason)
        elif not retry:                                 # a fatal close while coming back
            self._emit_error(ConnectionLost(f"reconnecting ended: {reason}"))
        if retry and not self._looping:
            self._looping = True
            self._nursery.start_soon(self._reconnect_loop)

    def _fail_waiting(self) -> None:
        err = ConnectionLost(f"the connection ended: {self.close_reason or 'closed'}")
        pending, self._pending = self._pending, {}
        for p in pending.values():
            p.error = err
            p.done.set()
        streams, self._streams = self._streams, {}
        for s in streams.values():
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
        cache = self._target
        # the cache changes here, in the order the server sent things, so that no update of a
        # new query is missed and none of a dropped one applied
        if t == "SubscribeApplied":
            for q in msg["queries"]:
                cache.add_query(q["query_id"], q["table"], q["rows"])
        elif t == "UnsubscribeApplied":
            for q in msg["query_ids"]:
                cache.remove_query(q)
        elif t == "TransactionUpdate":
            ev = Event(msg["reducer"], msg["caller"], msg["status"], msg["offset"], msg["timestamp"], rid)
            if msg["updates"]:
                cache.apply(msg["updates"], ev)
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
                    if self.state != "connected":
                        self._stale = True          # the reconnect loop subscribes again
                    elif self._resyncing is None:
                        self._resyncing = trio.Event()
                        self._nursery.start_soon(self._resubscribe, self._resyncing)
                self._emit_error(err)
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

    # ---- subscribing again

    async def _resync(self) -> None:
        """Subscribe every subscription again into a staging cache (the module's description
        first), then hand the differences from the cache to the callbacks."""
        staging = ClientCache()
        self._target = staging
        try:
            await self._load_module(internal=True)
            for sub in list(self._subs):
                try:
                    await self._subscribe(sub, internal=True)
                except StdbError as e:
                    if isinstance(e, ConnectionLost):
                        raise
                    # the server refuses it now (e.g. its table left the module): drop it, say why
                    sub.active = False
                    if sub in self._subs:
                        self._subs.remove(sub)
                    self._emit_error(e)
                    continue
                if not sub.active:      # unsubscribed meanwhile
                    ids = [q for q in sub.query_ids if staging.release(q)]
                    for q in ids:
                        staging.remove_query(q)
                    if ids:
                        await self._request("Unsubscribe", query_ids=ids, internal=True)
        finally:
            if self._target is staging:
                self._target = self.cache
        if self._ws is None:
            raise ConnectionLost(f"the connection ended while subscribing again: {self.close_reason}")
        self.cache.adopt(staging)

    async def _resubscribe(self, done: trio.Event) -> None:
        """The module was updated and every subscription ended: subscribe again (requests
        made meanwhile wait until the cache is whole again)."""
        try:
            self.module = None
            await self._resync()
        except StdbError as e:
            if self.state == "connected":
                log.error("stdb client: resubscribing after a module update failed: %s", e)
                self._emit_error(e)
        finally:
            self._resyncing = None
            done.set()

    async def _reconnect_loop(self) -> None:
        """Open a socket again, with back-off and jitter, until it is back, the client closes
        the connection (which cancels this), the token is refused, or ``max_attempts`` have
        failed."""
        try:
            with trio.CancelScope() as self._loop_scope:
                await self._come_back()
        finally:
            self._looping = False
            self._loop_scope = None

    async def _come_back(self) -> None:
        r, endpoint = self._reconnect, self._endpoint
        assert r is not None and endpoint is not None
        attempt = 0
        while self.state == "reconnecting":
            if r.max_attempts is not None and attempt >= r.max_attempts:
                self.state = "closed"
                self._emit_error(ConnectionLost(f"gave up reconnecting to {endpoint.url} after {attempt} "
                                                f"attempts (the connection ended: {self.close_reason})"))
                return
            delay = r.delay(attempt, random.random())
            attempt += 1
            self._emit(r.on_retry, attempt, delay)
            await trio.sleep(delay)
            if self.state != "reconnecting":
                return
            try:
                await self._open()
                self._stale = True
                while self._stale:          # again if a module update came meanwhile
                    self._stale = False
                    await self._resync()
            except AuthError as e:          # e.g. the server's data were wiped
                self.state = "closed"
                self.close_reason = e.detail
                self._emit_error(e)
                return
            except StdbError as e:
                ws, self._ws = self._ws, None
                if ws is not None:          # subscribing again failed on an open socket: anew
                    self._emit_error(e)
                    with trio.move_on_after(2):
                        await ws.aclose()
                continue
            if self.state == "reconnecting" and self._ws is not None:
                self.state = "connected"
                self.close_reason = None
                self._emit(self.on_reconnect, self)
                return

    async def aclose(self) -> None:
        """Close the connection (reconnecting stops at once); waiting requests raise
        ConnectionLost."""
        if self._loop_scope is not None:
            self._loop_scope.cancel()
        if self.state == "closed" and self._ws is None:
            return
        self.state = "closed"
        self.close_reason = self.close_reason or "closed by the client"
        ws = self._ws
        if ws is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await ws.aclose()
        self._fail_waiting()


@asynccontextmanager
async def connect(url: str, database: str, *, token: str | None = None, credentials: str | None = None,
                  confirmed: bool = False, max_message: int = MAX_MESSAGE_BYTES,
                  connect_timeout: float = 30,
                  reconnect: bool | Reconnect = True) -> AsyncIterator[DbConnection]:
    """Connect to ``database`` on the server at ``url`` (``ws://host:port``).

    Without ``token`` the server gives a new identity.  ``credentials``: a JSON file of tokens
    per server; the token for ``url`` is read from it when none is given, and the token the
    server sends is saved to it, so the identity stays the same on the next connect.
    ``confirmed``: updates arrive only once durable.  ``max_message``: the largest message this
    client reads (64 KiB to 16 MiB); the server sends larger results in parts, which the client
    puts back together.  ``reconnect`` (on by default: a connection that lives long should
    outlast a server restart; short uses such as the CLI's pass False): when the socket drops,
    open it again with back-off (a :class:`Reconnect` tunes it) and subscribe again,
    docs/client.md "Reconnecting".  The module's description is fetched at once (primary keys
    tell the cache which delete + insert pairs are updates)."""
    max_message = check_max_message(max_message)
    options = reconnect_options(reconnect)
    if token is None and credentials is not None:
        token = load_token(credentials, url)
    endpoint = _Endpoint(url, database_url(url, database, confirmed, max_message), max_message,
                         connect_timeout, credentials)
    opened = False
    try:
        async with trio.open_nursery() as n:
            conn = DbConnection({"identity": b"", "token": token, "connection_id": b"", "database": database},
                                n, endpoint, options)
            await conn._open()
            opened = True
            try:
                await conn._load_module()
                yield conn
            finally:
                await conn.aclose()
                n.cancel_scope.cancel()
    except BaseExceptionGroup as eg:      # one error (the usual case) is raised as itself
        e = only_error(eg)
        if isinstance(e, BaseExceptionGroup):
            raise
        raise (e if opened else connect_error(url, e)) from None
    except BaseException as e:
        if opened:
            raise
        raise connect_error(url, e) from None


def default_credentials() -> str:
    """``$STDB_CONFIG_DIR/credentials.json`` (default ``~/.config/stdb``)."""
    base = os.environ.get("STDB_CONFIG_DIR") or os.path.join(
        os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config"), "stdb")
    return os.path.join(base, "credentials.json")
