"""End to end on a real server (port 0): chat between clients, identities, owner-only SQL,
bad requests, slow clients, confirmed mode, graceful shutdown."""

from __future__ import annotations

import pathlib
from contextlib import asynccontextmanager

import cbor2
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, connect_websocket_url, open_websocket_url

from stdb import build_module
from stdb.errors import StorageError
from stdb.protocol import SUBPROTOCOL, decode_server, encode
from stdb.server.connection import CLOSE_TOO_SLOW, QueueLimits
from stdb.server.server import Server

ROOT = pathlib.Path(__file__).resolve().parents[1]
TIMEOUT = 20


@pytest.fixture(scope="module")
def chat_wasm(tmp_path_factory):
    out = tmp_path_factory.mktemp("wasm") / "chat.wasm"
    return pathlib.Path(build_module(str(ROOT / "examples/chat/chat.c"), str(out))).read_bytes()


class Client:
    """A bare protocol client (the SDK's own tests are elsewhere): send messages, read them."""

    def __init__(self, ws, hello):
        self.ws = ws
        self.identity = hello["identity"]
        self.token = hello["token"]
        self._rid = 0

    async def send(self, type_, **fields):
        self._rid += 1
        await self.ws.send_message(encode(type_, request_id=self._rid, **fields))
        return self._rid

    async def recv(self):
        return decode_server(await self.ws.get_message())

    async def recv_type(self, type_):
        while True:
            m = await self.recv()
            if m["type"] == type_:
                return m

    async def request(self, type_, **fields):
        """Send and return the answer to this request (updates before it are skipped)."""
        rid = await self.send(type_, **fields)
        while True:
            m = await self.recv()
            if m.get("request_id") == rid:
                return m


@asynccontextmanager
async def connect(port, name="chat", token=None, confirmed=False):
    q = []
    if token:
        q.append(f"token={token}")
    if confirmed:
        q.append("confirmed=true")
    url = f"ws://127.0.0.1:{port}/v1/database/{name}" + ("?" + "&".join(q) if q else "")
    async with open_websocket_url(url, subprotocols=[SUBPROTOCOL], max_message_size=64 << 20) as ws:
        hello = decode_server(await ws.get_message())
        assert hello["type"] == "IdentityToken" and hello["database"] == name
        yield Client(ws, hello)


@asynccontextmanager
async def running(tmp_path, **kw):
    server = Server(str(tmp_path / "data"), **kw)
    async with trio.open_nursery() as n:
        port = await n.start(server.serve, "127.0.0.1", 0)
        try:
            yield server, port
        finally:
            server.stop()


async def publish_chat(port, wasm):
    c_cm = connect(port)
    owner = await c_cm.__aenter__()
    res = await owner.request("Publish", wasm=wasm)
    assert res["type"] == "PublishResult" and res["created_tables"] == ["user", "message"]
    return owner, c_cm


async def publish_with_messages(owner, wasm, n):
    """Publish the chat module as ``owner`` (a Client) and send ``n`` messages ``m0``, ``m1``…,
    pipelined; returns once all are committed."""
    assert (await owner.request("Publish", wasm=wasm))["type"] == "PublishResult"
    for i in range(n):
        await owner.send("CallReducer", reducer="send_message", args=[f"m{i}"])
    r = await owner.request("OneOffQuery", sql="SELECT COUNT(*) FROM message")
    assert r["rows"] == [[n]]


async def test_two_clients_chat_and_see_each_others_messages(tmp_path, chat_wasm):
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (_, port):
            async with connect(port) as alice:
                assert (await alice.request("Publish", wasm=chat_wasm))["type"] == "PublishResult"
                async with connect(port) as bob:
                    applied = {}
                    for c in (alice, bob):
                        a = await c.request("Subscribe", queries=["SELECT * FROM message"])
                        assert a["type"] == "SubscribeApplied" and a["queries"][0]["rows"] == []
                        applied[c] = a["queries"][0]["query_id"]
                    assert applied[alice] == applied[bob]              # one evaluation for both
                    up = await alice.request("CallReducer", reducer="send_message", args=["hi bob"])
                    assert up["type"] == "TransactionUpdate" and up["status"] == "committed"
                    assert up["caller"] == alice.identity and up["reducer"] == "send_message"
                    [u] = up["updates"]
                    assert u["table"] == "message" and [r[3] for r in u["inserts"]] == ["hi bob"]
                    seen = await bob.recv_type("TransactionUpdate")
                    assert seen["request_id"] is None and seen["caller"] == alice.identity
                    assert [r[3] for r in seen["updates"][0]["inserts"]] == ["hi bob"]
                    # a reducer that fails: only the caller hears, with the module's message
                    up = await bob.request("CallReducer", reducer="send_message", args=[""])
                    assert up["status"] == "failed" and up["message"] == "messages must not be empty"
                    assert up["updates"] == []
                    r = await bob.request("OneOffQuery", sql="SELECT text FROM message")
                    assert r["type"] == "OneOffQueryResult" and r["rows"] == [["hi bob"]]


