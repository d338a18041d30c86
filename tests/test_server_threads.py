"""One execution thread per database (stdb/server/executor.py): a database whose reducer loops
until its limit delays neither the websocket I/O nor any other database."""

from __future__ import annotations

import pathlib

import trio

from stdb import build_module
from stdb.module.host import Limits
from stdb.protocol import SUBPROTOCOL, decode_server, encode
from tests.test_server import TIMEOUT, chat_wasm, connect, publish_with_messages, running  # noqa: F401

ROOT = pathlib.Path(__file__).resolve().parents[1]


async def test_calls_on_one_database_complete_while_another_loops_to_its_limit(tmp_path, chat_wasm):  # noqa: F811
    hostile = pathlib.Path(build_module(str(ROOT / "tests/modules/hostile.c"),
                                        str(tmp_path / "h.wasm"))).read_bytes()
    # the loop ends at its time limit (1.5 s); the fuel would last far longer
    limits = Limits(fuel=10**13, time=1.5)
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path, limits=limits) as (server, port):
            async with connect(port, name="busy") as a, connect(port, name="chat") as b:
                assert (await a.request("Publish", wasm=hostile))["type"] == "PublishResult"
                assert (await b.request("Publish", wasm=chat_wasm))["type"] == "PublishResult"
                busy = server.databases["busy"].thread
                jobs = busy.jobs
                rid = await a.send("CallReducer", reducer="loop", args=[0])
                while busy.jobs != jobs + 1 or not busy.in_batch:   # until its thread runs the call
                    await trio.sleep(0.001)
                started = trio.current_time()
                for i in range(50):
                    up = await b.request("CallReducer", reducer="send_message", args=[f"meanwhile {i}"])
                    assert up["type"] == "TransactionUpdate" and up["status"] == "committed", up
                b_done = trio.current_time()
                assert busy.in_batch and busy.jobs == jobs + 1, \
                    "the looping call had ended before the other database's calls"
                while True:
                    m = await a.recv()
                    if m.get("request_id") == rid:
                        break
                assert m["type"] == "TransactionUpdate" and m["status"] == "timeout", m
                a_done = trio.current_time()
                assert b_done - started < a_done - started
                r = await b.request("OneOffQuery", sql="SELECT COUNT(*) FROM message")
                assert r["rows"] == [[50]]
                # the loop's row was rolled back; the database serves its next call
                up = await a.request("CallReducer", reducer="add", args=["after the loop"])
                assert up["status"] == "committed"
                r = await a.request("OneOffQuery", sql="SELECT text FROM blob")
                assert r["rows"] == [["after the loop"]]


# ---- the poller (stdb/server/poller.py) reads the sockets: what it hands to a connection's task


def _frame(op: int, payload: bytes, fin: bool = True, rsv: int = 0) -> bytes:
    mask = b"\x0f\xf0\x3c\xc3"
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv | op])
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))


class _Raw:
    """A websocket client on a bare socket: frames written exactly as the test says."""

    def __init__(self, stream):
        self.stream = stream
        self.buf = b""

    async def _need(self, n: int) -> None:
        while len(self.buf) < n:
            data = await self.stream.receive_some(65536)
            assert data, "the server closed the connection"
            self.buf += data

    async def frame(self) -> tuple[int, bytes]:
        await self._need(2)
        op, n, h = self.buf[0] & 0x0F, self.buf[1] & 0x7F, 2
        if n == 126:
            await self._need(4)
            n, h = int.from_bytes(self.buf[2:4], "big"), 4
        elif n == 127:
            await self._need(10)
            n, h = int.from_bytes(self.buf[2:10], "big"), 10
        await self._need(h + n)
        payload, self.buf = self.buf[h:h + n], self.buf[h + n:]
        return op, payload


