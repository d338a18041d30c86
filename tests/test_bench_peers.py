"""The networked benchmark's peers (bench/peers.py, issue 9): each does the transfer right.

The trio-websocket + SQLite server runs everywhere: transfers over the websocket through the
Python client path (bench/network.py's ``_ws`` and the Python load generator), their answers and
the balances left in the database file.  The Tarantool, Redis and Node-echo checks are skipped
where those programs are not installed (``bash bench/setup.sh`` installs them).  Speed is never
asserted.  Every server is a subprocess the test stops in ``finally``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from typing import Any

import cbor2
import pytest
import trio

from bench import network, peers


def _bench(tmp: Any, accounts: int, seconds: float = 0.5, warmup: float = 0.2) -> network.Bench:
    return network.Bench(str(tmp), None, None, accounts, seconds, warmup, "python")


def _stop(b: network.Bench) -> None:
    for sp in b.servers:
        sp.stop()


async def _calls(url: str, calls: list[tuple[str, list]]) -> list[dict]:
    """Each call in turn on one connection; the answers (matched by request_id)."""
    answers = []
    async with trio.open_nursery() as n:
        ws = await network._ws(n, url)
        for rid, (reducer, args) in enumerate(calls, start=7):
            await ws.send_message(network._call(rid, reducer, args))
            msg = cbor2.loads(await ws.get_message())
            assert msg["request_id"] == rid
            answers.append(msg)
        await ws.aclose()
        n.cancel_scope.cancel()
    return answers


def _balances(path: str) -> dict[int, int]:
    con = sqlite3.connect(path)
    try:
        return dict(con.execute("SELECT id, balance FROM account ORDER BY id").fetchall())
    finally:
        con.close()


def test_sqlite_server_transfers(tmp_path):
    b = _bench(tmp_path, 4)
    try:
        sp = peers.sqlite_server(b, "FULL", balance=100)
        sp.wait_ready()
        answers = trio.run(_calls, sp.url(), [
            ("transfer", [1, 2, 30]),          # committed
            ("transfer", [2, 1, 500]),         # 2 has 130
            ("transfer", [1, 9, 1]),           # no account 9
            ("transfer", [1, 2, 0]),
            ("transfer", [2, 3, 130]),         # all of it: committed
            ("transfer", [4, 4, 100]),         # to itself: committed, nothing changes
            ("nope", [1, 2, 3]),
            ("transfer", [1, 2]),
        ])
        assert [a["type"] for a in answers] == ["TransactionUpdate"] * 6 + ["Error"] * 2
        assert [a["status"] for a in answers[:6]] == ["committed", "failed", "failed", "failed", "committed",
                                                      "committed"]
        assert [a["message"] for a in answers[:6]] == [None, "insufficient funds", "no such account",
                                                       "amount must be positive", None, None]
        assert [a["offset"] for a in answers[:6]] == [1, None, None, None, 2, 3]
        assert all(a["reducer"] == "transfer" and a["updates"] == [] for a in answers[:6])
        assert [a["code"] for a in answers[6:]] == ["reducer_error", "data_error"]
        sp.stop()                                 # SIGTERM: closes the database
        assert sp.proc.returncode == 0, network._tail(sp.log)
        assert _balances(peers.sqlite_db(b, "FULL")) == {1: 70, 2: 0, 3: 230, 4: 100}
    finally:
        _stop(b)


def test_sqlite_server_under_load_keeps_the_money(tmp_path):
    # the Python load generator's closed loop against the NORMAL server: every call committed, and
    # the total balance is what it was
    b = _bench(tmp_path, 30)
    try:
        sp = peers.sqlite_server(b, "NORMAL")
        sp.wait_ready()
        r = b.ws_load(sp, 3)
        assert r["errors"] == 0, r["first_errors"]
        assert r["messages"] > 0 and r["clients"] == 3
        sp.stop()
        bal = _balances(peers.sqlite_db(b, "NORMAL"))
        assert len(bal) == 30 and sum(bal.values()) == 30 * network.BALANCE
        assert any(v != network.BALANCE for v in bal.values())
        mode = sqlite3.connect(peers.sqlite_db(b, "NORMAL")).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
    finally:
        _stop(b)


def test_sqlite_bank_refuses_a_bad_synchronous(tmp_path):
    with pytest.raises(ValueError):
        peers.SqliteBank(str(tmp_path / "x.sqlite"), "OFF")


@pytest.mark.skipif(shutil.which("tarantool") is None, reason="tarantool not installed (bash bench/setup.sh)")
def test_tarantool_peer(tmp_path):
    b = _bench(tmp_path, 20)
    try:
        sp = peers.tarantool_server(b, balance=1000)
        sp.wait_ready()
        for fn in ("transfer", "noop"):
            r = peers.tarantool_load(b, sp, 2, fn)
            assert r["errors"] == 0, r["first_errors"]
            assert r["messages"] > 0 and r["clients"] == 2 and r["loadgen"] == "net.box"
            assert r["p50_us"] <= r["p99_us"]
        tarantool = pytest.importorskip("tarantool")
        conn = tarantool.connect("127.0.0.1", sp.port)
        try:
            before = {t[0]: t[1] for t in conn.select("account")}
            with pytest.raises(tarantool.DatabaseError, match="insufficient funds"):
                conn.call("transfer", [1, 2, 10**6])
            with pytest.raises(tarantool.DatabaseError, match="no such account"):
                conn.call("transfer", [1, 99, 1])
            conn.call("transfer", [3, 4, 5])
            after = {t[0]: t[1] for t in conn.select("account")}
        finally:
            conn.close()
        assert len(before) == 20 and sum(before.values()) == 20 * 1000
        assert after == {**before, 3: before[3] - 5, 4: before[4] + 5}
    finally:
        _stop(b)


@pytest.mark.skipif(shutil.which("tarantool") is None, reason="tarantool not installed (bash bench/setup.sh)")
def test_tarantool_pipelined_cases(tmp_path):
    # the pipelined, skewed case's Tarantool peer: its own server with the shape's accounts, net.box
    # fibers sharing each connection (--inflight), both accounts Zipf (--zipf); no money lost
    b = _bench(tmp_path, 20)
    shape = network.Pipelined(connections=2, inflight=5, alpha=1.5, accounts=300)
    try:
        found, skipped = peers.pipelined_cases(b, ("tarantool", "ceilings"), shape, say=lambda s: None)
        assert [c.key for c in found] == ["tarantool", "netbox_ceiling"]
        assert list(skipped) == ["node_ceiling"]              # the Python load generator has none
        assert [sp.kind for sp in b.servers] == ["tarantool-pipelined"]
        for case in found:
            r = case.measure(shape.connections)
            assert r["errors"] == 0, r["first_errors"]
            assert (r["loadgen"], r["clients"], r["inflight"], r["zipf"]) == ("net.box", 2, 5, 1.5)
            assert r["messages"] > 0 and 0 < r["p50_us"] <= r["p99_us"]
            assert 0.45 < r["account1_share"] < 0.9                 # P(rank 1) ≈ 0.4 at α 1.5 over 300
        u = peers.tarantool_load(b, b.servers[0], 2, "transfer", inflight=3)    # uniform over 20
        assert u["errors"] == 0 and (u["inflight"], u["zipf"]) == (3, 0) and u["account1_share"] < 0.3
        tarantool = pytest.importorskip("tarantool")
        conn = tarantool.connect("127.0.0.1", b.servers[0].port)
        try:
            rows = {t[0]: t[1] for t in conn.select("account")}
        finally:
            conn.close()
        assert len(rows) == 300 and sum(rows.values()) == 300 * network.BALANCE
        assert rows[1] != network.BALANCE                             # the hot account moved
    finally:
        _stop(b)


@pytest.mark.skipif(shutil.which("redis-server") is None or shutil.which("redis-benchmark") is None,
                    reason="redis-server / redis-benchmark not installed (bash bench/setup.sh)")
def test_redis_peer(tmp_path):
    redis = pytest.importorskip("redis")
    b = _bench(tmp_path, 20)
    try:
        rp = peers.RedisPeer(b, balance=1000)
        rp.server.wait_ready()
        rp.setup(20)
        for sha in (rp.transfer_sha, rp.noop_sha):
            r = rp.load(b, 2, sha)
            assert r["errors"] == 0 and r["messages"] >= r["requests"] > 0
            assert r["loadgen"] == "redis-benchmark" and 0 < r["p50_us"] <= r["p99_us"]
        keys = [peers.redis_key(i) for i in range(20)]
        before = [int(x) for x in rp.client.mget(keys)]
        assert sum(before) == 20 * 1000
        with pytest.raises(redis.ResponseError, match="insufficient funds"):
            rp.client.evalsha(rp.transfer_sha, 2, keys[0], keys[1], 10**6)
        with pytest.raises(redis.ResponseError, match="no such account"):
            rp.client.evalsha(rp.transfer_sha, 2, keys[0], "acc:nope", 1)
        assert rp.client.evalsha(rp.transfer_sha, 2, keys[2], keys[3], 5) == 1
        after = [int(x) for x in rp.client.mget(keys)]
        assert after == before[:2] + [before[2] - 5, before[3] + 5] + before[4:]
        assert rp.client.config_get("appendfsync") == {"appendfsync": "always"}
    finally:
        _stop(b)


@pytest.mark.skipif(shutil.which("node") is None
                    or not os.path.isdir(os.path.join(network.LOADGEN_DIR, "node_modules", "ws")),
                    reason="node or bench/loadgen's npm packages not installed (bash bench/setup.sh)")
def test_node_echo_ceiling_server(tmp_path):
    b = _bench(tmp_path, 10)
    b.loadgen = "node"
    try:
        sp = b.start(network.ServerProcess("node-echo", [], b.tmp, None,
                                           cmd=lambda port: ["node", peers.NODE_ECHO, str(port)]))
        sp.wait_ready()
        r = b.ws_load(sp, 2)
        assert r["errors"] == 0, r["first_errors"]
        assert r["messages"] > 0 and r["loadgen"] == "node"
        r = b.ws_load(sp, 2, inflight=7, zipf=1.5, accounts=1000)    # the pipelined case's shape
        assert r["errors"] == 0, r["first_errors"]
        assert r["messages"] > 0 and (r["inflight"], r["zipf"]) == (7, 1.5)
        assert 0.45 < r["account1_share"] < 0.9
    finally:
        _stop(b)
