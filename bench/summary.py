"""The summary of a benchmark run: every ratio against its target, plots, and the README's table.

    python -m bench.summary [--results DIR] [--readme README.md | --no-readme]

Reads the newest result of each benchmark in bench/results/ (``engine.json``,
``durability.json``, ``transfer.json``, ``modules.json``, ``queries.json``, ``arena.json``, the
newest ``network-*.json``), writes ``summary.md`` and ``summary.json`` there, draws ``subscriptions.png``
(matcher cost vs subscription count) and ``network.png`` (calls/s vs clients, every server), and
replaces the part of the README between ``<!-- bench:begin -->`` and ``<!-- bench:end -->``
(with copies of the plots in docs/bench/, since bench/results/ is not kept in git).
A benchmark that has no result yet is listed as "not run", never invented.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


@dataclass
class Row:
    """One line of the summary: a stdb figure, what it is compared with, and the target."""

    area: str
    measure: str
    stdb: str
    baseline: str
    ratio: float | None
    target: str = ""
    met: bool | None = None        # None: no target (context only)

    def verdict(self) -> str:
        return "" if self.met is None else ("met" if self.met else "**not met**")


def _n(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "–"
    return f"{x:,.{digits}f}"


def _r(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.3f}" if x < 0.1 else f"{x:.2f}"


def _load(results: str, name: str) -> dict[str, Any] | None:
    """``name.json``, or the newest ``name-*.json`` when ``name`` ends with ``-*``."""
    if name.endswith("-*"):
        paths = sorted(glob.glob(os.path.join(results, name + ".json")))
        path = paths[-1] if paths else None
    else:
        path = os.path.join(results, name + ".json")
    if path is None or not os.path.exists(path):
        return None
    with open(path) as f:
        data: dict[str, Any] = json.load(f)
    data["_file"] = os.path.basename(path)
    return data


def _at_least(ratio: float | None, want: float) -> bool | None:
    return None if ratio is None else ratio >= want


def engine_rows(d: dict[str, Any]) -> list[Row]:
    m, r = d["memory"], d["rates"]
    per_row, vs_dict = m["stdb_bytes_per_row"], m["ratio_stdb_to_dict"]
    rows = [Row("engine", f"memory per row, {r['rows']:,} rows (tracemalloc)", f"{per_row:.1f} B",
                f"Python dicts {m['dict_bytes_per_row']:.1f} B", vs_dict,
                "≤ 64 B and ≤ 1/6 of dicts (ratio: stdb ÷ dicts)", per_row <= 64 and vs_dict <= 1 / 6)]
    for key, stdb_key, sqlite_key, label in (
            ("insert", "insert_stdb_rows_per_s", "insert_sqlite_rows_per_s", "insert, rows/s"),
            ("seek", "seek_stdb_per_s", "seek_sqlite_per_s", "point seek by primary key, /s"),
            ("range", "range_stdb_rows_per_s", "range_sqlite_rows_per_s", "range scan ~100 rows, rows/s")):
        rows.append(Row("engine", label, _n(r[stdb_key]), f"SQLite (memory) {_n(r[sqlite_key])}",
                        r[f"{key}_ratio_vs_sqlite"]))
    ratio = r["filter_count_ratio_vs_sqlite"]
    rows.append(Row("engine", "filtered full scan (count), rows scanned/s",
                    _n(r["filter_count_stdb_rows_scanned_per_s"]),
                    f"SQLite (memory) {_n(r['filter_count_sqlite_rows_scanned_per_s'])}", ratio,
                    "≥ 5× SQLite", ratio >= 5))
    return rows


def _kib(n: int) -> str:
    return f"{n >> 20} MiB" if n % (1 << 20) == 0 else f"{n >> 10} KiB"


def durability_rows(d: dict[str, Any]) -> list[Row]:
    c, lat, rec = d["durable_commits"], d["durable_latency"], d["recovery"]
    scan_mb = rec["log_bytes"] / rec["raw_scan_seconds"] / 1e6
    return [
        Row("durability", "durable commits/s, commit log alone", _n(c["log_commits_per_s"]),
            f"raw LMDB synced group puts {_n(c['raw_lmdb_puts_per_s'])}", c["log_ratio_vs_raw"],
            "≥ 0.5 of raw", _at_least(c["log_ratio_vs_raw"], 0.5)),
        *([Row("durability", "(context) commit log alone vs raw LMDB storing each group as the log does",
               _n(c["log_commits_per_s"]),
               f"raw LMDB, values of ≤ {_kib(c.get('value_bytes_max', 256 << 10))} "
               f"{_n(c['raw_lmdb_grouped_values_per_s'])}",
               c["log_ratio_vs_raw_grouped"])] if "log_ratio_vs_raw_grouped" in c else []),
        Row("durability", "one durable commit, median / p99",
            f"{lat['median_us']:.0f} / {lat['p99_us']:.0f} µs", "", None),
        Row("durability", "recovery, row-ops/s replayed (transactions of 1000 rows)",
            _n(rec["row_ops_per_s"]), "", None, "≥ 1M/s", rec["row_ops_per_s"] >= 1e6),
        *([Row("durability", "recovery of small transactions (transfers, 4 row ops each), row-ops/s",
               _n(sm["row_ops_per_s"]), "", None, "≥ 1M/s", sm["row_ops_per_s"] >= 1e6)]
          if (sm := d.get("recovery_small")) else []),
        Row("durability", "recovery vs raw LMDB cursor scan of the log",
            f"{rec['log_bytes'] / rec['seconds'] / 1e6:,.0f} MB/s", f"raw scan {scan_mb:,.0f} MB/s",
            rec["ratio_vs_raw_scan"], "≥ 0.25 of raw", _at_least(rec["ratio_vs_raw_scan"], 0.25)),
        *([Row("durability", "(floor) C loop over the same log: CRC + framing + rows in a hash table by key",
               f"{rec['log_bytes'] / rec['floor_hash_seconds'] / 1e6:,.0f} MB/s",
               f"raw scan {scan_mb:,.0f} MB/s",
               rec["floor_hash_ratio_vs_raw_scan"]),
           *([Row("durability", "recovery vs that C floor (log MB/s)",
                  f"{rec['log_bytes'] / rec['seconds'] / 1e6:,.0f} MB/s",
                  f"floor {rec['log_bytes'] / rec['floor_hash_seconds'] / 1e6:,.0f} MB/s",
                  rec["ratio_vs_floor_hash"], f"≥ {rec['target_vs_floor_hash']:g} of the floor",
                  _at_least(rec["ratio_vs_floor_hash"], rec["target_vs_floor_hash"]))]
             if "ratio_vs_floor_hash" in rec else []),
           Row("durability", "(floor) the same C loop with no index (rows in an array by key)",
               f"{rec['log_bytes'] / rec['floor_array_seconds'] / 1e6:,.0f} MB/s",
               f"raw scan {scan_mb:,.0f} MB/s",
               rec["floor_array_ratio_vs_raw_scan"])] if "floor_hash_seconds" in rec else []),
        *([Row("durability", f"longest commit while automatic snapshots of {_n(sp['rows'])} rows are taken",
               f"{sp['commit_max_ms']:.1f} ms",
               "the snapshot written in the committing thread "
               f"{_n(sp['snapshot_in_committing_thread_ms'])} ms",
               sp["ratio"])] if (sp := d.get("snapshot_pause")) else []),
        *([Row("durability", f"open the database from a snapshot of {_n(sp['rows'])} rows",
               f"{sp['open_from_snapshot_s']:.2f} s", "", None)]
          if (sp := d.get("snapshot_pause")) and "open_from_snapshot_s" in sp else []),
    ]


def modules_rows(d: dict[str, Any]) -> list[Row]:
    dr, hl = d["direct"], d["high_level"]
    want = d.get("target_host_call_us")
    return [
        Row("modules", "empty reducer call, µs", f"{dr['reducer_call_us']:.2f}",
            f"wasmtime-py high-level {hl['reducer_call_us']:.1f}",
            hl["reducer_call_us"] / dr["reducer_call_us"]),
        Row("modules", "host call, µs", f"{dr['host_call_us']:.2f}",
            f"wasmtime-py high-level {hl['host_call_us']:.1f}", hl["host_call_us"] / dr["host_call_us"],
            f"≤ {want} µs" if want else "", dr["host_call_us"] <= want if want else None),
        Row("modules", "`Database.call` inserting one row, µs",
            f"{d['database']['database_call_us']:.1f}", "", None),
    ] + _rust_rows(d.get("transfer_c_rust"))


def _rust_rows(tr: dict[str, Any] | None) -> list[Row]:
    if not tr:
        return []
    if "skipped" in tr:
        return [Row("modules", "transfer call, C module vs Rust module, µs", "not measured",
                    tr["skipped"][:80], None)]
    return [Row("modules", "transfer call (`Database.call`), C module vs Rust module, µs",
                f"{tr['c_us']:.2f}", f"Rust {tr['rust_us']:.2f}", tr["rust_us"] / tr["c_us"])]


def queries_rows(d: dict[str, Any]) -> list[Row]:
    eq, t = d["equality"], d["targets"]
    costs = [e["stdb_us_per_commit"] for e in eq]
    flat, first, big = max(costs) / min(costs), eq[0], eq[-1]
    per_row = big["stdb_us_per_changed_row"]
    want_flat, want_row = t["eq_flatness_max_ratio"], t["eq_us_per_changed_row"]
    rows = [
        Row("subscriptions", f"matcher µs/commit, {first['subscriptions']:,} → {big['subscriptions']:,} "
            "equality subscriptions", f"{costs[0]:.1f} → {costs[-1]:.1f}",
            f"naive {_n(first['naive_us_per_commit'])} → {_n(big['naive_us_per_commit'])}", flat,
            f"largest / smallest ≤ {want_flat:g}", flat <= want_flat),
        Row("subscriptions", "matcher µs per changed row (largest count)", f"{per_row:.1f}", "", None,
            f"≤ {want_row:g} µs", per_row <= want_row),
    ]
    for q in d["one_off"]:
        rows.append(Row("one-off query", f"{q['query']}, ms", f"{q['stdb_ms']:.2f}",
                        f"SQLite {q['sqlite_ms']:.2f}", q["sqlite_ms"] / q["stdb_ms"]))
    return rows


def _target_rows(area: str, targets: list[dict[str, Any]]) -> list[Row]:
    """Rows from a result's own ``targets`` list (transfer.json, network-*.json)."""
    return [Row(area, t["measure"], _n(t.get("stdb")), f"{t['baseline']} {_n(t.get('baseline_value'))}",
                t.get("ratio"), t["target"], t.get("met")) for t in targets]