async def test_reconnect_keeps_identity_and_lifecycle_reducers_run(tmp_path, chat_wasm):
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (_, port):
            async with connect(port) as owner:
                await owner.request("Publish", wasm=chat_wasm)
            async with connect(port) as first:
                ident, token = first.identity, first.token
            async with connect(port, token=token) as again:
                assert again.identity == ident and again.token == token
                r = await again.request("OneOffQuery", sql="SELECT id, online FROM user")
                assert [ident, True] in r["rows"]                     # client_connected ran
            async with connect(port) as other:
                r = await other.request("OneOffQuery", sql="SELECT id, online FROM user")
                assert [ident, False] in r["rows"]                    # client_disconnected ran
                assert other.identity != ident


async def test_forged_and_malformed_tokens_are_refused(tmp_path, chat_wasm):
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (server, port):
            async with connect(port) as c:
                good = c.token
            head, body, sig = good.split(".")
            forged = f"{head}.{body}.{sig[:-4]}AAAA"
            for bad in (forged, "not-a-token", good + "x"):
                with pytest.raises(ConnectionRejected) as e:
                    async with connect(port, token=bad):
                        pass
                assert e.value.status_code == 401
            with pytest.raises(ConnectionRejected) as e:
                async with open_websocket_url(f"ws://127.0.0.1:{port}/v1/database/chat"):
                    pass                                             # no subprotocol
            assert e.value.status_code == 400


async def test_owner_takes_a_snapshot_while_others_go_on(tmp_path, chat_wasm):
    from stdb.storage.lmdbenv import Env
    from stdb.storage.snapshot import list_snapshots, verify_snapshot
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (server, port):
            async with connect(port) as owner, connect(port) as bob:
                await owner.request("Publish", wasm=chat_wasm)
                for i in range(3):
                    await owner.request("CallReducer", reducer="send_message", args=[f"m{i}"])
                e = await bob.request("Snapshot")
                assert e["type"] == "Error" and e["code"] == "auth_error" and "snapshot" in e["detail"]
                store = server.databases["chat"].db.store
                at = store.log.next_offset - 1
                rows = sum(len(store.datastore.table(n)) for n in store.datastore.table_names)
                rid = await owner.send("Snapshot")
                # the snapshot is written by a worker thread: requests are answered meanwhile
                r = await bob.request("CallReducer", reducer="send_message", args=["meanwhile"])
                assert r["status"] == "committed"
                while (m := await owner.recv()).get("request_id") != rid:
                    pass
                assert m["type"] == "SnapshotResult" and m["offset"] == at and m["bytes"] > 0
                assert m["rows"] == rows            # the tables as the request found them

                def failing():                      # a snapshot whose write fails (a full disk)
                    def write():
                        raise StorageError("writing to the database failed: no space left")
                    return write
                store.capture_snapshot = failing
                e = await owner.request("Snapshot")
                assert e["type"] == "Error" and e["code"] == "storage_error" and "no space" in e["detail"]
                r = await bob.request("CallReducer", reducer="send_message", args=["still serving"])
                assert r["status"] == "committed"
    env = Env(str(tmp_path / "data" / "databases" / "chat"), readonly=True)
    try:
        assert [s.offset for s in list_snapshots(env)] == [at]
        verify_snapshot(env, at)
    finally:
        env.close()


