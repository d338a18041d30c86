"""The client's websocket: the database URL, opening a socket, and how failures to connect and
closes are said (docs/client.md, "Connecting")."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    connect_websocket_url,
)

from stdb.errors import AuthError, ConnectionLost, StdbError
from stdb.protocol import MAX_MESSAGE_BYTES, SUBPROTOCOL

__all__ = ["database_url", "open_websocket", "reason_text", "close_code", "connect_error", "only_error"]


def database_url(url: str, database: str, confirmed: bool, max_message: int = MAX_MESSAGE_BYTES) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise StdbError(f"server URL must start with ws:// or wss://, got {url!r}", code="bad_url")
    base = url.rstrip("/")
    if "/v1/database/" not in parts.path:
        base += "/v1/database/" + quote(database, safe="")
    query = (["confirmed=true"] if confirmed else []) + \
        ([f"max_message={max_message}"] if max_message != MAX_MESSAGE_BYTES else [])
    return base + ("?" + "&".join(query) if query else "")


async def open_websocket(nursery: trio.Nursery, target: str, token: str | None,
                         max_message: int) -> WebSocketConnection:
    """A websocket to ``target`` whose background task runs in ``nursery`` (a refusal of the
    handshake is raised there, so that nursery must be one the caller can let fail)."""
    headers = [(b"Authorization", f"Bearer {token}".encode())] if token else []
    return await connect_websocket_url(nursery, target, subprotocols=[SUBPROTOCOL], extra_headers=headers,
                                       max_message_size=max_message, message_queue_size=64)


def reason_text(e: ConnectionClosed) -> str:
    r = e.reason
    if r is None:
        return "closed"
    return f"{r.code} {r.reason}" if r.reason else f"code {r.code} ({r.name})"


def close_code(e: ConnectionClosed) -> int | None:
    return e.reason.code if e.reason is not None else None


def only_error(e: BaseException) -> BaseException:
    """``e``, or the one exception a group of one (maybe nested) holds."""
    while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    return e


def connect_error(url: str, e: BaseException) -> BaseException:
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