def transfer_rows(d: dict[str, Any]) -> list[Row]:
    """The embedded transfer benchmark (bench/transfer.py)."""
    rows = _target_rows("transfer, embedded", d.get("targets", []))
    b = d.get("breakdown", {}).get("uniform")
    if b:
        rows.append(Row("transfer, embedded", "µs per committed call (uniform): wasm + host imports + "
                        "commit + rest", f"{b['total_us']:.1f} = {b['wasm_us']:.1f} + {b['host_us']:.1f} + "
                        f"{b['commit_us']:.1f} + {b['rest_us']:.1f}", "", None))
    return rows


def network_rows(d: dict[str, Any]) -> list[Row]:
    """The networked benchmark (bench/network.py): stdb vs the echo server and, when run, the peers."""
    rows = _target_rows("transfer, networked", d.get("targets", []))
    if not rows and "target" in d:              # a result written before the peers existed
        last, want = d["transfer"][-1], d["target"]["want"]
        rows.append(Row("transfer, networked", f"calls/s at {last['clients']} clients",
                        _n(last["stdb"]["msg_per_s"]), f"trio-websocket echo {_n(last['echo']['msg_per_s'])}",
                        d["target"]["ratio_at_50_clients"], f"≥ {want:g} of echo", d["target"]["met"]))
    fan = d.get("fanout")
    if fan:
        floor = (fan.get("floor") or {}).get("median_ms")
        rows.append(Row("transfer, networked",
                        f"fan-out to {fan['clients']:,} subscribers, call to last diff, median",
                        f"{fan['median_ms']:.0f} ms",
                        f"floor: load.js vs echo.js {floor:.0f} ms" if floor else "",
                        floor / fan["median_ms"] if floor and fan["median_ms"] else None))
    return rows