async def test_non_owner_sql_is_refused_and_bad_requests_change_nothing(tmp_path, chat_wasm):
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (_, port):
            async with connect(port) as owner, connect(port) as bob:
                await owner.request("Publish", wasm=chat_wasm)
                await owner.request("CallReducer", reducer="send_message", args=["keep me"])
                e = await bob.request("OneOffQuery", sql="DELETE FROM message")
                assert e["type"] == "Error" and e["code"] == "auth_error"
                e = await bob.request("Publish", wasm=chat_wasm)
                assert e["type"] == "Error" and e["code"] == "auth_error"
                e = await bob.request("CallReducer", reducer="no_such", args=[])
                assert e["type"] == "Error" and "no reducer named 'no_such'" in e["detail"]
                e = await bob.request("CallReducer", reducer="send_message", args=[5])
                assert e["type"] == "Error" and e["code"] == "data_error" and "send_message" in e["detail"]
                e = await bob.request("CallReducer", reducer="send_message", args=["a", "b"])
                assert e["type"] == "Error"
                e = await bob.request("Subscribe", queries=["SELECT * FROM nope"])
                assert e["type"] == "Error" and e["code"] == "query_error"
                e = await bob.request("CallReducer", reducer="client_connected_is_not_me", args=[])
                assert e["type"] == "Error"
                for raw in (b"\xff\x00garbage", cbor2.dumps([1, 2]), cbor2.dumps({"type": "Nope"}),
                            cbor2.dumps({"type": "CallReducer", "request_id": 9, "reducer": "x"}),
                            cbor2.dumps({"type": "Subscribe", "request_id": 10, "queries": "SELECT"})):
                    await bob.ws.send_message(raw)
                    e = await bob.recv()
                    assert e["type"] == "Error" and e["code"] == "protocol_error", e
                assert e["request_id"] == 10 and "queries" in e["detail"]
                await bob.ws.send_message("a text frame")
                assert (await bob.recv())["code"] == "protocol_error"
                r = await owner.request("OneOffQuery", sql="SELECT text FROM message")
                assert r["rows"] == [["keep me"]]                    # nothing changed
                # EXPLAIN is a one-off query like any other: the plan, not the rows
                r = await bob.request("OneOffQuery", sql="EXPLAIN SELECT text FROM message")
                assert r["columns"] == ["step", "plan", "estimated_rows"], r
                assert r["rows"] == [[1, "message: full scan — the table's rows (exact)", 1],
                                     [None, "total rows examined", 1]]
                e = await bob.request("OneOffQuery", sql="EXPLAIN DELETE FROM message")
                assert e["code"] == "query_error" and "EXPLAIN takes a SELECT" in e["detail"], e
                e = await owner.request("OneOffQuery", sql="DELETE FROM message")
                assert e["type"] == "OneOffQueryResult" and e["rows"] == [[1]]


async def test_metrics_count_calls_commits_and_messages(tmp_path, chat_wasm):
    from prometheus_client import generate_latest

    def value(body: str, series: str) -> float:
        return float(next(line for line in body.splitlines() if line.startswith(series + " ")).split()[-1])

    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (server, port):
            async with connect(port) as owner:
                await owner.request("Publish", wasm=chat_wasm)
                for i in range(3):
                    assert (await owner.request("CallReducer", reducer="send_message", args=[f"m{i}"]))[
                        "status"] == "committed"
                assert (await owner.request("CallReducer", reducer="send_message", args=[""]))[
                    "status"] == "failed"           # chat refuses empty messages
                body = generate_latest(server.metrics.registry).decode()
                calls = 'stdb_reducer_calls_total{database="chat",reducer="send_message",status="%s"}'
                assert value(body, calls % "committed") == 3 and value(body, calls % "error") == 1
                assert value(body, 'stdb_reducer_duration_seconds_count{database="chat"}') == 4
                assert value(body, 'stdb_reducer_duration_seconds_bucket{database="chat",le="+Inf"}') == 4
                assert value(body, 'stdb_reducer_fuel_total{database="chat",reducer="send_message"}') > 0
                assert value(body, 'stdb_commits_total{database="chat"}') >= 3
                # one-off queries by outcome, and their time
                for i in range(400):
                    await owner.send("CallReducer", reducer="send_message", args=[f"n{i}"])
                r = await owner.request("OneOffQuery", sql="SELECT COUNT(*) FROM message")
                assert r["rows"] == [[403]]
                async with connect(port) as other:          # 403 × 403 pairs: over a client's limit
                    pairs = "SELECT a.id FROM message a JOIN message b ON a.sent < b.sent"
                    e = await other.request("OneOffQuery", sql=pairs)
                    assert e["code"] == "query_error" and "rows_examined" in e["detail"], e
                    e = await other.request("OneOffQuery", sql="SELECT nope FROM message")
                    assert e["code"] == "query_error" and "nope" in e["detail"], e
                body = generate_latest(server.metrics.registry).decode()
                queries = 'stdb_queries_total{database="chat",outcome="%s"}'
                assert value(body, queries % "answered") == 1 and value(body, queries % "error") == 1
                assert value(body, queries % "over_rows_examined") == 1
                assert value(body, 'stdb_query_seconds_total{database="chat"}') > 0
                # IdentityToken, PublishResult and four TransactionUpdates, at least
                assert value(body, "stdb_messages_sent_total") >= 6
                assert value(body, "stdb_bytes_sent_total") > 100
                assert value(body, 'stdb_commit_log_failed{database="chat"}') == 0
                assert value(body, 'stdb_snapshot_failing{database="chat"}') == 0
                server.databases["chat"].db.store.snapshot_error = "disk full"     # as after a failure
                body = generate_latest(server.metrics.registry).decode()
                assert value(body, 'stdb_snapshot_failing{database="chat"}') == 1


