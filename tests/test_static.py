"""``Server(static_dir=...)`` / ``stdb start --static DIR``: files over plain HTTP on the
websocket's port (stdb/server/static.py), with the websocket endpoint still working beside."""

from __future__ import annotations

import os

import pytest
import trio

from stdb.server.static import INLINE_BYTES
from tests.test_server import TIMEOUT, chat_wasm, connect, publish_chat, running  # noqa: F401


def make_site(root):
    site = root / "site"
    (site / "js").mkdir(parents=True)
    (site / "index.html").write_text("<h1>arena</h1>")
    (site / "js" / "app.mjs").write_text("export const x = 1;")
    (site / "js" / "index.html").write_text("js index")
    (site / "big.wasm").write_bytes(bytes(range(256)) * (3 * INLINE_BYTES // 256 + 7))
    (site / ".env").write_text("SECRET")
    (site / "a b.txt").write_text("spaced")
    for ext in ("js", "css", "json", "png", "svg", "ico", "map", "bin", "txt", "wasm", "html"):
        (site / f"f.{ext}").write_bytes(b"x")
    (root / "secret.txt").write_text("outside")
    os.symlink(root / "secret.txt", site / "escape.txt")
    os.symlink(root, site / "up")
    os.symlink(site / "js" / "app.mjs", site / "inside.mjs")
    return site


async def http(port, request: bytes):
    """Send a raw request; the whole answer until the server closes: (status, headers, body)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        data = bytearray()
        while chunk := await stream.receive_some(1 << 16):
            data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def get(port, path, method="GET"):
    return http(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode("latin-1"))


async def test_files_types_head_and_index(tmp_path):
    site = make_site(tmp_path)
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path, static_dir=str(site)) as (_, port):
            status, h, body = await get(port, "/")
            assert (status, body) == (200, b"<h1>arena</h1>")
            assert h["content-type"] == "text/html; charset=utf-8" and h["content-length"] == "14"
            assert h["connection"] == "close"
            status, h, body = await get(port, "/js/app.mjs")
            assert (status, body, h["content-type"]) == (200, b"export const x = 1;",
                                                         "text/javascript; charset=utf-8")
            assert (await get(port, "/js/"))[2] == b"js index"
            assert (await get(port, "/js"))[2] == b"js index"
            assert (await get(port, "/a%20b.txt"))[2] == b"spaced"
            assert (await get(port, "/inside.mjs"))[2] == b"export const x = 1;"     # a symlink inside
            assert (await get(port, "/index.html?v=3#x"))[2] == b"<h1>arena</h1>"
            want = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
                    "json": "application/json", "png": "image/png", "svg": "image/svg+xml",
                    "ico": "image/x-icon", "map": "application/json", "bin": "application/octet-stream",
                    "txt": "text/plain; charset=utf-8", "wasm": "application/wasm",
                    "html": "text/html; charset=utf-8"}
            for ext, ctype in want.items():
                status, h, body = await get(port, f"/f.{ext}")
                assert (status, h["content-type"], body) == (200, ctype, b"x"), ext
            big = (site / "big.wasm").read_bytes()
            status, h, body = await get(port, "/big.wasm")          # streamed from a worker thread
            assert status == 200 and h["content-type"] == "application/wasm"
            assert int(h["content-length"]) == len(big) and body == big
            status, h, body = await get(port, "/big.wasm", "HEAD")
            assert (status, body, int(h["content-length"])) == (200, b"", len(big))
            status, h, body = await get(port, "/", "HEAD")
            assert (status, body, h["content-length"]) == (200, b"", "14")
            status, _, body = await http(port, b"GET /f.txt HTTP/1.0\r\n\r\n")
            assert (status, body) == (200, b"x")


async def test_404_405_and_no_way_out_of_the_directory(tmp_path):
    site = make_site(tmp_path)
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path, static_dir=str(site)) as (_, port):
            status, h, body = await get(port, "/nope.js")
            assert status == 404 and b"not found: /nope.js" in body
            assert h["content-type"].startswith("text/plain") and int(h["content-length"]) == len(body)
            status, h, body = await get(port, "/nope.js", "HEAD")
            assert (status, body) == (404, b"")
            for method in ("POST", "PUT", "DELETE", "OPTIONS"):
                status, h, body = await get(port, "/", method)
                assert status == 405 and h["allow"] == "GET, HEAD" and method.encode() in body
            for path in ("/../secret.txt", "/js/../../secret.txt", "/%2e%2e/secret.txt",
                         "/%2E%2E/secret.txt", "/js/%2e%2e/%2e%2e/secret.txt", "/..%2fsecret.txt",
                         "/escape.txt", "/up/secret.txt", "//etc/passwd", "/%2fetc/passwd",
                         "/etc/passwd", "/index.html%00.txt", "/%00", "/.env", "/js/..",
                         "/..%5csecret.txt", "http://x/secret.txt", "*", "/%ff"):
                status, _, body = await get(port, path)
                assert status in (400, 404), (path, status)
                assert b"outside" not in body and b"SECRET" not in body and b"root:" not in body, path


async def test_websocket_works_beside_the_files(tmp_path, chat_wasm):  # noqa: F811
    site = make_site(tmp_path)
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path, static_dir=str(site)) as (_, port):
            owner, cm = await publish_chat(port, chat_wasm)
            try:
                assert (await get(port, "/"))[0] == 200
                r = await owner.request("CallReducer", reducer="send_message", args=["hi"])
                assert r["type"] == "TransactionUpdate" and r["status"] == "committed", r
                q = await owner.request("OneOffQuery", sql="SELECT text FROM message")
                assert q["rows"] == [["hi"]]
                # a plain GET of a websocket path is still refused as before (not a file)
                status, _, body = await get(port, "/v1/database/chat")
                assert status == 426 and b"Upgrade: websocket" in body
            finally:
                await cm.__aexit__(None, None, None)


async def test_without_static_a_plain_get_is_refused_as_before(tmp_path):
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (_, port):
            status, _, body = await get(port, "/")
            assert status == 426 and b"Upgrade: websocket" in body
            status, h, _ = await get(port, "/", "POST")
            assert status == 405 and h["allow"] == "GET"


def test_a_missing_directory_is_refused(tmp_path):
    from stdb.errors import StdbError
    from stdb.server.server import Server
    with pytest.raises(StdbError, match="not a directory"):
        Server(str(tmp_path / "data"), static_dir=str(tmp_path / "nope"))


def test_cli_help_names_static():
    from click.testing import CliRunner

    from stdb.cli.start import start
    out = CliRunner().invoke(start, ["--help"]).output
    assert "--static DIR" in out
