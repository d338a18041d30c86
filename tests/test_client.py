"""The Python client SDK against a real server (port 0): cache, callbacks, calls, queries,
tokens, resubscribe after a module update, logs, describe, delete, and the blocking client."""

from __future__ import annotations

import json
import os
import pathlib
import threading

import pytest
import trio

from stdb import build_module
from stdb.client import ConnectionLost, Event, connect, connect_blocking
from stdb.client.cache import ClientCache
from stdb.client.credentials import load_token, save_token
from stdb.errors import AuthError, QueryError, ReducerError, StdbError
from tests.test_server import ROOT, TIMEOUT, chat_wasm, running  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def transfer_wasm(tmp_path_factory):
    out = tmp_path_factory.mktemp("wasm") / "transfer.wasm"
    return pathlib.Path(build_module(str(ROOT / "examples/transfer/transfer.c"), str(out))).read_bytes()


def url(port):
    return f"ws://127.0.0.1:{port}"


async def test_chat_cache_callbacks_and_outcomes(tmp_path, chat_wasm):  # noqa: F811
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (_, port):
            async with connect(url(port), "chat") as alice:
                assert alice.module is None                       # nothing published yet
                res = await alice.publish(chat_wasm)
                assert res["created_tables"] == ["user", "message"]
                async with connect(url(port), "chat") as bob:
                    assert bob.module is not None and bob.identity != alice.identity
                    seen: list = []
                    bob.on_insert("message", lambda row, ev: seen.append(("insert", row[3], ev.reducer)))
                    bob.on_update("user", lambda old, new, ev: seen.append(("update", old[1], new[1])))
                    bob.on_delete("user", lambda row, ev: seen.append(("delete", row)))
                    await bob.subscribe("SELECT * FROM message", "SELECT * FROM user")
                    # bob's client_connected made his user row (alice connected before the module)
                    assert {r[0] for r in bob.table("user")} == {bob.identity}
                    out = await alice.call("send_message", "hi bob")
                    assert out.ok and out.offset is not None and out.reducer == "send_message"
                    assert (await bob.call("set_name", "bob")).ok
                    # bob's updates were sent before alice's answers: a round trip of bob's own
                    # makes sure his reader has seen them
                    await bob.query("SELECT * FROM user WHERE online = true")
                    assert ("insert", "hi bob", "send_message") in seen
                    assert ("update", "", "bob") in seen                 # delete + insert of one key
                    assert not [s for s in seen if s[0] == "delete"]
                    assert bob.table("user").get(bob.identity)[1] == "bob"
                    assert [r[3] for r in bob.table("message")] == ["hi bob"]
                    bad = await alice.call("send_message", "")
                    assert not bad.ok and bad.status == "failed" and "empty" in bad.message
                    with pytest.raises(ReducerError, match="empty"):
                        bad.raise_for_status()
                    with pytest.raises(ReducerError):
                        await alice.call("no_such_reducer")
                    with pytest.raises(StdbError) as e:
                        await alice.call("send_message", 42)
                    assert e.value.code == "data_error"
                    with pytest.raises(QueryError):
                        await bob.query("SELEKT 1")
                    r = await bob.query("SELECT text FROM message")
                    assert r.columns == ["text"] and r.rows == [("hi bob",)]
                    with pytest.raises(AuthError):
                        await bob.query("DELETE FROM message")
                    assert (await alice.query("DELETE FROM message")).rows == [(1,)]
                    await bob.query("SELECT * FROM user")
                    assert len(bob.table("message")) == 0
                # bob left: client_disconnected marked him offline
                [(online,)] = (await alice.query("SELECT online FROM user")).rows
                assert online is False


