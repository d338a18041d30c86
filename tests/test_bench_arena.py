"""Smoke test of the arena benchmark (bench/arena.py, bench/loadgen/arena_bots.js) at a tiny size:
a few bots for a couple of seconds against a real ``python -m stdb start`` server.  The result's
shape, ticks committed and seen, and no errors; speed is never asserted (a busy 2-core machine may
miss ticks).  Needs node and bench/loadgen's npm packages, like the other Node load tests."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from bench import arena, network, summary

HAVE_NODE = (shutil.which("node") is not None
             and os.path.isdir(os.path.join(network.LOADGEN_DIR, "node_modules", "ws"))
             and os.path.isdir(os.path.join(network.LOADGEN_DIR, "node_modules", "cbor-x")))


def test_parse_metrics_reads_labelled_and_plain_counters():
    text = ('# HELP stdb_reducer_calls_total Reducer calls by outcome\n'
            '# TYPE stdb_reducer_calls_total counter\n'
            'stdb_reducer_calls_total{database="arena",reducer="tick",status="committed"} 41.0\n'
            'stdb_reducer_calls_total{database="arena",reducer="tick",status="trap"} 2.0\n'
            'stdb_bytes_sent_total 1234.0\n')
    m = arena.parse_metrics(text)
    assert arena.metric(m, "stdb_reducer_calls", database="arena", reducer="tick", status="committed") == 41
    assert arena.metric(m, "stdb_reducer_calls", database="arena", reducer="tick", status="failed") == 0
    assert arena.metric(m, "stdb_bytes_sent") == 1234


@pytest.mark.skipif(not HAVE_NODE, reason="node or bench/loadgen's npm packages (cbor-x, ws) are missing")
def test_arena_benchmark_smoke(tmp_path):
    assert arena.main(["--bots", "3", "--seconds", "2", "--warmup", "0.5", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "arena.json").read_text())
    assert res["tick_hz"] == 20 and res["machine"]["node"]
    [r] = res["runs"]
    assert r["bots"] == 3 and r["errors"] == 0, r["first_errors"]
    # ticks committed (the server's counter) and seen by the bots, each seen by every bot's own
    # player subscription at most once per tick
    assert r["ticks_committed"] > 0 and r["ticks_seen"] > 0 and r["tick_updates"] > 0
    assert r["tick_updates"] <= 3 * (r["ticks_seen"])
    assert 0 <= r["latency_p50_ms"] <= r["latency_p99_ms"] <= r["latency_max_ms"]
    assert r["diff_bytes_per_client_per_tick"] > 0 and r["tick_message_bytes_mean"] > 0
    assert r["server_cpu"] is None or r["server_cpu"] >= 0
    assert "| 3 |" in (tmp_path / "arena.md").read_text()
    rows = summary.arena_rows(res)
    assert [row.area for row in rows] == ["arena"] * 3 and all(row.met is None for row in rows)


def test_arena_summary_rows_judge_the_tick_rate_at_the_target_bot_count():
    def run(bots, rate):
        return {"bots": bots, "tick_rate": rate, "latency_p50_ms": 3.0, "latency_p99_ms": 6.0,
                "latency_max_ms": 9.0, "diff_bytes_per_client_per_tick": 1300.0, "server_cpu": 0.2,
                "errors": 0}
    res = {"tick_hz": 20, "target": {"bots": 200, "tick_rate": 19.5}, "runs": [run(50, 20.0), run(200, 19.2)]}
    rows = summary.arena_rows(res)
    assert [r.met for r in rows] == [None, None, None, False, None, None]
    assert rows[3].target == "≥ 19.5/s" and rows[3].stdb == "19.20" and rows[1].stdb == "3.0 / 6.0 / 9.0 ms"
    res["runs"][1]["tick_rate"] = 19.9
    assert summary.arena_rows(res)[3].met is True
