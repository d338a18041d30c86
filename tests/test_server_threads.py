"""One execution thread per database (stdb/server/executor.py): a database whose reducer loops
until its limit delays neither the websocket I/O nor any other database."""

from __future__ import annotations

import pathlib

import trio

from stdb import build_module
from stdb.module.host import Limits
from tests.test_server import TIMEOUT, chat_wasm, connect, running  # noqa: F401 - a fixture

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