async def test_oversized_frame_closes_only_that_connection(tmp_path, chat_wasm):
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path, max_message_bytes=1 << 16) as (_, port):
            async with connect(port) as owner, connect(port) as big:
                await owner.request("Publish", wasm=chat_wasm)
                await big.send("CallReducer", reducer="send_message", args=["x" * (1 << 17)])
                with pytest.raises(ConnectionClosed) as e:
                    await big.recv()
                assert e.value.reason.code == 1009                      # message too big
                up = await owner.request("CallReducer", reducer="send_message", args=["still here"])
                assert up["status"] == "committed"


async def test_a_slow_client_is_cut_off_while_others_keep_receiving(tmp_path, chat_wasm, caplog):
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path, queue=QueueLimits(messages=8, bytes_=1 << 20)) as (_, port):
            async with connect(port) as owner, connect(port) as slow:
                await owner.request("Publish", wasm=chat_wasm)
                for c in (owner, slow):
                    await c.request("Subscribe", queries=["SELECT * FROM message"])
                text = "y" * 60_000
                for i in range(100):        # ~6 MB of updates: more than socket buffers hold
                    up = await owner.request("CallReducer", reducer="send_message", args=[f"{i}{text}"])
                    assert up["status"] == "committed"
                with pytest.raises(ConnectionClosed) as e:
                    while True:
                        await slow.recv()
                # the close frame reaches a client only if its socket still has room: when the
                # server's send was cut short the client sees the connection drop (1006)
                assert e.value.reason.code in (CLOSE_TOO_SLOW, 1006)
                assert "client too slow" in caplog.text
                up = await owner.request("CallReducer", reducer="send_message", args=["after"])
                assert [r[3] for r in up["updates"][0]["inserts"]] == ["after"]


async def test_confirmed_mode_and_graceful_shutdown(tmp_path, chat_wasm):
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (server, port):
            async with connect(port) as owner:
                await owner.request("Publish", wasm=chat_wasm)
            async with connect(port, confirmed=True) as c:
                up = await c.request("CallReducer", reducer="send_message", args=["durable"])
                assert up["status"] == "committed"
                assert server.databases["chat"].db.store.durable_offset >= up["offset"]
                server.stop()
                with pytest.raises(ConnectionClosed) as e:
                    while True:
                        await c.recv()
                assert e.value.reason.code == 1001 and "shutting down" in e.value.reason.reason
    # everything acknowledged is there after a restart
    async with running(tmp_path) as (_, port):
        async with connect(port) as c:
            r = await c.request("OneOffQuery", sql="SELECT text FROM message")
            assert r["rows"] == [["durable"]]


