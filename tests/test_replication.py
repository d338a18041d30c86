"""Replication through NATS JetStream (docs/replication.md), on loopback: three nats-server
processes in one JetStream cluster, a leader and two followers (stdb nodes started with
``--follow``), real clients.

Skipped when nats-server is missing, unless STDB_REQUIRE_NATS=1 (CI sets it)."""

from __future__ import annotations

import os
import pathlib
import signal
import time
import urllib.request
from collections.abc import Iterator

import pytest
import trio

import stdb
from fuzz.cluster import (
    BALANCE,
    Bank,
    NatsCluster,
    Nodes,
    database_caught_up,
    free_ports,
    leader_name,
    nats_server,
    publish_bank,
    rows,
    wait_for,
)
from stdb.client import connect
from stdb.errors import NotLeader, StdbError

ROOT = pathlib.Path(__file__).resolve().parents[1]

if nats_server() is None:
    if os.environ.get("STDB_REQUIRE_NATS") == "1":
        raise RuntimeError("STDB_REQUIRE_NATS=1 but nats-server is not installed "
                           "(apt-get install nats-server)")
    pytest.skip("nats-server is not installed", allow_module_level=True)

@pytest.fixture(scope="module")
def transfer_wasm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("wasm") / "transfer.wasm"
    return pathlib.Path(stdb.build_module(str(ROOT / "examples/transfer/transfer.c"), str(out))).read_bytes()


@pytest.fixture
def cluster(tmp_path: pathlib.Path) -> Iterator[tuple[NatsCluster, Nodes]]:
    with NatsCluster(str(tmp_path)) as nats, Nodes(str(tmp_path), nats.url, lease_ttl=2.0) as nodes:
        yield nats, nodes


def start_three(nodes: Nodes, nats_url: str) -> tuple[str, str, str]:
    nodes.start("a")
    wait_for(lambda: leader_name(nats_url, nodes), what="a leader")
    nodes.start("b")
    nodes.start("c")
    return "a", "b", "c"


