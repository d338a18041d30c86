"""Smoke test of the networked benchmark (bench/network.py, issue 7) at a tiny size.

The Python load generator (no npm needed), 1 and 2 clients for under a second each, a fan-out of
5 subscribers over 2 trials.  The servers and load generators are subprocesses that
bench.network always ends (try/finally), whatever happens here.
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
                      warmup=0.2, confirmed=False, relaxed=False, rounds=1, gap=0.01, say=lambda s: None)
    assert [r["clients"] for r in res["transfer"]] == [1, 2]
    for row in res["transfer"]:
        for kind in ("stdb", "echo"):
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
    md = network.markdown({**res})
    assert "| 1 |" in md and "| 2 |" in md and "Fan-out: 5 of 5" in md
