"""Smoke test of the networked benchmark (bench/network.py, issues 7 and 9) at a tiny size.

The Python load generator (no npm needed), 1 and 2 clients for under a second each, with the
trio-websocket + SQLite peers (bench/peers.py; the others need programs CI does not have and are
tested in tests/test_bench_peers.py), a fan-out of 5 subscribers over 2 trials.  Then the
pipelined, skewed case (a few connections with several calls in flight, Zipf accounts) and the
isolation case (database A looping until its limit while clients call database B) on their own,
and load.js's pipelined mode against stdb when node is installed.  The servers and load
generators are subprocesses that bench.network always ends (try/finally), whatever happens here;
speed is never asserted.
"""

from __future__ import annotations

import os
import random
import shutil

import pytest
import trio

import stdb
from bench import network
from stdb.protocol import SUBPROTOCOL

HAVE_NODE = (shutil.which("node") is not None
             and os.path.isdir(os.path.join(network.LOADGEN_DIR, "node_modules", "ws")))


def test_subprotocol_matches_stdb():
    # the echo server and the load generators speak the same subprotocol as stdb's server
    assert network.SUBPROTOCOL == SUBPROTOCOL
    with open(network.LOADGEN_DIR + "/load.js") as f:
        assert f"const SUBPROTOCOL = '{SUBPROTOCOL}';" in f.read()


def test_network_benchmark_smoke():
    res = network.run(seconds=0.8, clients=(1, 2), fanout=5, trials=2, accounts=50, loadgen="python",
                      warmup=0.2, confirmed=False, relaxed=False, rounds=1, gap=0.01, peers=("sqlite",),
                      say=lambda s: None, pipelined=None, isolation=0)
    assert [r["clients"] for r in res["transfer"]] == [1, 2]
    kinds = ("stdb", "echo", "echo_stdb", "sqlite_full", "sqlite_normal")
    for row in res["transfer"]:
        for kind in kinds:
            r = row[kind]
            assert r["clients"] == row["clients"]
            assert r["messages"] > 0 and r["msg_per_s"] > 0 and r["seconds"] > 0.5
            assert 0 < r["p50_us"] <= r["p99_us"]
            assert r["errors"] == 0, r["first_errors"]       # every transfer answered "committed"
            assert r["server_cpu"] is None or r["server_cpu"] > 0
        assert row["ratio"] > 0
    f = res["fanout"]
    assert f["subscribed"] == 5 and f["delivered_min"] == 5 and f["errors"] == 0, f["first_errors"]
    assert len(f["times_ms"]) == 2 and 0 < f["median_ms"] <= f["max_ms"]
    assert f["caller_median_ms"] > 0
    assert res["target"]["ratio_at_50_clients"] is None        # no 50-client case at this size
    assert not any(res["server_log_tracebacks"].values()), res["server_log_tracebacks"]
    # the per-case totals a summary reads, and the targets (none measurable without 50 clients)
    assert set(res["cases"]) == set(kinds) == set(res["case_info"])
    for kind in kinds:
        assert [e["clients"] for e in res["cases"][kind]] == [1, 2]
        for e in res["cases"][kind]:
            assert set(e) >= {"msg_per_s", "p50_us", "p99_us", "errors", "server_cpu", "loadgen_cpu"}
            assert e["errors"] == 0 and e["msg_per_s"] > 0
            assert e["client_bound"] is None                   # no ceiling for the Python load generator
    assert [(t["case"], t["versus"]) for t in res["targets"]] == [
        ("stdb", "tarantool"), ("stdb", "echo"), ("stdb_confirmed", "sqlite_full"),
        ("stdb_confirmed", "tarantool"), ("stdb", "echo_stdb"), ("stdb", "tarantool"),
        ("isolation_looping", "isolation_idle")]
    assert all(t["ratio"] is None and t["met"] is None for t in res["targets"])
    assert res["pipelined"] is None and res["isolation"] is None
    assert res["config"]["sections"] == ["sweep", "fanout"]
    assert res["skipped"] == {}
    md = network.markdown({**res})
    assert "| 1 client | 2 clients |" in md and "Fan-out: 5 of 5" in md
    assert "| trio-websocket + SQLite FULL | after the fsync |" in md
    assert "not measured (no 50-client run)" in md
    assert "* 64 × 40 zipf: stdb vs Tarantool net.box: not measured (the pipelined case not run)" in md
    assert "* isolation: B's p99 while A loops: not measured (the isolation case not run)" in md


