"""bench/summary.py: every ratio against its target, from the results on disk (no timing asserted)."""

import json

import pytest

from bench import modules, queries, summary


def _write(d, name, obj):
    (d / f"{name}.json").write_text(json.dumps(obj))


def _durability(log_ratio, replay):
    return {"machine": {"cores": 2, "git_commit": "abc1234"}, "date": "2026-11-25T00:00:00Z",
            "durable_commits": {"log_commits_per_s": 600_000.0, "raw_lmdb_puts_per_s": 1_000_000.0,
                                "log_ratio_vs_raw": log_ratio},
            "durable_latency": {"median_us": 350.0, "p99_us": 550.0},
            "recovery": {"row_ops_per_s": replay, "seconds": 0.5, "log_bytes": 10_000_000,
                         "raw_scan_seconds": 0.001, "ratio_vs_raw_scan": 0.005}}


def test_verdicts_follow_the_figures_and_missing_results_are_named(tmp_path):
    d = _durability(0.6, 2_000_000.0)
    d["recovery_small"] = {"row_ops_per_s": 500_000.0, "records_per_s": 120_000.0}
    d["recovery"].update(floor_hash_seconds=0.01, floor_hash_ratio_vs_raw_scan=0.1,
                         floor_array_seconds=0.004, floor_array_ratio_vs_raw_scan=0.25)
    _write(tmp_path, "durability", d)
    rows, found, missing = summary.summarise(str(tmp_path))
    assert set(found) == {"durability"}
    assert any("bench.engine" in m for m in missing) and any("bench.network" in m for m in missing)
    by = {r.measure: r for r in rows}
    assert by["durable commits/s, commit log alone"].met is True
    assert by["recovery, row-ops/s replayed (transactions of 1000 rows)"].met is True
    assert by["recovery vs raw LMDB cursor scan of the log"].met is False
    assert by["recovery of small transactions (transfers, 4 row ops each), row-ops/s"].met is False
    floor = by["(floor) C loop over the same log: CRC + framing + rows in a hash table by key"]
    assert floor.met is None and floor.ratio == 0.1 and floor.stdb == "1,000 MB/s"
    assert "recovery vs that C floor (log MB/s)" not in by      # results before issue 21: no such row
    d["recovery"].update(ratio_vs_floor_hash=0.02, target_vs_floor_hash=0.5)
    _write(tmp_path, "durability", d)
    by = {r.measure: r for r in summary.summarise(str(tmp_path))[0]}
    vs = by["recovery vs that C floor (log MB/s)"]
    assert (vs.met, vs.ratio, vs.stdb, vs.target) == (False, 0.02, "20 MB/s", "≥ 0.5 of the floor")
    d["recovery"]["ratio_vs_floor_hash"] = 0.6
    _write(tmp_path, "durability", d)
    assert {r.measure: r for r in summary.summarise(str(tmp_path))[0]}[
        "recovery vs that C floor (log MB/s)"].met is True
    assert by["one durable commit, median / p99"].met is None

    _write(tmp_path, "durability", _durability(0.4, 900_000.0))
    rows, _, _ = summary.summarise(str(tmp_path))
    by = {r.measure: r for r in rows}
    assert by["durable commits/s, commit log alone"].met is False
    assert by["recovery, row-ops/s replayed (transactions of 1000 rows)"].met is False
    assert not any(r.measure.startswith("(context)") for r in rows)   # older results: no such row
    md = summary.markdown(rows, {"durability": {"machine": {"cores": 2}}}, [], [])
    assert "Targets: 0 met, 3 not met." in md
    d = _durability(0.4, 900_000.0)
    d["durable_commits"].update(raw_lmdb_grouped_values_per_s=800_000.0, log_ratio_vs_raw_grouped=0.75)
    _write(tmp_path, "durability", d)
    rows, _, _ = summary.summarise(str(tmp_path))
    (ctx,) = [r for r in rows if r.measure.startswith("(context)")]
    assert (ctx.ratio, ctx.met, ctx.baseline) == (0.75, None, "raw LMDB, values of ≤ 256 KiB 800,000")
    d["durable_commits"]["value_bytes_max"] = 1 << 20      # results since the values grew to 1 MiB
    _write(tmp_path, "durability", d)
    rows, _, _ = summary.summarise(str(tmp_path))
    (ctx,) = [r for r in rows if r.measure.startswith("(context)")]
    assert ctx.baseline == "raw LMDB, values of ≤ 1 MiB 800,000"
    d["snapshot_pause"] = {"rows": 1_000_000, "commit_max_ms": 20.5,
                           "snapshot_in_committing_thread_ms": 680.0, "ratio": 680 / 20.5}
    _write(tmp_path, "durability", d)
    rows, _, _ = summary.summarise(str(tmp_path))
    (sp,) = [r for r in rows if r.measure.startswith("longest commit")]
    assert (sp.stdb, sp.met) == ("20.5 ms", None)
    assert sp.baseline == "the snapshot written in the committing thread 680 ms"
    assert "| durability | durable commits/s, commit log alone | 600,000 |" in md