async def test_unsubscribe_and_overlapping_queries(tmp_path, chat_wasm):  # noqa: F811
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (_, port):
            async with connect(url(port), "chat") as c:
                await c.publish(chat_wasm)
                await c.call("send_message", "one")
                await c.call("send_message", "two")
                gone: list = []
                c.on_delete("message", lambda row, ev: gone.append(row[3]))
                a = await c.subscribe("SELECT * FROM message")
                b = await c.subscribe("SELECT * FROM message WHERE id = 1")
                assert sorted(r[3] for r in c.table("message")) == ["one", "two"]
                await a.unsubscribe()
                # "one" is still held by the second query; "two" is gone
                assert [r[3] for r in c.table("message")] == ["one"] and gone == ["two"]
                await b.unsubscribe()
                assert len(c.table("message")) == 0 and sorted(gone) == ["one", "two"]
                # the same query in two subscriptions: the server holds it once; it stays until
                # the last of them lets go
                s1 = await c.subscribe("SELECT * FROM message")
                s2 = await c.subscribe("SELECT * FROM message")
                assert s1.query_ids == s2.query_ids and len(c.table("message")) == 2
                await s1.unsubscribe()
                assert len(c.table("message")) == 2
                await c.call("send_message", "while s2 holds it")
                assert len(c.table("message")) == 3
                await s2.unsubscribe()
                assert len(c.table("message")) == 0
                await c.call("send_message", "three")
                assert len(c.table("message")) == 0


async def test_token_saved_and_identity_kept(tmp_path, chat_wasm):  # noqa: F811
    creds = str(tmp_path / "cfg" / "credentials.json")
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (_, port):
            async with connect(url(port), "chat", credentials=creds) as c:
                first = c.identity
                await c.publish(chat_wasm)
            assert os.stat(creds).st_mode & 0o777 == 0o600
            assert load_token(creds, url(port) + "/v1/database/other") == c.token
            async with connect(url(port), "chat", credentials=creds) as c2:
                assert c2.identity == first
                assert (await c2.query("DELETE FROM message")).columns == ["changed_rows"]   # still owner
            save_token(creds, url(port), "not.a.token")
            with pytest.raises(AuthError):
                async with connect(url(port), "chat", credentials=creds):
                    pass
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(StdbError, match="not a credentials file"):
        load_token(str(tmp_path / "bad.json"), "ws://x")


async def test_connection_errors_are_clear(tmp_path):
    with pytest.raises(ConnectionLost, match="cannot connect"):
        async with connect("ws://127.0.0.1:1", "chat", connect_timeout=5):
            pass
    with pytest.raises(StdbError, match="ws://"):
        async with connect("http://127.0.0.1:1", "chat"):
            pass
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (_, port):
            with pytest.raises(StdbError) as e:
                async with connect(url(port), "Bad Name"):
                    pass
            assert e.value.code == "connection_refused" and "404" in str(e.value)


async def test_server_shutdown_fails_pending_requests(tmp_path, chat_wasm):  # noqa: F811
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (server, port):
            async with connect(url(port), "chat") as c:
                await c.publish(chat_wasm)
                server.stop()
                with pytest.raises(ConnectionLost) as e:
                    for _ in range(100):
                        await c.call("send_message", "x")
                        await trio.sleep(0.05)
                assert "1001" in str(e.value) or "closed" in str(e.value)


async def test_resubscribe_after_module_update(tmp_path, chat_wasm):  # noqa: F811
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (_, port):
            async with connect(url(port), "chat") as owner:
                await owner.publish(chat_wasm)
                await owner.call("send_message", "before")
                async with connect(url(port), "chat") as c:
                    errors: list = []
                    c.on_error = errors.append
                    sub = await c.subscribe("SELECT * FROM message")
                    old_ids = list(sub.query_ids)
                    await owner.publish(chat_wasm)                 # same module: an update all the same
                    with trio.fail_after(5):
                        while sub.query_ids == old_ids or not len(c.table("message")):
                            await trio.sleep(0.01)
                    assert [e.code for e in errors] == ["resubscribe"]
                    await owner.call("send_message", "after")
                    await c.query("SELECT * FROM user")
                    assert sorted(r[3] for r in c.table("message")) == ["after", "before"]


async def test_describe_logs_and_delete(tmp_path, transfer_wasm):
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (server, port):
            async with connect(url(port), "bank") as owner:
                await owner.publish(transfer_wasm)
                mod = await owner.describe()
                assert [t["name"] for t in mod["tables"]] == ["account"]
                assert mod["owner"] == owner.identity
                tr = next(r for r in mod["reducers"] if r["name"] == "transfer")
                assert [p["type"] for p in tr["params"]] == ["u64", "u64", "i64"]
                logs = await owner.logs()
                assert logs[-1]["message"] == "transfer module initialised" and logs[-1]["level"] == "info"
                async with connect(url(port), "bank") as other:
                    assert (await other.describe())["tables"][0]["primary_key"] == ["id"]
                    with pytest.raises(AuthError):
                        await other.logs()
                    with pytest.raises(AuthError):
                        await other.delete_database()
                    async with owner.follow_logs(limit=1) as entries:
                        assert (await entries.receive())["message"] == "transfer module initialised"
                        # republishing runs no init (not a first publish); a new database does
                        await owner.call("create_account", 1, 100)
                        assert (await owner.logs(0)) == []
                    await owner.delete_database()
                    with pytest.raises(ConnectionLost, match="deleted"):
                        for _ in range(100):
                            await other.query("SELECT * FROM account")
                            await trio.sleep(0.05)
                assert "bank" not in server.databases
                assert not (tmp_path / "data" / "databases" / "bank").exists()
                with pytest.raises(StdbError) as e:
                    await owner.query("SELECT * FROM account")
                assert e.value.code == "no_such_database"


