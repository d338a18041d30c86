"""Smoke test of the networked benchmark (bench/network.py, issues 7 and 9) at a tiny size.

The Python load generator (no npm needed), 1 and 2 clients for under a second each, with the
trio-websocket + SQLite peers (bench/peers.py; the others need programs CI does not have and are
tested in tests/test_bench_peers.py), a fan-out of 5 subscribers over 2 trials.  The servers and
load generators are subprocesses that bench.network always ends (try/finally), whatever happens
here.
"""

from __future__ import annotations

from bench import network
from stdb.protocol import SUBPROTOCOL


def test_subprotocol_matches_stdb():
    # the echo server and the load generators speak the same subprotocol as stdb's server
    assert network.SUBPROTOCOL == SUBPROTOCOL
    with open(network.LOADGEN_DIR + "/load.js") as f:
        assert f"const SUBPROTOCOL = '{SUBPROTOCOL}';" in f.read()


def test_network_benchmark_smoke():
    res = network.run(seconds=0.8, clients=(1, 2), fanout=5, trials=2, accounts=50, loadgen="python",
                      warmup=0.2, confirmed=False, relaxed=False, rounds=1, gap=0.01, peers=("sqlite",),
                      say=lambda s: None)
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
        ("stdb_confirmed", "tarantool"), ("stdb", "echo_stdb")]
    assert all(t["ratio"] is None and t["met"] is None for t in res["targets"])
    assert res["skipped"] == {}
    md = network.markdown({**res})
    assert "| 1 client | 2 clients |" in md and "Fan-out: 5 of 5" in md
    assert "| trio-websocket + SQLite FULL | after the fsync |" in md
    assert "not measured (no 50-client run)" in md
