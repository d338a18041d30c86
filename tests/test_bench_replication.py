"""Smoke test of the replication benchmark (bench/replication.py, issue 26) at a tiny size.

A standalone server, then three nats-servers with a leader and two followers: 10 clients for 2 s
per load (not confirmed and confirmed, then the leader alone with its followers stopped), the lag
probe on every node, and a fan-out of 30 subscribers over 3 trials, all on the leader and then
spread over the three nodes.  Needs nats-server and node with bench/loadgen's packages (CI has
both: .ci/run installs nats-server, bench/setup.sh the packages).  Every process is one that
bench.replication ends whatever happens; speed is never asserted.
"""

from __future__ import annotations

import os
import shutil

import pytest

from bench import replication
from bench.network import LOADGEN_DIR
from fuzz.cluster import nats_server

_HAVE_NODE = shutil.which("node") is not None and \
    os.path.isdir(os.path.join(LOADGEN_DIR, "node_modules", "cbor-x"))

pytestmark = [
    pytest.mark.skipif(nats_server() is None and os.environ.get("STDB_REQUIRE_NATS") != "1",
                       reason="nats-server is not installed"),
    pytest.mark.skipif(not _HAVE_NODE, reason="node or bench/loadgen's packages not installed"),
]


def _check_load(x: dict) -> None:
    assert x["errors"] == 0, x["first_errors"]
    assert x["messages"] > 0 and x["msg_per_s"] > 0
    assert 0 < x["p50_us"] <= x["p99_us"]
    assert x["server_cpu_us_per_call"] > 0 and x["cpu_cores"]["machine"] > 0
    assert any(w is not None and w >= 0 for w in x["cpu_waiting"].values())
    assert x["probe_errors"] == [] and x["samples"] > 0
    assert x["caught_up_after_s"] is not None


def test_replication_benchmark_smoke():
    res = replication.run(seconds=2, clients=10, accounts=200, fanout_clients=30, trials=3, confirmed=True,
                          warmup=0.5, say=lambda s: None)
    sa, cl = res["standalone"], res["cluster"]
    for key in ("not_confirmed", "confirmed"):
        _check_load(sa[key])
        assert sa[key]["lag"] == {}                          # one server: no follower
    assert sa["log_tracebacks"] == 0
    for key in ("not_confirmed", "confirmed"):
        x = cl[key]
        _check_load(x)
        assert x["leader_after"] == ["a"]
        assert set(x["commit_to_diff"]) == {"a", "b", "c"}
        for f in ("b", "c"):
            lag = x["lag"][f]
            # every commit the leader's subscriber got reached the follower's too
            assert lag["samples"] == x["samples"] and lag["missing"] == 0
            assert lag["p50_ms"] <= lag["p99_ms"] <= lag["max_ms"]
            assert len(lag["per_second_max_ms"]) >= 1
            st = x["status"][f]
            assert st["messages"] > 0 and st["records"] >= x["messages"]   # each call one record at least
            assert st["lag_ms_p50"] is not None and st["lag_ms_p50"] <= st["lag_ms_p99"]
    alone = cl["leader_alone"]
    _check_load(alone)
    assert alone["lag"] == {} and alone["cpu_cores"]["b"] is None      # the followers are gone
    fo = res["fanout"]
    assert fo["idle_cpu_cores"]["a"] is not None
    for key, nodes in (("leader_only", ["a"]), ("spread", ["a", "b", "c"])):
        f = fo[key]
        assert f["errors"] == 0, f["first_errors"]
        assert f["subscribed"] == 30 and f["delivered_min"] == 30 and len(f["times_ms"]) == 3
        assert [p["node"] for p in f["per_url"]] == nodes
        assert sum(p["subscribed"] for p in f["per_url"]) == 30
        assert all(p["deliveries"] == 3 * p["subscribed"] for p in f["per_url"])
        assert 0 < f["delivery_p50_ms"] <= f["delivery_p99_ms"] <= f["max_ms"]
        assert f["leader_cpu_ms_per_trial"] >= 0        # (CPU time in 10 ms ticks: maybe 0 at this size)
    assert [p["subscribed"] for p in fo["spread"]["per_url"]] == [10, 10, 10]
    assert set(res["ratios"]) >= {f"{k}_calls_leader_vs_standalone"
                                  for k in ("not_confirmed", "confirmed", "leader_alone")}
    assert res["leader_at_end"] == ["a"]
    assert res["node_log_tracebacks"] == {"a": 0, "b": 0, "c": 0}
    md = replication.markdown(res)
    assert "| leader of 3 | after the fsync and JetStream's quorum |" in md
    assert "| leader, followers stopped | at commit |" in md
    assert "| spread over 3 nodes | all | 30 |" in md
    assert "Every call answered `committed`: yes; the leader at the end: a;" in md