def test_zipf_sampling():
    # rank k = account k with P(k) ∝ 1 / k^α: the head's share is 1 / H(n, α); every draw in 1..n
    n, alpha, draws = 1000, 1.5, 40_000
    draw = network.zipf_sampler(n, alpha, random.Random(1))
    got = [draw() for _ in range(draws)]
    assert min(got) >= 1 and max(got) <= n
    h = sum(k ** -alpha for k in range(1, n + 1))
    for k in (1, 2, 3):
        assert abs(got.count(k) / draws - k ** -alpha / h) < 0.01
    assert [draw() for _ in range(5)] != [draw() for _ in range(5)]
    again = network.zipf_sampler(n, alpha, random.Random(1))
    assert [again() for _ in range(100)] == got[:100]              # deterministic for a seed
    # pairs: from != to, both ends skewed; uniform pairs as before (the same sequence for a seed)
    pair = network.account_pairs(n, alpha, random.Random(2))
    pairs = [pair() for _ in range(10_000)]
    assert all(a != b and 1 <= a <= n and 1 <= b <= n for a, b in pairs)
    share = sum(1 in p for p in pairs) / len(pairs)
    assert 0.5 < share < 0.8, share
    uniform = network.account_pairs(5, 0.0, random.Random(3))
    assert all(a != b and 1 <= a <= 5 and 1 <= b <= 5 for a, b in (uniform() for _ in range(1000)))
    with pytest.raises(ValueError):
        network.account_pairs(1, 1.5, random.Random(4))


def test_pipelined_case_smoke():
    shape = network.Pipelined(connections=3, inflight=4, alpha=1.5, accounts=200)
    res = network.run(seconds=0.8, clients=(), fanout=0, accounts=20, loadgen="python", warmup=0.2, rounds=1,
                      peers=(), say=lambda s: None, sweep=False, pipelined=shape, isolation=0)
    p = res["pipelined"]
    assert (p["connections"], p["inflight"], p["alpha"], p["accounts"]) == (3, 4, 1.5, 200)
    assert p["setup_seconds"] > 0 and list(p["cases"]) == ["stdb"] == list(p["case_info"])
    r = p["cases"]["stdb"]
    assert r["errors"] == 0, r["first_errors"]
    assert (r["clients"], r["inflight"], r["zipf"]) == (3, 4, 1.5)
    assert r["messages"] > 0 and 0 < r["p50_us"] <= r["p99_us"] and r["seconds"] > 0.5
    assert 0.45 < r["account1_share"] < 0.9                    # P(rank 1) ≈ 0.4 at α 1.5 over 200
    t = next(t for t in res["targets"] if t.get("section") == "pipelined")
    assert t["stdb"] == r["msg_per_s"] and t["ratio"] is None and t["met"] is None
    assert t["unmeasured"] == "Tarantool not run"
    assert res["transfer"] == [] and res["fanout"] is None and res["isolation"] is None
    assert res["config"]["sections"] == ["pipelined"]
    assert not any(res["server_log_tracebacks"].values()), res["server_log_tracebacks"]
    md = network.markdown(res)
    assert "Pipelined, skewed transfers" in md and "3 connections × 4 calls in flight" in md
    assert "| stdb durable | at commit, before its group's fsync | python | **" in md
    assert "* 3 × 4 zipf: stdb vs Tarantool net.box: not measured (Tarantool not run)" in md


def test_isolation_case_smoke():
    res = network.run(seconds=1.5, clients=(), fanout=0, accounts=20, loadgen="python", warmup=0.2, rounds=1,
                      peers=(), say=lambda s: None, sweep=False, pipelined=None, isolation=2)
    iso = res["isolation"]
    limits = stdb.Limits()
    assert iso["limits"] == {"fuel": limits.fuel, "time_s": limits.time}
    assert (iso["clients"], iso["accounts"], iso["database_a"], iso["database_b"]) == (2, 20, "loop", "bank")
    for key in ("idle", "looping"):
        r = iso[key]
        assert r["errors"] == 0, r["first_errors"]           # B's calls all committed, A looping or not
        assert r["messages"] > 0 and 0 < r["p50_us"] <= r["p99_us"] and r["clients"] == 2
    # A's loop calls: each ended by a limit (never committed), back to back over B's window
    assert iso["a_loop_calls"] >= 1 and len(iso["a_loop_ms"]) == iso["a_loop_calls"]
    assert set(iso["a_loop_statuses"]) <= {"out_of_fuel", "timeout"}, iso["a_loop_statuses"]
    assert set(iso["a_stopped_by"]) <= {"fuel", "time"} and iso["a_stopped_by"]
    assert iso["a_loop_message"] and iso["a_loop_ms_median"] > 10
    assert iso["a_busy_share"] > 0.5
    assert 0 <= iso["a_loops_in_window"] <= iso["a_loop_calls"]
    t = next(t for t in res["targets"] if t.get("section") == "isolation")
    assert t["stdb"] == iso["looping"]["p99_us"] and t["baseline_value"] == iso["idle"]["p99_us"]
    assert t["met"] is (t["stdb"] <= 10_000) and t["target"] == "≤ 10 ms"
    assert res["config"]["sections"] == ["isolation"]
    assert not any(res["server_log_tracebacks"].values()), res["server_log_tracebacks"]
    md = network.markdown(res)
    assert "Isolation: one stdb server" in md and "| A looping | **" in md
    assert "* isolation: B's p99 while A loops: " in md and "want ≤ 10 ms" in md