async def test_protocol_over_memory_streams(tmp_path, chat_wasm):
    """The server's connection handling without a socket: a websocket over an in-memory stream
    pair, the client side raw frames (good and bad) and the answers read back."""
    from trio.testing import memory_stream_pair
    from trio_websocket import wrap_client_stream

    from stdb.server.websocket import server_handshake

    server = Server(str(tmp_path / "data"))
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as n:
            client_stream, server_stream = memory_stream_pair()

            await n.start(server.run_databases)      # what serve() runs: the databases' threads
            served = trio.Event()

            async def serve_one():
                request = await server_handshake(server_stream, server.max_message_bytes)
                assert request is not None
                await server._handle(request)
                served.set()
            n.start_soon(serve_one)
            ws = await wrap_client_stream(n, client_stream, "memory", "/v1/database/chat",
                                          subprotocols=[SUBPROTOCOL])
            hello = decode_server(await ws.get_message())
            assert hello["type"] == "IdentityToken" and len(hello["identity"]) == 32
            await ws.send_message(b"\xff\x00 not cbor")
            err = decode_server(await ws.get_message())
            assert err["type"] == "Error" and err["code"] == "protocol_error" and "CBOR" in err["detail"]
            await ws.send_message(encode("CallReducer", request_id=1, reducer="x", args=[]))
            err = decode_server(await ws.get_message())
            assert err["request_id"] == 1 and err["code"] == "no_such_database"
            await ws.send_message(encode("Publish", request_id=2, wasm=chat_wasm))
            assert decode_server(await ws.get_message())["type"] == "PublishResult"
            await ws.send_message(encode("CallReducer", request_id=3, reducer="send_message", args=["mem"]))
            up = decode_server(await ws.get_message())
            assert up["type"] == "TransactionUpdate" and up["status"] == "committed" and up["request_id"] == 3
            await ws.send_message(encode("OneOffQuery", request_id=4, sql="SELECT text FROM message"))
            assert decode_server(await ws.get_message())["rows"] == [["mem"]]
            await ws.aclose()
            await served.wait()
            n.cancel_scope.cancel()         # run_databases stops the threads, closes the databases
    assert all(h.closed and not h.thread.running for h in server.databases.values())


async def test_a_client_vanishing_with_replies_queued_ends_only_its_connection(tmp_path, chat_wasm):
    """A client that drops its TCP connection (no close handshake) while the server still has
    answers queued for it: that connection ends, the server keeps serving everyone else."""
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (server, port):
            async with connect(port) as owner:
                await owner.request("Publish", wasm=chat_wasm)
                for _ in range(3):
                    async with trio.open_nursery() as n:
                        ws = await connect_websocket_url(n, f"ws://127.0.0.1:{port}/v1/database/chat",
                                                         subprotocols=[SUBPROTOCOL])
                        await ws.get_message()
                        for i in range(200):
                            await ws.send_message(encode("CallReducer", request_id=i, reducer="send_message",
                                                         args=[f"m{i}"]))
                        await ws._stream.aclose()             # abort: no close frame
                        n.cancel_scope.cancel()
                    await trio.sleep(0.2)
                up = await owner.request("CallReducer", reducer="send_message", args=["still here"])
                assert up["type"] == "TransactionUpdate" and up["status"] == "committed"
                async with connect(port) as later:
                    r = await later.request("OneOffQuery", sql="SELECT COUNT(*) FROM message")
                    assert r["type"] == "OneOffQueryResult"
            with trio.fail_after(5):            # the clients that left: their handlers end
                while not all(c.close_reason for c in server.connections):
                    await trio.sleep(0.01)


async def test_an_fsync_failure_stops_acknowledgements_over_the_wire(tmp_path, chat_wasm):
    """The disk fails under a running server: a confirmed-mode client never hears its commit
    acknowledged (it is disconnected with the reason), later calls get a storage Error, and
    the server keeps answering everything that needs no commit."""
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (server, port):
            async with connect(port) as owner:
                await owner.request("Publish", wasm=chat_wasm)
                log_ = server.databases["chat"].db.store.log

                def fail(first, group):      # LMDB's fsync at the group's commit fails
                    raise OSError(5, "Input/output error")
                async with connect(port, confirmed=True) as c:
                    await c.request("OneOffQuery", sql="SELECT COUNT(*) FROM user")   # connected
                    log_._write_group = fail          # the disk fails under the next commit
                    await c.send("CallReducer", reducer="send_message", args=["never durable"])
                    with pytest.raises(ConnectionClosed) as closed:
                        while True:
                            m = await c.recv()
                            assert m["type"] != "TransactionUpdate" or m["caller"] != c.identity, \
                                "a commit that never became durable was acknowledged"
                    assert "cannot make commits durable" in closed.value.reason.reason
                e = await owner.request("CallReducer", reducer="send_message", args=["after"])
                assert e["type"] == "Error" and e["code"] == "storage_error"
                assert "acknowledges nothing further" in e["detail"]
                r = await owner.request("OneOffQuery", sql="SELECT COUNT(*) FROM user")
                assert r["type"] == "OneOffQueryResult"