def test_followers_serve_the_leaders_diffs_in_order(cluster, transfer_wasm, tmp_path) -> None:
    nats, nodes = cluster
    start_three(nodes, nats.url)
    a, b, c = (nodes.nodes[n] for n in "abc")
    creds = str(tmp_path / "creds")
    seen: dict[str, list] = {}

    async def main() -> None:
        await publish_bank(a.url, creds, transfer_wasm, 8)
        wait_for(lambda: all(database_caught_up(nats.url, n, "bank", 8) for n in "bc"), what="followers")
        async with trio.open_nursery() as n:
            subs = {}
            for name, node in (("a", a), ("b", b), ("c", c)):
                conn = await n.start(_subscriber, node.url, creds, seen.setdefault(name, []))
                subs[name] = conn
            async with connect(a.url, "bank", credentials=creds) as w:
                for k in range(150):
                    src = 2 * (k % 4)
                    out = await w.call("transfer", src, (src + 1 + 2 * ((k // 4) % 3)) % 8, 1 + k)
                    assert out.ok, out
                last = out.offset
            with trio.fail_after(60):
                while not all(seen[x] and seen[x][-1][0] >= last for x in "abc"):
                    await trio.sleep(0.05)
            n.cancel_scope.cancel()
        for node in (b, c):
            assert await rows(node.url, "bank", creds) == await rows(a.url, "bank", creds)
    trio.run(main)
    assert len(seen["a"]) >= 150 * 2
    assert seen["b"] == seen["a"]
    assert seen["c"] == seen["a"]


async def _subscriber(url: str, creds: str, out: list, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    async with connect(url, "bank", credentials=creds) as conn:
        conn.on_insert("account", lambda row, ev: ev.offset is not None and out.append((ev.offset, "+", row)))
        conn.on_delete("account", lambda row, ev: ev.offset is not None and out.append((ev.offset, "-", row)))
        conn.on_update("account", lambda old, new, ev: out.append((ev.offset, "~", old, new)))
        await conn.subscribe("SELECT * FROM account WHERE balance > 0")
        task_status.started(conn)
        await trio.sleep_forever()


def test_a_follower_refuses_writes_naming_the_leader(cluster, transfer_wasm, tmp_path) -> None:
    nats, nodes = cluster
    nodes.start("a")
    wait_for(lambda: leader_name(nats.url, nodes), what="a leader")
    mport = free_ports(1)[0]
    nodes.start("b", "--metrics", f"127.0.0.1:{mport}")
    a, b = nodes.nodes["a"], nodes.nodes["b"]
    creds = str(tmp_path / "creds")

    async def main() -> None:
        await publish_bank(a.url, creds, transfer_wasm, 2)
        wait_for(lambda: database_caught_up(nats.url, "b", "bank", 2), what="the follower")
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=30).read().decode()
        assert 'stdb_replica_lag_records{database="bank"} 0.0' in metrics
        assert 'stdb_replica_lag_seconds{database="bank"}' in metrics
        async with connect(b.url, "bank", credentials=creds) as conn:
            with pytest.raises(NotLeader) as e:
                await conn.call("transfer", 0, 1, 5)
            assert e.value.leader == a.url and a.url in e.value.detail
            with pytest.raises(NotLeader):
                await conn.query("UPDATE account SET balance = 7 WHERE id = 0")
            with pytest.raises(NotLeader):
                await conn.publish(transfer_wasm)
            with pytest.raises(NotLeader):
                await conn.settings({"clients.queries_per_s": 5})
            assert (await conn.settings())["clients.queries_per_s"] == 100    # reading is fine
            # reads work, and nothing changed
            assert sorted((await conn.query("SELECT * FROM account")).rows) == [(0, BALANCE), (1, 0)]
        # the owner deletes the database on the leader: the follower's copy goes too
        async with connect(a.url, "bank", credentials=creds) as conn:
            await conn.delete_database()
        copy = pathlib.Path(b.data) / "databases" / "bank"
        await trio.to_thread.run_sync(lambda: wait_for(lambda: not copy.exists(), what="the copy to go"))
        async with connect(b.url, "bank", credentials=creds) as conn:
            with pytest.raises(StdbError) as e:
                await conn.query("SELECT * FROM account")
            assert e.value.code == "no_such_database"
    trio.run(main)


def _failover(cluster, transfer_wasm, tmp_path, *, kill_nats: bool) -> None:
    nats, nodes = cluster
    start_three(nodes, nats.url)
    creds = str(tmp_path / "creds")
    bank = Bank(nats.url, nodes, creds, clients=4)

    async def main() -> None:
        await publish_bank(nodes.nodes["a"].url, creds, transfer_wasm, 8)
        wait_for(lambda: all(database_caught_up(nats.url, n, "bank", 8) for n in "bc"), what="followers")
        async with trio.open_nursery() as n:
            for i in range(4):
                n.start_soon(bank.client, i)
            with trio.fail_after(60):
                while sum(bank.acked) < 100:
                    await trio.sleep(0.05)
            if kill_nats:
                nats.kill(0)            # a majority (2 of 3) keeps every stream writable
                before = sum(bank.acked)
                with trio.fail_after(60):
                    while sum(bank.acked) < before + 100:
                        await trio.sleep(0.05)
            old = await trio.to_thread.run_sync(lambda: wait_for(lambda: leader_name(nats.url, nodes),
                                                                 what="the leader"))
            nodes.kill(old)                                         # SIGKILL under load
            killed_at = time.monotonic()
            new = await trio.to_thread.run_sync(
                lambda: wait_for(lambda: leader_name(nats.url, nodes, not_=old), what="a new leader"))
            took = time.monotonic() - killed_at
            before = sum(bank.acked)
            with trio.fail_after(60):
                while sum(bank.acked) < before + 100:               # the new leader takes writes
                    await trio.sleep(0.05)
            nodes.start(old)                                        # the old leader returns: it follows
            with trio.fail_after(60):
                while sum(bank.acked) < before + 200:
                    await trio.sleep(0.05)
            bank.stop = True
        assert took < 20, f"failover took {took:.1f} s"
        print(f"failover to {new} in {took:.2f} s; acked {sum(bank.acked)}, unknown {sum(bank.unknown)}")
        final = dict(await rows(nodes.nodes[new].url, "bank", creds))
        bank.check(final)
        # every node converges on the new leader's state, the returned one included
        async with connect(nodes.nodes[new].url, "bank", credentials=creds) as w:
            last = (await w.call("create_account", 1000, 1)).offset
        for name in "abc":
            await trio.to_thread.run_sync(
                lambda name=name: wait_for(lambda: database_caught_up(nats.url, name, "bank", last),
                                           what=f"node {name} to catch up"))
            assert dict(await rows(nodes.nodes[name].url, "bank", creds)) == {**final, 1000: 1}
    trio.run(main)


def test_failover_under_confirmed_load_loses_no_acknowledged_transfer(
        cluster, transfer_wasm, tmp_path) -> None:
    _failover(cluster, transfer_wasm, tmp_path, kill_nats=False)


def test_failover_with_a_nats_server_down(cluster, transfer_wasm, tmp_path) -> None:
    _failover(cluster, transfer_wasm, tmp_path, kill_nats=True)


def test_a_returning_leader_rewinds_what_the_stream_never_took(transfer_wasm, tmp_path) -> None:
    """With ``--confirm local``, the leader commits (fsync'd, its confirmed client answered)
    while every NATS server is frozen, so nothing more reaches the stream; then it dies.  The new
    leader writes other commits at the same offsets.  The old leader, restarted, finds its log
    differs from the stream, rewinds it and converges on the new leader's state: the commits
    only it had are gone, as docs/replication.md says of local mode."""
    with NatsCluster(str(tmp_path)) as nats, Nodes(str(tmp_path), nats.url, confirm="local") as nodes:
        _rewind(nats, nodes, transfer_wasm, tmp_path)


def _rewind(nats: NatsCluster, nodes: Nodes, transfer_wasm: bytes, tmp_path: pathlib.Path) -> None:
    nodes.start("a")
    wait_for(lambda: leader_name(nats.url, nodes), what="a leader")
    nodes.start("b")
    creds = str(tmp_path / "creds")
    a, b = nodes.nodes["a"], nodes.nodes["b"]

    async def main() -> None:
        await publish_bank(a.url, creds, transfer_wasm, 2)
        wait_for(lambda: database_caught_up(nats.url, "b", "bank", 2), what="the follower")
        for p in nats.procs:
            assert p is not None
            p.send_signal(signal.SIGSTOP)
        try:
            async with connect(a.url, "bank", credentials=creds, confirmed=True) as conn:   # fsync'd
                for _ in range(5):
                    assert (await conn.call("transfer", 0, 1, 1000)).ok
        finally:
            nodes.kill("a")
            for p in nats.procs:
                assert p is not None
                p.send_signal(signal.SIGCONT)
        await trio.to_thread.run_sync(lambda: wait_for(lambda: leader_name(nats.url, nodes, not_="a"),
                                                       what="b to lead"))
        async with connect(b.url, "bank", credentials=creds) as conn:
            for _ in range(7):
                assert (await conn.call("transfer", 0, 1, 1)).ok
            last = (await conn.call("transfer", 0, 1, 1)).offset
        nodes.start("a")
        await trio.to_thread.run_sync(lambda: wait_for(
            lambda: database_caught_up(nats.url, "a", "bank", last), what="a to catch up"))
        final = await rows(b.url, "bank", creds)
        assert await rows(a.url, "bank", creds) == final
        # b's eight transfers; of a's five, at most the one whose publish was already in a NATS
        # server's socket when it froze reached the stream (the publisher waits for each ack)
        assert final in ([(0, BALANCE - 8), (1, 8)], [(0, BALANCE - 1008), (1, 1008)]), final
    trio.run(main)
    assert "rewinding it" in nodes.log("a")


def test_failover_torture_short(tmp_path) -> None:
    """A few rounds of fuzz/replication_torture.py (its long run is a command of its own)."""
    from fuzz.replication_torture import run
    stats = run(3, str(tmp_path), seed=2611, verbose=False)
    assert stats["rounds"] == 3 and stats["acked"] > 0
    assert stats["leader_kills"] + stats["graceful"] + stats["nats_kills"] == 3


def test_a_publisher_is_fenced_when_another_node_appended(tmp_path) -> None:
    """The expected-last-sequence check: once anything else is in the stream, the leader's next
    publish is refused, it is told (on_fenced), and waiters get ReplicationError."""
    import nats as nats_py

    from stdb.errors import ReplicationError
    from stdb.replication import wire
    from stdb.replication.bridge import AsyncioThread
    from stdb.replication.publisher import Publisher
    from stdb.storage import logformat as lf

    rec0 = lf.encode_record(lf.LogRecord(0, 1, caller=None, reducer="r", args=b""))
    rec1 = lf.encode_record(lf.LogRecord(1, 2, caller=None, reducer="r", args=b""))
    with NatsCluster(str(tmp_path), size=1) as cluster:
        bridge = AsyncioThread()
        fenced: list[str] = []

        async def setup() -> tuple:
            nc = await nats_py.connect(cluster.url)
            js = nc.jetstream()
            await js.add_stream(name=wire.stream_name("db"), subjects=[wire.subject("db")])
            pub = Publisher(bridge, js, "db", expected_seq=0, replicated_offset=-1, term=1,
                            max_payload=nc.max_payload, lease_ok=lambda: True, on_fenced=fenced.append)
            pub.start()
            return nc, js, pub
        nc, js, pub = bridge.submit(setup()).result(30)
        pub.written([(lf.offset_key(0), rec0)])
        pub.wait(0, timeout=30)                           # acknowledged: in the stream
        # another writer appends (a new leader would)
        other = js.publish(wire.subject("db"), b"someone else's", headers={wire.KIND: "log"})
        bridge.submit(other).result(30)
        pub.written([(lf.offset_key(1), rec1)])
        with pytest.raises(ReplicationError, match="stopped replicating"):
            pub.wait(1, timeout=30)
        assert fenced and "did not write" in fenced[0]
        info = bridge.submit(js.stream_info(wire.stream_name("db"))).result(30)
        assert info.state.messages == 2                   # rec1 was not stored
        bridge.submit(nc.close()).result(30)
        bridge.stop()
