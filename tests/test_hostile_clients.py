"""Hostile clients against a real server (port 0): floods of subscriptions, thousands of
connects and disconnects, queries on private tables, truncated CBOR — each gets a clear error,
nothing is left behind, and the server's memory stays bounded."""

from __future__ import annotations

import pathlib

import trio

from stdb import build_module
from stdb.server.connection import QueueLimits
from tests.test_server import ROOT, TIMEOUT, chat_wasm, connect, running  # noqa: F401 (fixture)


def rss_bytes() -> int:
    pages = int(pathlib.Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096


async def test_subscription_flood_is_capped_and_freed(tmp_path, chat_wasm):  # noqa: F811
    with trio.fail_after(TIMEOUT * 3):
        async with running(tmp_path, queue=QueueLimits(queries=1000)) as (server, port):
            async with connect(port) as owner:
                await owner.request("Publish", wasm=chat_wasm)
                async with connect(port) as flood:
                    for batch in range(4):            # 4 x 250 distinct queries: exactly the cap
                        qs = [f"SELECT * FROM message WHERE id = {batch * 250 + i}" for i in range(250)]
                        a = await flood.request("Subscribe", queries=qs)
                        assert a["type"] == "SubscribeApplied" and len(a["queries"]) == 250
                    over = await flood.request("Subscribe", queries=["SELECT * FROM message WHERE id = 5000"])
                    assert over["type"] == "Error" and "too many subscribed queries" in over["detail"]
                    db = server.databases["chat"].db
                    assert len(db.queries.subs) == 1000
                    up = await owner.request("CallReducer", reducer="send_message", args=["after the flood"])
                    assert up["status"] == "committed"
                with trio.fail_after(5):
                    while len(db.queries.subs):           # the flooder left: every query freed
                        await trio.sleep(0.01)


async def test_thousands_of_connects_leave_nothing_behind(tmp_path, chat_wasm):  # noqa: F811
    with trio.fail_after(TIMEOUT * 6):
        async with running(tmp_path) as (server, port):
            async with connect(port) as owner:
                await owner.request("Publish", wasm=chat_wasm)
                h = server.databases["chat"]

                async def churn(n: int) -> None:
                    for _ in range(n):
                        async with connect(port) as c:
                            await c.request("Subscribe", queries=["SELECT * FROM user"])

                await churn(100)                           # warm up allocator, caches, LMDB pages
                before = rss_bytes()
                async with trio.open_nursery() as n:
                    for _ in range(10):
                        n.start_soon(churn, 100)
                with trio.fail_after(10):
                    while len(h.connections) > 1 or len(server.connections) > 1:
                        await trio.sleep(0.01)
                grown = rss_bytes() - before
                assert len(h.db.queries.subs) == 0 and len(h.log_followers) == 0
                # each of the 1,100 connections (new identities) left an offline user row
                # (client_connected, then client_disconnected) and nothing else
                r = await owner.request("OneOffQuery",
                                        sql="SELECT online, COUNT(*) FROM user GROUP BY online")
                assert r["rows"] == [[False, 1100]]
                assert grown < 64 << 20, f"RSS grew by {grown:,} bytes over 1,000 connections"


async def test_private_tables_and_broken_frames(tmp_path):
    out = str(tmp_path / "n.wasm")
    wasm = pathlib.Path(build_module(str(ROOT / "tests/modules/notes.c"), out)).read_bytes()
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (_, port):
            async with connect(port, name="notes") as owner:
                assert (await owner.request("Publish", wasm=wasm))["type"] == "PublishResult"
                async with connect(port, name="notes") as other:
                    mod = await other.request("Describe")
                    private = [t["name"] for t in mod["module"]["tables"] if not t["public"]]
                    assert private, "tests/modules/notes.c should have a private table"
                    for sql in (f"SELECT * FROM {private[0]}",):
                        e = await other.request("OneOffQuery", sql=sql)
                        assert e["type"] == "Error" and "private" in e["detail"]
                        e = await other.request("Subscribe", queries=[sql])
                        assert e["type"] == "Error" and "private" in e["detail"]
                    good = encode_call(7)
                    for cut in (1, len(good) // 2, len(good) - 1):     # truncated CBOR
                        await other.ws.send_message(good[:cut])
                        e = await other.recv()
                        assert e["type"] == "Error" and e["code"] == "protocol_error"
                    r = await other.request("OneOffQuery", sql="SELECT COUNT(*) FROM note")
                    assert r["type"] == "OneOffQueryResult"          # still served after all that


def encode_call(rid: int) -> bytes:
    from stdb.protocol import encode
    return encode("CallReducer", request_id=rid, reducer="x", args=[1, "two", [3]])
