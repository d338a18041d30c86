"""The Python client rides out a server restart (issue 27, docs/client.md "Reconnecting"):
back-off with jitter, the same identity, every subscription subscribed again, and exactly the
missed changes handed to the callbacks; calls while disconnected fail at once; a refused token
or ``close()`` ends it.  Real servers: `stdb start` subprocesses killed with SIGKILL, and (for
the blocking client) an in-process server stopped and started again on the same port."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import threading
from collections import Counter

import pytest
import trio

from stdb import Reconnect
from stdb.client import ConnectionLost, connect, connect_blocking
from stdb.client.cache import ClientCache, Event
from stdb.errors import AuthError, DataError
from tests.test_server import ROOT, chat_wasm  # noqa: F401 (fixture)

TIMEOUT = 180           # a whole test, on a busy 2-core machine


def url(port: int) -> str:
    return f"ws://127.0.0.1:{port}"


class ServerProcess:
    """``python -m stdb start`` on ``data``; on ``port`` (0: one the system picks, read back from
    the port file)."""

    def __init__(self, proc: subprocess.Popen, port: int) -> None:
        self.proc = proc
        self.port = port

    @classmethod
    async def start(cls, tmp: pathlib.Path, data: pathlib.Path, port: int = 0) -> ServerProcess:
        port_file = tmp / f"port-{os.urandom(4).hex()}"
        log = open(tmp / "server.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "stdb", "start", "--data", str(data), "--listen", f"127.0.0.1:{port}",
             "--port-file", str(port_file), "--log-level", "warning"],
            cwd=ROOT, stdout=log, stderr=log,
            env=dict(os.environ, PYTHONPATH=str(ROOT), STDB_CONFIG_DIR=str(tmp / "cfg")))
        log.close()
        with trio.fail_after(120):
            while not port_file.exists() or not port_file.read_text().strip():
                # the port file appears once the server listens; nothing else says so
                assert proc.poll() is None, (tmp / "server.log").read_text()
                await trio.sleep(0.05)
        return cls(proc, int(port_file.read_text()))

    async def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        await trio.to_thread.run_sync(self.proc.wait)


class Replay:
    """A copy of a connection's cache (tables keyed by their first column, the primary key),
    kept by applying every callback in the order it came.  What does not fit (a row inserted
    twice, a delete of a row not held) is noted in ``problems``: callbacks' exceptions are only
    logged by the client."""

    def __init__(self, conn, tables: list[str]) -> None:
        self.rows = {t: {r[0]: r for r in conn.table(t)} for t in tables}
        self.log: list[tuple] = []
        self.problems: list[str] = []
        for t in tables:
            conn.on_insert(t, lambda row, ev, t=t: self._insert(t, row, ev))
            conn.on_delete(t, lambda row, ev, t=t: self._delete(t, row, ev))
            conn.on_update(t, lambda old, new, ev, t=t: self._update(t, old, new, ev))

    def _insert(self, t: str, row: tuple, ev: Event) -> None:
        if row[0] in self.rows[t]:
            self.problems.append(f"insert of {row} into {t}, which holds {self.rows[t][row[0]]}")
        self.rows[t][row[0]] = row
        self.log.append(("insert", t, row, ev))

    def _delete(self, t: str, row: tuple, ev: Event) -> None:
        if self.rows[t].get(row[0]) != row:
            self.problems.append(f"delete of {row} from {t}, which holds {self.rows[t].get(row[0])}")
        self.rows[t].pop(row[0], None)
        self.log.append(("delete", t, row, ev))

    def _update(self, t: str, old: tuple, new: tuple, ev: Event) -> None:
        if self.rows[t].get(old[0]) != old or old[0] != new[0]:
            self.problems.append(f"update of {old} to {new} in {t}, which holds {self.rows[t].get(old[0])}")
        self.rows[t][new[0]] = new
        self.log.append(("update", t, (old, new), ev))


# ---- without a server


def test_reconnect_options_bounds_and_checks():
    r = Reconnect(initial_delay=0.05, max_delay=0.4)
    assert [r.bound(n) for n in range(6)] == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4]
    assert r.delay(2, 0.0) == 0.1 and r.delay(2, 0.999) < 0.2      # jitter: the upper half
    assert r.bound(10_000) == 0.4                                    # no overflow
    for bad in (dict(initial_delay=0), dict(initial_delay=1, max_delay=0.5), dict(max_attempts=0)):
        with pytest.raises(DataError, match="Reconnect"):
            Reconnect(**bad)


def test_adopt_fires_exactly_the_differences_and_keeps_the_table_objects():
    cache = ClientCache()
    cache.set_keys({"t": (0,)})
    cache.add_query(1, "t", [[1, "a"], [2, "b"], [3, "c"]])
    table = cache.table("t")
    log: list = []
    cache.on("insert", "t", lambda row, ev: log.append(("insert", row)))
    cache.on("delete", "t", lambda row, ev: log.append(("delete", row)))
    cache.on("update", "t", lambda old, new, ev: log.append(("update", old, new)))
    fresh = ClientCache()
    fresh.set_keys({"t": (0,)})
    fresh.add_query(7, "t", [[1, "a"], [2, "B"], [4, "d"]])
    fresh.add_query(8, "u", [["x"]])
    cache.adopt(fresh)
    assert sorted(log) == [("delete", (3, "c")), ("insert", (4, "d")), ("update", (2, "b"), (2, "B"))]
    assert cache.table("t") is table and sorted(table) == [(1, "a"), (2, "B"), (4, "d")]
    assert table.get(2) == (2, "B") and table.get(3) is None
    assert cache.query_ids() == [7, 8] and list(cache.table("u")) == [("x",)]
    assert cache.release(7)                          # the fresh cache's holds came along


# ---- a real server killed under a subscribed client while another client writes


async def test_restart_under_a_subscribed_client_while_another_writes(tmp_path, chat_wasm):  # noqa: F811
    data = tmp_path / "data"
    with trio.fail_after(TIMEOUT):
        server = await ServerProcess.start(tmp_path, data)
        port = server.port
        async with connect(url(port), "chat", reconnect=False) as owner:
            await owner.publish(chat_wasm)
        async with connect(url(port), "chat", token=owner.token, reconnect=False) as owner:
            assert (await owner.call("set_name", "ann")).ok
            for text in ("one", "two", "three"):
                assert (await owner.call("send_message", text)).ok
        owner_token = owner.token

        retries: list[float] = []
        fast = Reconnect(initial_delay=0.05, max_delay=0.5, on_retry=lambda n, d: retries.append(d))
        async with connect(url(port), "chat", confirmed=True, reconnect=fast) as bob, \
                connect(url(port), "chat", confirmed=True,              # an ack: durable, so kept
                        reconnect=Reconnect(initial_delay=0.05, max_delay=0.5)) as writer:
            identity = bob.identity
            disconnects: list[str] = []
            reconnects: list = []
            dropped, back = trio.Event(), trio.Event()
            bob.on_disconnect = lambda reason: (disconnects.append(reason), dropped.set())
            bob.on_reconnect = lambda conn: (reconnects.append(conn), back.set())
            await bob.subscribe("SELECT * FROM message", "SELECT * FROM user")
            assert sorted(r[3] for r in bob.table("message")) == ["one", "three", "two"]
            replay = Replay(bob, ["message", "user"])

            # the writer calls send_message in a loop, through the kill and the reconnect
            writer_back = trio.Event()
            writer.on_reconnect = lambda conn: writer_back.set()
            acked: list[str] = []
            lost_calls: list[str] = []
            enough = [trio.Event(), trio.Event()]       # 5 acked before the kill; 5 after bob is back
            acked_when_back: list[int] = []
            stop_writing = trio.Event()

            async def write() -> None:
                i = 0
                while not stop_writing.is_set():
                    i += 1
                    try:
                        assert (await writer.call("send_message", f"w{i}")).ok
                    except ConnectionLost as e:
                        lost_calls.append(str(e))
                        await writer_back.wait()
                        continue
                    acked.append(f"w{i}")
                    if len(acked) >= 5:
                        enough[0].set()
                    if acked_when_back and len(acked) >= acked_when_back[0] + 5:
                        enough[1].set()

            async with trio.open_nursery() as n:
                n.start_soon(write)
                await enough[0].wait()
                await server.kill()                       # SIGKILL while the writer writes
                await dropped.wait()
                assert bob.state == "reconnecting" and disconnects and "1006" in disconnects[0]
                # nothing is queued while disconnected: calls, queries and subscribing fail at once
                with pytest.raises(ConnectionLost, match="reconnecting") as e:
                    await bob.call("send_message", "lost")
                assert "on_reconnect" in str(e.value)
                with pytest.raises(ConnectionLost):
                    await bob.query("SELECT * FROM message")
                with pytest.raises(ConnectionLost):
                    await bob.subscribe("SELECT * FROM user")

                # changes bob will have missed, made on the same data through another port (bob
                # knows only the first): an insert, a delete, an update of a message, a rename
                other = await ServerProcess.start(tmp_path, data)
                async with connect(url(other.port), "chat", token=owner_token, reconnect=False) as o:
                    assert (await o.call("send_message", "four")).ok
                    await o.query("DELETE FROM message WHERE text = 'one'")
                    await o.query("UPDATE message SET text = 'TWO' WHERE text = 'two'")
                    assert (await o.call("set_name", "anna")).ok
                await other.kill(signal.SIGTERM)
                assert not back.is_set()
                server = await ServerProcess.start(tmp_path, data, port)   # the same port again
                await back.wait()
                acked_when_back.append(len(acked))
                await enough[1].wait()                    # the writer wrote again after coming back
                stop_writing.set()

            assert lost_calls, "the writer's calls were never refused while the server was down"
            assert bob.state == "connected" and bob.close_reason is None
            assert bob.identity == identity
            assert len(disconnects) == 1 and reconnects == [bob]
            assert len(retries) >= 2                      # it failed while the server was down
            # bob's own call is answered after every earlier commit's update reached bob
            assert (await bob.call("send_message", "bob is back")).ok
            fresh = {t: sorted((await bob.query(f"SELECT * FROM {t}")).rows) for t in ("message", "user")}
            for t in ("message", "user"):
                assert sorted(bob.table(t)) == fresh[t], t
                assert sorted(replay.rows[t].values()) == fresh[t], t
            assert replay.problems == []
            texts = [r[3] for r in fresh["message"]]
            assert "one" not in texts and {"TWO", "three", "four", "bob is back"} <= set(texts)
            assert set(acked) <= set(texts)
            # the missed changes came as such, with a subscription's event (no reducer, no offset)
            missed = [(kind, row) for kind, _, row, ev in replay.log
                      if ev.offset is None and ev.reducer is None]
            kinds = Counter(kind for kind, _ in missed)
            assert any(k == "delete" and r[3] == "one" for k, r in missed)
            assert any(k == "update" and r[0][3] == "two" and r[1][3] == "TWO" for k, r in missed)
            assert any(k == "insert" and r[3] == "four" for k, r in missed)
            assert any(k == "update" and r[0][1] == "ann" and r[1][1] == "anna" for k, r in missed)
            assert kinds["insert"] >= 1 and kinds["delete"] >= 1
        await server.kill(signal.SIGTERM)


# ---- a server that stays down


async def test_a_server_that_stays_down(tmp_path, chat_wasm):  # noqa: F811
    with trio.fail_after(TIMEOUT):
        server = await ServerProcess.start(tmp_path, tmp_path / "data")
        delays: list[tuple[int, float]] = []
        enough = trio.Event()

        def retried(attempt: int, delay: float) -> None:
            delays.append((attempt, delay))
            if len(delays) >= 8:
                enough.set()

        disconnects: list[str] = []
        async with connect(url(server.port), "chat",
                           reconnect=Reconnect(initial_delay=0.05, max_delay=0.4, on_retry=retried)) as c:
            c.on_disconnect = disconnects.append
            await c.publish(chat_wasm)
            await server.kill()
            await enough.wait()
            assert c.state == "reconnecting"
            at_close = len(delays)
        assert c.state == "closed" and not c._looping          # the loop's task has ended
        r = Reconnect(initial_delay=0.05, max_delay=0.4)
        assert [a for a, _ in delays] == list(range(1, at_close + 1))
        for attempt, delay in delays:
            bound = r.bound(attempt - 1)
            assert bound / 2 <= delay <= bound, (attempt, delay)
        assert [r.bound(a - 1) for a, _ in delays[:5]] == [0.05, 0.1, 0.2, 0.4, 0.4]   # grows, then caps
        assert all(d <= 0.4 for _, d in delays)
        assert len(disconnects) == 1                               # once, not per failed attempt
        # closed: no further attempt (the wait is long against the 0.4 s bound, and a wrong
        # answer here could only come from an attempt after close)
        await trio.sleep(1.5)
        assert len(delays) == at_close
        with pytest.raises(ConnectionLost, match="closed"):
            await c.call("send_message", "after close")


async def test_max_attempts_then_closed(tmp_path, chat_wasm):  # noqa: F811
    with trio.fail_after(TIMEOUT):
        server = await ServerProcess.start(tmp_path, tmp_path / "data")
        errors: list = []
        gave_up = trio.Event()
        async with connect(url(server.port), "chat",
                           reconnect=Reconnect(initial_delay=0.05, max_delay=0.1, max_attempts=3)) as c:
            c.on_error = lambda e: (errors.append(e), gave_up.set())
            await server.kill()
            await gave_up.wait()
            assert c.state == "closed"
            assert [type(e) for e in errors] == [ConnectionLost]
            assert "gave up reconnecting" in str(errors[0]) and "after 3 attempts" in str(errors[0])
            with pytest.raises(ConnectionLost, match="closed"):
                await c.call("send_message", "x")


async def test_a_refused_token_ends_reconnecting(tmp_path, chat_wasm):  # noqa: F811
    with trio.fail_after(TIMEOUT):
        server = await ServerProcess.start(tmp_path, tmp_path / "data")
        port = server.port
        errors: list = []
        refused = trio.Event()
        disconnects: list[str] = []
        async with connect(url(port), "chat", reconnect=Reconnect(initial_delay=0.05, max_delay=0.2)) as c:
            c.on_disconnect = disconnects.append
            c.on_error = lambda e: (errors.append(e), refused.set())
            await c.publish(chat_wasm)
            await c.subscribe("SELECT * FROM message")
            await server.kill()
            # the data wiped: a new server key, which did not sign the client's token
            server = await ServerProcess.start(tmp_path, tmp_path / "wiped", port)
            await refused.wait()
            assert c.state == "closed" and not c._looping
            assert len(errors) == 1 and isinstance(errors[0], AuthError)
            assert "signature" in str(errors[0]) and "signature" in (c.close_reason or "")
            assert len(disconnects) == 1
            with pytest.raises(ConnectionLost, match="signature"):
                await c.call("send_message", "x")
        await server.kill(signal.SIGTERM)


async def test_cli_subscribe_ends_with_an_error_when_the_server_dies(tmp_path, chat_wasm):  # noqa: F811
    # the CLI's connections do not reconnect: `stdb subscribe` must not wait on forever
    with trio.fail_after(TIMEOUT):
        server = await ServerProcess.start(tmp_path, tmp_path / "data")
        async with connect(url(server.port), "chat", reconnect=False) as c:
            await c.publish(chat_wasm)
        proc = subprocess.Popen(
            [sys.executable, "-m", "stdb", "subscribe", "chat", "SELECT * FROM message", "--server",
             url(server.port), "--credentials", str(tmp_path / "c.json")],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, PYTHONPATH=str(ROOT), STDB_CONFIG_DIR=str(tmp_path / "cfg")))
        try:
            first = await trio.to_thread.run_sync(proc.stderr.readline)
            assert "subscribed" in first, first + proc.stderr.read()
            await server.kill()
            code = await trio.to_thread.run_sync(lambda: proc.wait(timeout=120))
            err = proc.stderr.read()
            assert code != 0 and "the connection ended" in err, err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# ---- the blocking client, against an in-process server stopped and started on the same port


class ThreadServer:
    """An in-process stdb server running in a thread of its own."""

    def __init__(self, data: pathlib.Path, port: int = 0) -> None:
        from stdb.server.server import Server

        self.server = Server(str(data))
        self._started = threading.Event()
        self._box: list = []
        self._thread = threading.Thread(target=trio.run, args=(self._serve, port), daemon=True)
        self._thread.start()
        assert self._started.wait(60), "the server did not start"
        self.port, self._token = self._box

    async def _serve(self, port: int) -> None:
        async with trio.open_nursery() as n:
            self._box[:] = [await n.start(self.server.serve, "127.0.0.1", port),
                            trio.lowlevel.current_trio_token()]
            self._started.set()

    def stop(self) -> None:
        trio.from_thread.run_sync(self.server.stop, trio_token=self._token)
        self._thread.join(60)
        assert not self._thread.is_alive()


def test_blocking_client_reconnects_confirmed_and_close_stops_it(tmp_path, chat_wasm):  # noqa: F811
    data = tmp_path / "data"
    server = ThreadServer(data)
    port = server.port
    dropped, back = threading.Event(), threading.Event()
    running = True
    try:
        with connect_blocking(url(port), "chat", reconnect=False) as owner:
            owner.publish(chat_wasm)
            owner_token = owner.token
        with connect_blocking(url(port), "chat", confirmed=True,
                              reconnect=Reconnect(initial_delay=0.05, max_delay=0.5)) as c:
            assert c.state == "connected"
            identity = c.identity
            c.on_disconnect = lambda reason: dropped.set()
            c.on_reconnect = lambda conn: back.set()
            c.subscribe("SELECT * FROM message")
            assert c.call("send_message", "before").ok
            seen: list = []
            c.on_insert("message", lambda row, ev: seen.append((row[3], ev.offset)))
            server.stop()                                 # 1001: the server is shutting down
            running = False
            assert dropped.wait(60)
            assert c.state == "reconnecting" and "1001" in (c.close_reason or "")
            with pytest.raises(ConnectionLost, match="reconnecting"):
                c.call("send_message", "while down")
            other = ThreadServer(data)                    # a missed insert, through another port
            with connect_blocking(url(other.port), "chat", token=owner_token, reconnect=False) as o:
                assert o.call("send_message", "missed").ok
            other.stop()
            assert not back.is_set()
            server = ThreadServer(data, port)
            running = True
            assert back.wait(60)
            assert c.state == "connected" and c.identity == identity
            assert seen == [("missed", None)]
            assert sorted(r[3] for r in c.rows("message")) == ["before", "missed"]
            # still confirmed: the server holds the connection in confirmed mode
            mine = [x for x in server.server.connections if x.identity == identity]
            assert len(mine) == 1 and mine[0].confirmed
            assert c.call("send_message", "after").ok
            assert ("after", c.query("SELECT COUNT(*) FROM message").rows[0][0]) == ("after", 3)
            # close() while reconnecting stops the retries and the client's thread
            dropped.clear()
            server.stop()
            running = False
            assert dropped.wait(60)
        assert c.state == "closed" and not c._thread.is_alive()
    finally:
        if running:
            server.stop()
