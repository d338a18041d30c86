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
