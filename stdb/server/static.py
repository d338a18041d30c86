"""Static files over plain HTTP on the websocket's port (``stdb start --static DIR``).

A request the websocket layer sees is not a websocket handshake (no ``Upgrade: websocket``)
comes here (stdb/server/websocket.py, ``server_handshake``'s ``http``).  Rules:

- GET and HEAD only (anything else: 405 with ``Allow: GET, HEAD``); ``Connection: close`` after
  each answer (no keep-alive).
- ``/`` (or any directory) serves its ``index.html``.
- Nothing outside DIR: the path is percent-decoded once, then a NUL byte, a backslash, a
  ``..`` or ``.`` segment, or a target that is not an origin-form path (``http://...``, ``*``)
  is 400; a segment starting with a dot (``.git``, ``.env``) and anything whose real path
  (symlinks resolved) is outside DIR is 404.
- Content-Type from the extension (``TYPES``; else application/octet-stream), Content-Length
  always.  A file up to ``INLINE_BYTES`` is read on the I/O thread; a larger one is streamed
  in chunks each read in a worker thread (no size cap, and no whole file in memory).
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes, urlsplit

import trio

from stdb.errors import StdbError

__all__ = ["HttpResponse", "StaticFiles", "TYPES"]

INLINE_BYTES = 64 << 10           # files up to this size are read on the I/O thread
CHUNK_BYTES = 256 << 10           # a larger file is sent in chunks of this size

TYPES = {
    ".html": "text/html; charset=utf-8", ".htm": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8", ".json": "application/json",
    ".map": "application/json", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
    ".gif": "image/gif", ".webp": "image/webp", ".svg": "image/svg+xml",
    ".wasm": "application/wasm", ".ico": "image/x-icon", ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2", ".woff": "font/woff",
}


@dataclass
class HttpResponse:
    """An answer to a plain HTTP request: ``body``, or ``length`` bytes from ``chunks`` (then
    ``body`` is empty).  ``head``: send the headers only (a HEAD request)."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: AsyncGenerator[bytes, None] | None = None
    length: int | None = None
    head: bool = False


def _error(status: int, why: str, head: bool, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    return HttpResponse(status, (why + "\n").encode(), headers=headers or [], head=head)


async def _stream(path: str, size: int) -> AsyncGenerator[bytes, None]:
    f = await trio.to_thread.run_sync(open, path, "rb")
    try:
        left = size
        while left > 0:
            data = await trio.to_thread.run_sync(f.read, min(CHUNK_BYTES, left))
            if not data:            # the file shrank meanwhile: the client sees a short body
                return
            left -= len(data)
            yield data
    finally:
        f.close()


class StaticFiles:
    """Serves the files under ``root`` (which must be a directory)."""

    def __init__(self, root: str) -> None:
        if not os.path.isdir(root):
            raise StdbError(f"the static files directory {root!r} is not a directory",
                            hint="--static takes an existing directory", code="bad_static_dir")
        self.root = os.path.realpath(root)

    def resolve(self, target: str) -> tuple[int, str]:
        """The file a request target names: (200, its real path), or (status, why) when it
        names nothing servable."""
        if not target.startswith("/") or target.startswith("//"):
            return 400, "the request target must be a path starting with a single /"
        raw = unquote_to_bytes(urlsplit(target).path)
        if b"\0" in raw or b"\\" in raw:
            return 400, "the path holds a NUL byte or a backslash"
        try:
            path = raw.decode("utf-8")
        except UnicodeDecodeError:
            return 400, "the path is not UTF-8"
        parts = [p for p in path.split("/") if p]
        if any(p in (".", "..") for p in parts):
            return 400, "the path holds a . or .. segment"
        if any(p.startswith(".") for p in parts):
            return 404, f"not found: {path}"
        full = os.path.realpath(os.path.join(self.root, *parts))
        if os.path.isdir(full):
            full = os.path.realpath(os.path.join(full, "index.html"))
        if full != self.root and not full.startswith(self.root + os.sep):
            return 404, f"not found: {path}"
        return 200, full

    async def respond(self, method: str, target: str) -> HttpResponse:
        head = method == "HEAD"
        if method not in ("GET", "HEAD"):
            return _error(405, f"static files answer GET and HEAD, not {method[:20]}", head,
                          [("Allow", "GET, HEAD")])
        status, found = self.resolve(target)
        if status != 200:
            return _error(status, found, head)
        try:
            st = os.stat(found)
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            shown = urlsplit(target).path
            return _error(404, f"not found: {shown}", head)
        ctype = TYPES.get(os.path.splitext(found)[1].lower(), "application/octet-stream")
        if head:
            return HttpResponse(200, content_type=ctype, length=st.st_size, head=True)
        if st.st_size <= INLINE_BYTES:
            try:
                with open(found, "rb") as f:
                    body = f.read(INLINE_BYTES + 1)
            except OSError as e:
                return _error(404 if isinstance(e, FileNotFoundError) else 403,
                              f"cannot read {urlsplit(target).path}: {e.strerror}", head)
            if len(body) <= INLINE_BYTES:
                return HttpResponse(200, body, ctype)
        return HttpResponse(200, content_type=ctype, chunks=_stream(found, st.st_size), length=st.st_size)