def arena_rows(d: dict[str, Any]) -> list[Row]:
    """The arena benchmark (bench/arena.py): one target, the tick rate at the target's bot count
    (``target`` in the result); the rest is context."""
    hz = d.get("tick_hz", 20)
    want = d.get("target") or {}
    rows = []
    for r in d.get("runs", []):
        n = r["bots"]
        aimed = n == want.get("bots") and want.get("tick_rate") is not None
        rows += [
            Row("arena", f"{n} bots: ticks/s committed (the module ticks at {hz:g} Hz)",
                f"{r['tick_rate']:.2f}", f"{hz:g}/s", r["tick_rate"] / hz,
                f"≥ {want['tick_rate']:g}/s" if aimed else "",
                r["tick_rate"] >= want["tick_rate"] if aimed else None),
            Row("arena", f"{n} bots: tick→diff latency p50 / p99 / max",
                f"{_ms(r['latency_p50_ms'])} / {_ms(r['latency_p99_ms'])} / {_ms(r['latency_max_ms'])} ms",
                "", None),
            Row("arena", f"{n} bots: diff bytes per client per tick (mean); server CPU; errors",
                f"{_n(r['diff_bytes_per_client_per_tick'])} B; {_n(r['server_cpu'], 2)} cores; {r['errors']}",
                "", None),
        ]
    return rows


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