async def test_pipelined_requests_are_answered_in_order_errors_included(tmp_path, chat_wasm):
    """Requests go to their database's execution thread (stdb/server/executor.py), which takes
    what is queued in batches: one connection's answers still come in the order it sent, a
    message that does not decode is answered in its place, and two clients' requests share
    batches."""
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (server, port):
            async with connect(port) as owner, connect(port) as other:
                await owner.request("Publish", wasm=chat_wasm)
                thread = server.databases["chat"].thread
                before = (thread.batches, thread.jobs)
                sent = []
                for i in range(200):
                    for c in (owner, other):
                        if i % 50 == 7:
                            await c.ws.send_message(b"\xff not cbor")
                            sent.append((c, "Error"))
                        else:
                            rid = await c.send("CallReducer", reducer="send_message", args=[f"{i}"])
                            sent.append((c, rid))
                for c in (owner, other):
                    for _, want in [x for x in sent if x[0] is c]:
                        m = await c.recv()
                        if want == "Error":
                            assert m["type"] == "Error" and m["code"] == "protocol_error"
                        else:
                            assert m["type"] == "TransactionUpdate" and m["request_id"] == want, (m, want)
                # (the poller hands each database a wake's requests as one job)
                assert thread.jobs - before[1] <= 400
                assert thread.batches - before[0] <= thread.jobs - before[1]


def test_the_execution_thread_runs_jobs_in_order_in_batches_and_stops_after_the_queue():
    import threading

    from stdb.server.executor import ExecutionThread

    class Worker:
        def __init__(self):
            self.batches = []
            self.gate = threading.Event()

        def run_batch(self, jobs):
            self.gate.wait(TIMEOUT)         # the first batch holds the thread: the rest queue up
            self.batches.append([job() for job in jobs])

        def next_wake(self):
            return None

    w = Worker()
    t = ExecutionThread("t", w)
    t.start()
    assert t.submit(lambda: 0)
    while not t.jobs and not t._inbox.empty():         # the thread took the first job
        pass
    for i in range(1, 6):
        assert t.submit(lambda i=i: i)
    w.gate.set()
    assert t.stop(TIMEOUT) and not t.running
    assert [x for b in w.batches for x in b] == [0, 1, 2, 3, 4, 5]
    assert w.batches[-1] == [1, 2, 3, 4, 5] or len(w.batches) <= 3     # queued jobs ran together
    assert not t.submit(lambda: 6)                       # stopped: refused, never run
    assert t.jobs == 6


async def test_requests_sent_before_leaving_are_handled_before_client_disconnected(tmp_path, chat_wasm):
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (server, port):
            async with connect(port) as owner:
                await owner.request("Publish", wasm=chat_wasm)
                async with connect(port) as leaving:
                    for i in range(20):
                        await leaving.send("CallReducer", reducer="send_message", args=[f"bye {i}"])
                # it closed without reading an answer: all 20 were still handled
                with trio.fail_after(5):
                    while True:
                        r = await owner.request("OneOffQuery", sql="SELECT text FROM message")
                        if len(r["rows"]) == 20:
                            break
                        await trio.sleep(0.01)
                assert sorted(r["rows"]) == sorted([[f"bye {i}"] for i in range(20)])


async def test_a_client_pipelining_thousands_of_calls_gets_every_answer(tmp_path, chat_wasm):
    """Read-side backpressure: a client that pipelines 3,000 calls is not cut off as too slow
    when the server runs calls faster than it sends answers (a queue of 16 messages here makes
    that certain); it gets all 3,000."""
    with trio.fail_after(TIMEOUT * 3):
        async with running(tmp_path, queue=QueueLimits(messages=16)) as (server, port):
            async with connect(port) as c:
                await c.request("Publish", wasm=chat_wasm)
                n = 3000

                async def send_all():
                    for i in range(n):
                        await c.ws.send_message(encode("CallReducer", request_id=10_000 + i,
                                                       reducer="send_message", args=[f"m{i}"]))
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(send_all)
                    await trio.sleep(1)               # let the server's answers pile up unread
                    got = set()
                    while len(got) < n:
                        m = await c.recv()
                        assert m["type"] == "TransactionUpdate" and m["status"] == "committed", m
                        got.add(m["request_id"])
                assert got == {10_000 + i for i in range(n)}
