"""The embedded transfer benchmark (bench/transfer.py) at tiny sizes: every contender ends in
the reference state and the JSON has what the summary needs.  No timing is asserted."""

import json
import random

import pytest

from bench import transfer


def test_transfer_benchmark_smoke(tmp_path):
    out = tmp_path / "out"
    assert transfer.main(["--quick", "--accounts", "300", "--transfers", "300", "--synced-transfers", "60",
                          "--synced-seconds", "0", "--out", str(out)]) == 0
    res = json.loads((out / "transfer.json").read_text())
    cfg = res["config"]
    assert (cfg["accounts"], cfg["transfers"], cfg["synced_transfers"]) == (300, 300, 60)
    assert cfg["seed"] == transfer.SEED
    assert {"stdb", "sqlite", "lmdb", "py-lmdb", "python"} <= set(res["versions"])
    names = {"stdb_durable", "stdb_durable_group64", "stdb_durable_wait_each", "stdb_relaxed", "sqlite_full",
             "sqlite_normal", "lmdb_sync", "lmdb_group64", "dict"}
    assert set(res["contenders"]) == names
    assert res["all_verified"] is True
    for dist in transfer.DISTRIBUTIONS:
        w = res["workloads"][dist]
        assert 0 < w["refused"] < w["transfers"]          # some transfers are refused, not all
        for name, c in res["contenders"].items():
            e = c[dist]
            synced = c["transfers"] == 60
            assert synced == (name in {"stdb_durable_wait_each", "sqlite_full", "lmdb_sync"})
            # the same final balances and refused count as the reference model, every contender
            assert e["state"] == (w["state_synced"] if synced else w["state"]), (name, dist)
            assert e["refused"] == (w["refused_synced"] if synced else w["refused"]), (name, dist)
            assert e["verified"] and e["tps"] > 0 and len(e["tps_runs"]) == cfg["reps"]
            if name.startswith("stdb"):
                assert e["recovered_state_verified"]
        d = res["contenders"]["stdb_durable"][dist]
        assert d["tps_until_durable"] > 0 and d["lag_records_at_end"] >= 0
    # the target rows bench/summary.py reads
    rows = res["targets"]
    targeted = [r for r in rows if r["met"] is not None]
    assert len(targeted) == 6              # three targets, two distributions each
    for r in rows:
        assert {"measure", "stdb", "baseline", "baseline_value", "ratio", "target", "met"} <= set(r)
    assert res["ratios"]["durable_vs_sqlite_full"]["target"] == 10
    assert res["ratios"]["relaxed_vs_sqlite_normal"]["target"] == 2
    assert res["ratios"]["durable_vs_sqlite_normal"]["target"] == 5
    # where a committed call goes: the parts add up to the whole, four imports per transfer
    for dist in transfer.DISTRIBUTIONS:
        b = res["breakdown"][dist]
        assert b["calls"] > 0 and b["host_calls"] >= 4
        parts = b["wasm_us"] + b["host_us"] + b["commit_us"] + b["rest_us"]
        assert parts == pytest.approx(b["total_us"]) and min(b["wasm_us"], b["host_us"], b["commit_us"]) > 0
        assert b["loop_us"] > 0    # per call made, refused ones (cheaper) included: not comparable
    md = (out / "transfer.md").read_text()
    assert "Equal durability" in md and "SQLite WAL, synchronous=FULL" in md
    assert "Where a committed stdb call goes" in md


def test_a_contender_that_ends_elsewhere_is_an_error(tmp_path, monkeypatch):
    real = transfer.run_dict

    def off_by_one(wl, n):
        r = real(wl, n)
        r.refused += 1
        return r
    monkeypatch.setattr(transfer, "run_dict", off_by_one)
    with pytest.raises(RuntimeError, match="did not end in the reference state"):
        transfer.bench(50, 40, 10, 1, str(tmp_path), only=["dict"], say=lambda s: None)


def test_workloads_are_reproducible_and_zipf_is_skewed():
    a = transfer.make_workload("zipf", 1000, 2000, seed=7)
    b = transfer.make_workload("zipf", 1000, 2000, seed=7)
    assert a.transfers == b.transfers and a.balances == b.balances
    assert all(f != t and 1 <= f <= 1000 and 1 <= t <= 1000 and 1 <= x <= transfer.AMOUNT_MAX
               for f, t, x in a.transfers)
    u = transfer.make_workload("uniform", 1000, 2000, seed=7)
    assert a.hottest_share > 5 * u.hottest_share
    draw = transfer.zipf_sampler(100, 0.99, random.Random(1))
    ranks = [draw() for _ in range(20000)]
    assert min(ranks) == 0 and max(ranks) < 100
    assert ranks.count(0) > ranks.count(1) > ranks.count(50)