SOURCES: list[tuple[str, str, Callable[[dict[str, Any]], list[Row]]]] = [
    ("engine", "python -m bench.engine", engine_rows),
    ("durability", "python -m bench.durability", durability_rows),
    ("transfer", "python -m bench.transfer", transfer_rows),
    ("network-*", "python -m bench.network", network_rows),
    ("queries", "python -m bench.queries", queries_rows),
    ("modules", "python -m bench.modules", modules_rows),
    ("arena", "python -m bench.arena", arena_rows),
]


def _machine_line(results: dict[str, dict[str, Any]]) -> str:
    m: dict[str, Any] = {}
    for d in results.values():             # the richest record (the networked one names every peer)
        mm = d.get("machine") or {}
        if len(mm) > len(m):
            m = mm
    if not m:
        return "no results yet"
    parts = [f"{m.get('cores')} cores", str(m.get("cpu") or ""),
             f"{(m.get('memory_bytes') or 0) / 2**30:.0f} GiB", f"Python {m.get('python')}"]
    skip = {"cores", "cpu", "memory_bytes", "python", "platform", "date", "git_commit", "stdb"}
    parts += [f"{k} {v}" for k, v in m.items() if k not in skip and isinstance(v, str)]
    return ", ".join(p for p in parts if p)


def summarise(results_dir: str) -> tuple[list[Row], dict[str, dict[str, Any]], list[str]]:
    rows: list[Row] = []
    found: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for name, cmd, fn in SOURCES:
        d = _load(results_dir, name)
        if d is None:
            missing.append(f"{name.rstrip('-*')} (`{cmd}`)")
            continue
        found[name] = d
        rows.extend(fn(d))
    return rows, found, missing


def markdown(rows: list[Row], found: dict[str, dict[str, Any]], missing: list[str], plots: list[str],
             plot_dir: str = "") -> str:
    dates = sorted({str(d.get("date") or (d.get("machine") or {}).get("date")) for d in found.values()})
    by_commit: dict[str, list[str]] = {}
    for name, d in found.items():
        by_commit.setdefault(str((d.get("machine") or {}).get("git_commit")), []).append(name.rstrip("-*"))
    by_commit.pop("None", None)
    days = sorted({d[:10] for d in dates})
    span = " – ".join(days[::max(1, len(days) - 1)]) if days else "?"
    if len(by_commit) > 1:    # results of several runs: say which came from which commit
        which = "; ".join(f"{', '.join(sorted(names))} at {c}" for c, names in sorted(by_commit.items()))
        commit_text = f"stdb commits: {which}"
    else:
        commit_text = f"stdb commit {next(iter(by_commit), '?')}"
    out = [f"Latest `python -m bench` results ({span}; {commit_text}) on: {_machine_line(found)}.",
           "How each figure is measured: `bench/README.md`; every result as JSON in `bench/results/`. "
           "A ratio is stdb's rate over the compared one (higher is better for stdb; for times, the other's "
           "time over stdb's), except where the target says otherwise.", "",
           "| area | measure | stdb | compared with | ratio | target | |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r.area} | {r.measure} | {r.stdb} | {r.baseline} | {_r(r.ratio)} | {r.target} "
                   f"| {r.verdict()} |")
    met = [r for r in rows if r.met is True]
    unmet = [r for r in rows if r.met is False]
    out += ["", f"Targets: {len(met)} met, {len(unmet)} not met."]
    if missing:
        out.append(f"Not run: {', '.join(missing)}.")
    for p in plots:
        out.append(f"\n![{p}]({plot_dir}{p})")
    return "\n".join(out) + "\n"


