"""Smoke test of the load and soak command (bench/soak.py, issue 8) at a tiny size.

20 subscribers on 10 hot accounts and a few transfers a second for a few seconds, through the
Python load generator (and the Node one when node and bench/loadgen's packages are installed):
every call committed, every diff of every transfer delivered to every subscriber of the accounts
it touched (matched by commit offset, so each has a latency), the server's RSS sampled.  The
server and the load generator are subprocesses that bench.soak always ends.
"""

from __future__ import annotations

import os
import shutil

import pytest

from bench import soak
from bench.network import LOADGEN_DIR


def _check(res: dict, seconds: float, rate: float, clients: int) -> None:
    ld = res["load"]
    assert ld["errors"] == 0 and ld["reconnects"] == 0, ld["first_errors"]
    assert ld["subscribed"] == clients
    assert ld["calls_sent"] >= 0.8 * seconds * rate
    assert ld["calls_committed"] == ld["calls_answered"] == ld["calls_sent"]
    assert ld["calls_unanswered"] == 0
    # every transfer's diffs reached every subscriber of the hot accounts it touched, in order
    assert ld["diffs_expected"] > 0
    assert ld["diffs_delivered"] == ld["diffs_expected"]
    assert ld["diffs_missing"] == ld["diffs_unmatched"] == ld["diff_mismatches"] == 0
    assert 0 < ld["diff_p50_ms"] <= ld["diff_p99_ms"] <= ld["diff_max_ms"]
    assert 0 < ld["call_p50_ms"] <= ld["call_max_ms"]
    r = res["rss"]
    assert r["samples"] >= 3 and len(res["rss_samples"]) >= r["samples"]
    assert 0 < r["start"] <= r["max"] and r["end"] <= r["max"]
    assert r["bounded"] is True
    assert r["fds_max"] >= clients        # (the last sample may fall as the clients close)
    assert res["server_alive"] and res["server_log"]["tracebacks"] == 0
    assert res["progress"] and res["progress"][0]["committed"] > 0
    per_second = ld["per_second"]
    assert sum(per_second["diffs"]) == ld["diffs_delivered"]
    assert max(per_second["max_ms"]) == pytest.approx(ld["diff_max_ms"], abs=0.01)
    assert res["stalls"] and all(w["max_ms"] > 0 and w["sampled_seconds"] > 0 for w in res["stalls"])
    assert res["ok"] is True
    md = soak.markdown(res)
    assert "Result: **OK**" in md and f"{ld['diffs_delivered']:,} of {ld['diffs_expected']:,}" in md


def test_soak_smoke_python():
    res = soak.run(clients=20, seconds=5, rate=40, loadgen="python", accounts=200, hot=10, hot_prob=0.3,
                   callers=2, warmup=1, progress=2, sample=0.5, drain=5, say=lambda s: None)
    _check(res, 5, 40, 20)


_HAVE_NODE = shutil.which("node") is not None and \
    os.path.isdir(os.path.join(LOADGEN_DIR, "node_modules", "cbor-x"))


@pytest.mark.skipif(not _HAVE_NODE, reason="node or bench/loadgen's packages not installed")
def test_soak_smoke_node():
    res = soak.run(clients=20, seconds=3, rate=40, loadgen="node", accounts=200, hot=10, hot_prob=0.3,
                   callers=2, warmup=1, progress=1, sample=0.5, drain=5, say=lambda s: None)
    _check(res, 3, 40, 20)


def test_rss_bounded_rule():
    mb = 1 << 20

    def samples(rss: list[int]) -> list[dict]:
        return [{"t": float(i), "rss": v, "rss_anon": v, "rss_file": 0, "cpu_s": i * 0.5, "fds": 10}
                for i, v in enumerate(rss)]

    flat = soak.rss_report(samples([100 * mb] * 11), 0, 10)
    assert flat["bounded"] is True and flat["growth_second_half"] == 0 and flat["server_cpu"] == 0.5
    # +40 MB over the second half of a 1 GB process: under 50 MB, bounded
    assert soak.rss_report(samples([1000 * mb] * 6 + [1040 * mb] * 5), 0, 10)["bounded"] is True
    # +60 MB on 1 GB: over 50 MB but under 10%, bounded
    assert soak.rss_report(samples([1000 * mb] * 6 + [1060 * mb] * 5), 0, 10)["bounded"] is True
    # steady growth of 20 MB a sample: 100 MB over the second half, > 10% of 200 MB
    grow = soak.rss_report(samples([100 * mb + i * 20 * mb for i in range(11)]), 0, 10)
    assert grow["bounded"] is False and grow["growth_second_half"] == 100 * mb
    assert grow["start"] == 100 * mb and grow["max"] == grow["end"] == 300 * mb
    # samples outside the window do not count; too few samples: not measured
    assert soak.rss_report(samples([1, 2, 3]), 5, 10)["bounded"] is None


def test_loadgen_has_soak_mode():
    with open(os.path.join(LOADGEN_DIR, "load.js")) as f:
        src = f.read()
    assert "mode !== 'soak'" in src and "async function soak(a)" in src
    assert "SELECT * FROM account WHERE id = ${acct}" in src
