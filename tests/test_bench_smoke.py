"""The module benchmark still runs (a smoke run at tiny sizes; no timing is asserted)."""

import json

from bench import modules


def test_module_benchmark_smoke(tmp_path):
    assert modules.main(["--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "modules.json").read_text())
    for side in ("direct", "high_level"):
        assert set(res[side]) == {"reducer_call_us", "host_call_us", "host_call_memory_us"}
        assert all(v > 0 for v in res[side].values())
    assert res["database"]["calls"] > 0
    assert "| host call (timestamp) |" in (tmp_path / "modules.md").read_text()


def test_query_benchmark_smoke(tmp_path):
    from bench import queries
    assert queries.main(["--quick", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "queries.json").read_text())
    assert [r["subscriptions"] for r in res["equality"]] == [10, 1000]
    for r in res["equality"] + res["ranges"]:
        assert r["stdb_us_per_commit"] > 0 and r["naive_us_per_commit"] > 0
    assert {r["plan"][0] for r in res["one_off"]} >= {"player: column scan name > 'p9990'",
                                                   "player: index by_x range"}


def test_durability_benchmark_smoke(tmp_path):
    """Small sizes; the replay floor (bench/replay_floor.c) must build, replay the same log and
    agree with stdb's replay on the row operations and the rows left (it checks both)."""
    from bench import durability
    assert durability.main(["--commits", "400", "--rows", "3000", "--snapshot-rows", "4000",
                            "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "durability.json").read_text())
    rec, small = res["recovery"], res["recovery_small"]
    # 3000 inserts, then 1500 updates (a delete and an insert each) less the one to row 0,
    # which changes nothing (its balance 0 becomes -0)
    assert rec["row_ops"] == 3000 + 2 * 1499 and "floor_unavailable" not in rec
    assert rec["floor_hash_seconds"] > 0 and rec["floor_array_seconds"] > 0
    assert small["records"] == 400 + 2 and small["row_ops"] > 4 * 400
    md = (tmp_path / "durability.md").read_text()
    assert "(floor) C loop" in md and "transfers: 4 row ops each" in md