async def _raw_connect(port: int, name: str) -> _Raw:
    import base64
    import os

    stream = await trio.open_tcp_stream("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    await stream.send_all((f"GET /v1/database/{name} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n").encode())
    raw = _Raw(stream)
    while b"\r\n\r\n" not in raw.buf:
        raw.buf += await stream.receive_some(4096)
    head, raw.buf = raw.buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    op, hello = await raw.frame()
    assert op == 0x2 and decode_server(hello)["type"] == "IdentityToken"
    return raw


async def test_pings_fragments_and_calls_in_one_write_are_answered_in_order(tmp_path, chat_wasm):  # noqa: F811
    """Calls, a ping, a fragmented call (with a ping between its fragments) and more calls sent
    in one write: the poller reads the calls, the connection's task answers the pings, and the
    answers come in the order sent."""
    def call(rid: int) -> bytes:
        return encode("CallReducer", request_id=rid, reducer="send_message", args=[f"m{rid}"])

    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (server, port):
            async with connect(port) as owner:
                assert (await owner.request("Publish", wasm=chat_wasm))["type"] == "PublishResult"
                raw = await _raw_connect(port, "chat")
                third = call(3)
                await raw.stream.send_all(
                    _frame(2, call(1)) + _frame(0x9, b"p1") + _frame(2, call(2))
                    + _frame(2, third[:7], fin=False) + _frame(0x9, b"p2") + _frame(0, third[7:])
                    + _frame(2, call(4)))
                answers, pongs = [], []
                while len(answers) < 4 or len(pongs) < 2:
                    op, payload = await raw.frame()
                    if op == 0xA:
                        pongs.append(payload)
                        continue
                    m = decode_server(payload)
                    if m["type"] == "TransactionUpdate" and m["request_id"] is not None:
                        assert m["status"] == "committed", m
                        answers.append(m["request_id"])
                assert answers == [1, 2, 3, 4] and pongs == [b"p1", b"p2"]
                r = await owner.request("OneOffQuery", sql="SELECT COUNT(*) FROM message")
                assert r["rows"] == [[4]]
                # a protocol error after a call: the close says why (no data frame may follow a
                # close frame, so the call's answer may not come), and the call read before the
                # error is still handled
                await raw.stream.send_all(_frame(2, call(5)) + _frame(2, b"x", rsv=0x40))
                seen = []
                while True:
                    op, payload = await raw.frame()
                    if op == 0x8:
                        assert int.from_bytes(payload[:2], "big") == 1002 and b"reserved bits" in payload
                        break
                    m = decode_server(payload)
                    if m["type"] == "TransactionUpdate" and m["request_id"] is not None:
                        seen.append(m["request_id"])
                assert seen in ([], [5])
                await raw.stream.aclose()
                with trio.fail_after(5):                   # its connection ends, nothing is left
                    while len(server.connections) > 1:
                        await trio.sleep(0.01)
                assert server.poller is not None and server.poller.sockets <= 1
                r = await owner.request("OneOffQuery", sql="SELECT COUNT(*) FROM message")
                assert r["rows"] == [[5]]


# ---- query governance (issue 23): a query is bounded, and runs on its database's thread only

HEAVY_JOIN = "SELECT COUNT(*) FROM message a JOIN message b ON a.sent < b.sent"


async def test_the_owners_heavy_query_runs_beside_other_databases_and_a_clients_is_refused(tmp_path,
                                                                                          chat_wasm):  # noqa: F811
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (server, port):
            async with connect(port, name="big") as owner, connect(port, name="chat") as b:
                assert (await b.request("Publish", wasm=chat_wasm))["type"] == "PublishResult"
                await publish_with_messages(owner, chat_wasm, 2000)
                # the owner's query (4,000,000 pairs: seconds of Python, within the owner's
                # limits) runs on its database's thread while the other database answers calls
                busy = server.databases["big"].thread
                jobs = busy.jobs
                rid = await owner.send("OneOffQuery", sql=HEAVY_JOIN)
                while busy.jobs != jobs + 1 or not busy.in_batch:
                    await trio.sleep(0.001)
                meanwhile = 0               # calls on the other database answered while it runs
                for i in range(20):
                    up = await b.request("CallReducer", reducer="send_message", args=[f"meanwhile {i}"])
                    assert up["type"] == "TransactionUpdate" and up["status"] == "committed", up
                    if not (busy.in_batch and busy.jobs == jobs + 1):
                        break
                    meanwhile += 1
                # (the GIL is shared: each of those calls waits up to a switch interval, 5 ms, at
                # each of its hand-offs; a heavy query slows the other databases, never stops them)
                assert meanwhile >= 3, f"only {meanwhile} calls were answered while the query ran"
                while True:
                    m = await owner.recv()
                    if m.get("request_id") == rid:
                        break
                assert m["type"] == "OneOffQueryResult" and 0 < m["rows"][0][0] <= 1_999_000, m
                # anyone else: refused before it runs, saying which limit and what to do; the
                # connection goes on
                async with connect(port, name="big") as stranger:
                    e = await stranger.request("OneOffQuery", sql=HEAVY_JOIN)
                    assert e["type"] == "Error" and e["code"] == "query_error", e
                    assert "rows_examined = 100,000" in e["detail"] and "2,000 × 2,000 pairs" in e["detail"]
                    assert "LIMIT" in e["hint"]
                    r = await stranger.request("OneOffQuery", sql="SELECT COUNT(*) FROM message")
                    assert r["rows"] == [[2000]]


async def test_a_query_whose_client_leaves_is_cancelled(tmp_path, chat_wasm):  # noqa: F811
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (server, port):
            async with connect(port, name="big") as owner:
                await publish_with_messages(owner, chat_wasm, 2000)
                busy = server.databases["big"].thread
                async with connect(port, name="big", token=owner.token) as leaving:
                    # (its client_connected is a job of the database's thread too: done by the
                    # time this answer comes)
                    assert (await leaving.request("Describe"))["type"] == "DescribeResult"
                    jobs = busy.jobs
                    await leaving.send("OneOffQuery", sql=HEAVY_JOIN)      # seconds of work
                    while busy.jobs != jobs + 1 or not busy.in_batch:
                        await trio.sleep(0.001)
                # it has gone while its query runs: the query stops at its next look at the clock
                queries = server.metrics.hot.queries
                while not queries.get(("big", "cancelled")):
                    await trio.sleep(0.01)
                assert queries[("big", "answered")] == 1        # the COUNT before; not the join
                r = await owner.request("OneOffQuery", sql="SELECT COUNT(*) FROM message")
                assert r["rows"] == [[2000]]