def test_cli_refuses_unknown_parts(capsys):
    with pytest.raises(SystemExit):
        network.main(["--only", "pipelined,bogus"])
    assert "unknown parts: bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        network.main(["--only", "pipelined", "--pipelined-inflight", "0"])


@pytest.mark.skipif(not HAVE_NODE,
                    reason="node or bench/loadgen's npm packages not installed (bash bench/setup.sh)")
def test_node_load_pipelined_against_stdb(tmp_path):
    # load.js --inflight --zipf against a real stdb: answers matched by request_id, all committed,
    # and the money is all still there
    b = network.Bench(str(tmp_path), None, None, 100, 0.8, 0.2, "node")
    try:
        sp = b.start(network.ServerProcess("stdb", ["--data", str(tmp_path / "data")], b.tmp, None))
        sp.wait_ready()
        with open(stdb.build_module(network.TRANSFER_C, str(tmp_path / "t.wasm")), "rb") as f:
            trio.run(network.setup_stdb, sp.url(), f.read(), 100)
        r = b.ws_load(sp, 3, inflight=6, zipf=1.5)
        assert r["errors"] == 0, r["first_errors"]
        assert (r["loadgen"], r["clients"], r["inflight"], r["zipf"]) == ("node", 3, 6, 1.5)
        assert r["messages"] > 0 and 0 < r["p50_us"] <= r["p99_us"]
        assert 0.45 < r["account1_share"] < 0.9
        u = b.ws_load(sp, 2)                                    # the defaults: closed loop, uniform
        assert u["errors"] == 0 and (u["inflight"], u["zipf"]) == (1, 0) and u["account1_share"] < 0.2
        rows = trio.run(_query, sp.url(), "SELECT * FROM account")
        assert len(rows) == 100 and sum(row[1] for row in rows) == 100 * network.BALANCE
        assert rows[0][0] == 1 and rows[0][1] != network.BALANCE    # the hot account moved
    finally:
        for s in b.servers:
            s.stop()


async def _query(url: str, sql: str) -> list:
    import cbor2
    async with trio.open_nursery() as n:
        ws = await network._ws(n, url)
        await ws.send_message(cbor2.dumps({"type": "OneOffQuery", "request_id": 1, "sql": sql}))
        msg = cbor2.loads(await ws.get_message())
        await ws.aclose()
        n.cancel_scope.cancel()
    assert msg["type"] == "OneOffQueryResult", msg
    return sorted(msg["rows"])


@pytest.mark.skipif(not HAVE_NODE,
                    reason="node or bench/loadgen's npm packages not installed (bash bench/setup.sh)")
def test_the_fanout_floor_against_echo_js(tmp_path):
    # load.js's fan-out mode against echo.js (the floor the fan-out row is compared with): every
    # subscriber hears every trial's broadcast, and the caller its answer
    b = network.Bench(str(tmp_path), None, None, 10, 0.8, 0.2, "node")
    try:
        node = network.ensure_node()
        sp = b.start(network.ServerProcess("node-echo", [], b.tmp, None,
                                           cmd=lambda port: [node, network.NODE_ECHO, str(port)]))
        sp.wait_ready()
        r = network.run_load("node", sp.url(), 20, 0, "fanout", 10, warmup=0, trials=3, gap=0.01, tmp=b.tmp)
        assert r["errors"] == 0, r["first_errors"]
        assert (r["subscribed"], r["delivered_min"], r["trials"]) == (20, 20, 3)
        assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"]
        # the transfer mode is unchanged: answered at once, no broadcast to a non-subscriber
        t = b.ws_load(sp, 2)
        assert t["errors"] == 0 and t["messages"] > 0
    finally:
        for s in b.servers:
            s.stop()