def plot_subscriptions(q: dict[str, Any], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, label, mark, colour in (("equality", "zone = k", "o", "tab:blue"),
                                     ("ranges", "x BETWEEN a AND b", "s", "tab:green")):
        n = [e["subscriptions"] for e in q[key]]
        ax.plot(n, [e["stdb_us_per_commit"] for e in q[key]], marker=mark, color=colour,
                label=f"stdb, {label}")
        ax.plot(n, [e["naive_us_per_commit"] for e in q[key]], marker=mark, color=colour, alpha=0.35, ls="--",
                label=f"naive (every query × every row), {label}")
    _save_loglog(fig, ax, path, "subscriptions", "µs per commit (one-row update)",
                 "Subscription matcher cost per commit")


def network_series(d: dict[str, Any]) -> dict[str, list[tuple[int, float]]]:
    """``{case: [(clients, msg/s), ...]}`` from a network result (``transfer`` is a list per client count)."""
    series: dict[str, list[tuple[int, float]]] = {}
    for entry in d.get("transfer", []):
        for case, res in entry.items():
            if isinstance(res, dict) and "msg_per_s" in res:
                series.setdefault(case, []).append((entry["clients"], res["msg_per_s"]))
    return series


def plot_network(d: dict[str, Any], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = plt.get_cmap("tab20").colors
    servers = 0
    for case, pts in sorted(network_series(d).items()):
        xs, ys = zip(*sorted(pts), strict=True)
        if case.endswith("_ceiling"):        # the load generators' own maxima: context, not servers
            ax.plot(xs, ys, "x--", color="0.55", lw=1, label=case)
        else:
            ax.plot(xs, ys, "o-", color=colours[(2 * servers) % 20 + servers // 10],
                    lw=2.2 if case.startswith("stdb") else 1.2, label=case)
            servers += 1
    _save_loglog(fig, ax, path, "closed-loop clients", "transfer calls/s",
                 "Transfer over the network, servers on one core")


def _save_loglog(fig: Any, ax: Any, path: str, xlabel: str, ylabel: str, title: str) -> None:
    import matplotlib.pyplot as plt
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def replace_section(text: str, body: str) -> str:
    """``text`` with what lies between the bench markers replaced by ``body``."""
    i, j = text.find(BEGIN), text.find(END)
    if i < 0 or j < i:
        raise ValueError(f"the README has no {BEGIN} … {END} section")
    return text[:i + len(BEGIN)] + "\n" + body + text[j:]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.summary", description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=RESULTS_DIR)
    ap.add_argument("--readme", default=README, help="the README whose bench section is replaced")
    ap.add_argument("--no-readme", action="store_true", help="leave the README alone")
    a = ap.parse_args(argv)
    rows, found, missing = summarise(a.results)
    plots = []
    if "queries" in found:
        plot_subscriptions(found["queries"], os.path.join(a.results, "subscriptions.png"))
        plots.append("subscriptions.png")
    if "network-*" in found:
        plot_network(found["network-*"], os.path.join(a.results, "network.png"))
        plots.append("network.png")
    md = markdown(rows, found, missing, plots)
    with open(os.path.join(a.results, "summary.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.results, "summary.json"), "w") as f:
        json.dump({"rows": [asdict(r) for r in rows], "sources": {k: v["_file"] for k, v in found.items()},
                   "missing": missing}, f, indent=2)
    print(md, flush=True)
    if not a.no_readme:
        # the README shows the plots from docs/bench/ (the latest run's JSON stays in bench/results/)
        docs = os.path.join(os.path.dirname(os.path.abspath(a.readme)), "docs", "bench")
        os.makedirs(docs, exist_ok=True)
        for p in plots:
            shutil.copyfile(os.path.join(a.results, p), os.path.join(docs, p))
        with open(a.readme) as f:
            text = f.read()
        with open(a.readme, "w") as f:
            f.write(replace_section(text, markdown(rows, found, missing, plots, "docs/bench/")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
