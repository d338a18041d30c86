"""Hostile modules on a real server (port 0): a reducer that loops, recurses without end, grows
memory past the cap, writes a row past the size limit or scans a big table forever fails its own
call and rolls back; another client is served between the calls and the next call works.
Lifecycle reducers that trap: init refuses the publish, client_connected refuses the
connection, client_disconnected is logged."""

from __future__ import annotations

import pathlib

import pytest
import trio
from trio_websocket import ConnectionClosed

from stdb import build_module
from tests.test_server import ROOT, TIMEOUT, connect, running

SOURCE = str(ROOT / "tests/modules/hostile.c")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    d = tmp_path_factory.mktemp("wasm")
    ok = pathlib.Path(build_module(SOURCE, str(d / "h.wasm"))).read_bytes()
    bad = pathlib.Path(build_module(SOURCE, str(d / "hi.wasm"), extra_args=["-DTRAP_INIT"])).read_bytes()
    return ok, bad


async def count(c, sql="SELECT COUNT(*) FROM blob"):
    r = await c.request("OneOffQuery", sql=sql)
    assert r["type"] == "OneOffQueryResult", r
    return r["rows"][0][0]


@pytest.mark.parametrize("reducer, arg, status, words", [
    ("loop", 0, ("out_of_fuel", "timeout"), ""),
    ("recurse", 1, ("trap",), ""),
    ("grow", 0, ("failed", "trap"), ""),
    ("huge_row", 2 << 20, ("failed",), "refused"),
    ("scan_forever", 0, ("timeout", "out_of_fuel", "trap"), ""),
])
async def test_a_misbehaving_reducer_fails_alone(tmp_path, hostile, reducer, arg, status, words):
    with trio.fail_after(TIMEOUT * 2):
        async with running(tmp_path) as (_, port):
            async with connect(port, name="h") as owner:
                assert (await owner.request("Publish", wasm=hostile[0]))["type"] == "PublishResult"
                if reducer == "scan_forever":           # a big table to scan
                    up = await owner.request("CallReducer", reducer="fill", args=[20_000])
                    assert up["status"] == "committed"
                async with connect(port, name="h") as other:
                    before = await count(other)
                    bad = await owner.request("CallReducer", reducer=reducer, args=[arg])
                    assert bad["type"] == "TransactionUpdate" and bad["status"] in status, bad
                    assert words in (bad["message"] or "") and bad["updates"] == []
                    assert await count(other) == before                 # rolled back
                    ok = await other.request("CallReducer", reducer="add", args=["served"])
                    assert ok["status"] == "committed"
                    again = await owner.request("CallReducer", reducer="add", args=["next call works"])
                    assert again["status"] == "committed"
                    assert await count(other) == before + 2


async def test_trapping_lifecycle_reducers(tmp_path, hostile, caplog):
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (server, port):
            async with connect(port, name="broken") as c:
                e = await c.request("Publish", wasm=hostile[1])            # init traps
                assert e["type"] == "Error" and "init" in e["detail"]
                assert "broken" not in server.databases                   # nothing was created
                assert not (tmp_path / "data" / "databases" / "broken").exists()
            async with connect(port, name="h") as owner:
                assert (await owner.request("Publish", wasm=hostile[0]))["type"] == "PublishResult"
                up = await owner.request("CallReducer", reducer="set_mode", args=[True, True])
                assert up["status"] == "committed"
                async with connect(port, name="h") as refused:             # client_connected traps
                    err = await refused.recv()
                    assert err["type"] == "Error" and err["code"] == "reducer_error"
                    assert "client_connected" in err["detail"] and "trapped" in err["detail"]
                    with pytest.raises(ConnectionClosed) as closed:
                        await refused.recv()
                    assert closed.value.reason.code == 4003
                    assert "client_connected refused the connection" in closed.value.reason.reason
                await trio.sleep(0.2)
                # refused by client_connected, it was never connected: no client_disconnected ran
                assert "client_disconnected failed" not in caplog.text
                up = await owner.request("CallReducer", reducer="set_mode", args=[False, True])
                assert up["status"] == "committed"
                async with connect(port, name="h") as leaver:               # disconnect will trap
                    assert await count(leaver, "SELECT COUNT(*) FROM mode") == 1
                with trio.fail_after(5):
                    while "client_disconnected failed" not in caplog.text:
                        await trio.sleep(0.01)
                assert await count(owner, "SELECT COUNT(*) FROM mode") == 1   # still serving


def test_a_failed_init_publishes_nothing(tmp_path, hostile):
    import stdb
    from stdb.module.database import Database

    with Database(str(tmp_path / "db")) as db:
        with pytest.raises(stdb.ModuleError, match="init failed .*trapped.*nothing was published"):
            db.publish(hostile[1], owner=b"\x01" * 32)
        assert db.schema is None and db.owner is None and db.store.datastore.table_names == []
    with Database(str(tmp_path / "db")) as db:            # and after a restart
        assert db.schema is None and db.store.datastore.table_names == []
        res = db.publish(hostile[0])
        assert res.first_publish and res.created_tables == ["blob", "mode"]