def test_header_names_the_commit_of_each_result_when_they_differ(tmp_path):
    rows, found = [], {"durability": _durability(0.6, 2e6), "engine": {"machine": {"git_commit": "abc1234"}},
                       "transfer": {"machine": {"git_commit": "def5678"}}}
    assert "; stdb commit abc1234)" in summary.markdown(rows, {k: found[k] for k in ("durability", "engine")},
                                                          [], [])
    md = summary.markdown(rows, found, [], [])
    assert "stdb commits: durability, engine at abc1234; transfer at def5678)" in md


def test_target_rows_of_a_result_and_the_newest_network_file(tmp_path):
    t = {"measure": "calls/s at 50 clients", "stdb": 1000.0, "baseline": "echo", "baseline_value": 4000.0,
         "ratio": 0.25, "target": "≥ 0.9 of echo", "met": False}
    _write(tmp_path, "network-20260101-000000", {"targets": [dict(t, met=True)], "transfer": []})
    _write(tmp_path, "network-20261125-000000", {"targets": [t], "transfer": [
        {"clients": 1, "stdb": {"msg_per_s": 10.0}, "echo": {"msg_per_s": 20.0}},
        {"clients": 50, "stdb": {"msg_per_s": 30.0}, "echo": {"msg_per_s": 40.0}}]})
    rows, found, _ = summary.summarise(str(tmp_path))
    assert found["network-*"]["_file"] == "network-20261125-000000.json"
    (row,) = rows
    assert (row.ratio, row.met, row.baseline) == (0.25, False, "echo 4,000")
    assert summary.network_series(found["network-*"]) == {"stdb": [(1, 10.0), (50, 30.0)],
                                                          "echo": [(1, 20.0), (50, 40.0)]}


def test_real_quick_results_make_plots_and_the_readme_section(tmp_path):
    assert modules.main(["--quick", "--out", str(tmp_path)]) == 0
    assert queries.main(["--quick", "--out", str(tmp_path)]) == 0
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n## Performance\n\n<!-- bench:begin -->\nold table\n"
                      "<!-- bench:end -->\n\nafter\n")
    assert summary.main(["--results", str(tmp_path), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.endswith("<!-- bench:end -->\n\nafter\n")
    assert "| subscriptions | matcher µs/commit, 10 → 1,000 equality subscriptions |" in text
    assert "![subscriptions.png](docs/bench/subscriptions.png)" in text
    png = (tmp_path / "docs" / "bench" / "subscriptions.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["sources"] == {"queries": "queries.json", "modules": "modules.json"}


def test_a_readme_without_the_markers_is_refused():
    with pytest.raises(ValueError, match="bench:begin"):
        summary.replace_section("# no markers\n", "body")