def test_blocking_client(tmp_path, chat_wasm):  # noqa: F811
    from stdb.server.server import Server

    server = Server(str(tmp_path / "data"))
    port_box: list = []
    started = threading.Event()

    async def serve():
        async with trio.open_nursery() as n:
            port_box.append(await n.start(server.serve, "127.0.0.1", 0))
            port_box.append(trio.lowlevel.current_trio_token())
            started.set()

    t = threading.Thread(target=trio.run, args=(serve,), daemon=True)
    t.start()
    assert started.wait(20)
    try:
        with connect_blocking(url(port_box[0]), "chat") as c:
            c.publish(chat_wasm)
            c.subscribe("SELECT * FROM message")
            got: list = []
            c.on_insert("message", lambda row, ev: got.append(row[3]))
            assert c.call("send_message", "blocking hi").ok
            assert [r[3] for r in c.rows("message")] == ["blocking hi"] and got == ["blocking hi"]
            assert c.query("SELECT COUNT(*) FROM message").rows == [(1,)]
        with pytest.raises(StdbError):
            c.call("send_message", "closed")
    finally:
        trio.from_thread.run_sync(server.stop, trio_token=port_box[1])
        t.join(20)


def test_cache_applies_net_changes_and_updates():
    cache = ClientCache()
    cache.set_keys({"t": (0,)})
    log: list = []
    for kind in ("insert", "delete"):
        cache.on(kind, "t", lambda row, ev, kind=kind: log.append((kind, row)))
    cache.on("update", "t", lambda old, new, ev: log.append(("update", old, new)))
    cache.add_query(1, "t", [[1, "a"], [2, "b"]])
    cache.add_query(2, "t", [[2, "b"]])
    assert log == [("insert", (1, "a")), ("insert", (2, "b"))]
    log.clear()
    ev = Event("r")
    # row 2 leaves query 1 but stays in query 2: no change; row 1 changes value: an update
    cache.apply([{"query_id": 1, "table": "t", "deletes": [[2, "b"], [1, "a"]], "inserts": [[1, "z"]]}], ev)
    assert log == [("update", (1, "a"), (1, "z"))]
    assert cache.table("t").get(1) == (1, "z") and (2, "b") in cache.table("t")
    log.clear()
    cache.remove_query(2)
    assert log == [("delete", (2, "b"))] and len(cache.table("t")) == 1
    log.clear()
    cache.apply([{"query_id": 9, "table": "t", "deletes": [], "inserts": [[5, "x"]]}], ev)   # unknown query
    assert log == [] and cache.table("t").get(5) is None
    cache.add_query(3, "t", [[[1, 2], "nested"]])
    assert ((1, 2), "nested") in cache.table("t")


def test_credentials_file_round_trip(tmp_path):
    p = str(tmp_path / "c.json")
    assert load_token(p, "ws://h:1") is None
    save_token(p, "ws://H:1/v1/database/x", "tok")
    assert load_token(p, "ws://h:1") == "tok"
    save_token(p, "ws://h:1", None)
    assert json.loads(pathlib.Path(p).read_text())["tokens"] == {}


def test_a_failing_callback_is_logged_and_the_cache_stays_right(caplog):
    cache = ClientCache()
    seen: list = []

    def broken(row, ev):
        raise RuntimeError("bug in user code")
    cache.on("insert", "t", broken)
    cache.on("insert", "t", lambda row, ev: seen.append(row))
    cache.add_query(1, "t", [[1, "a"]])
    assert seen == [(1, "a")] and (1, "a") in cache.table("t")
    assert "the insert callback of table t failed" in caplog.text and "bug in user code" in caplog.text
