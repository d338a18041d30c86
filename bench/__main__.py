"""Run every benchmark: ``python -m bench [--quick] [--no-readme]``.

Results as JSON in bench/results/, then bench/summary.py: the Markdown table (summary.md), the
plots, and — on a full run — the README's bench section.  ``--quick`` is a smoke run at small
sizes: it never touches the README."""

from __future__ import annotations

import argparse
import os
import time

from bench import arena, durability, engine, modules, network, queries, replication, summary, transfer


def _replication(out: str, quick: bool) -> int:
    """bench/replication.py, skipped (with a message) where nats-server is not installed."""
    from fuzz.cluster import nats_server
    if nats_server() is None:
        print("skipped: nats-server is not installed (apt-get install nats-server)", flush=True)
        return 0
    return replication.main(["--out", out] + (["--quick"] if quick else []))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every benchmark")
    p.add_argument("--no-readme", action="store_true", help="leave the README's bench section alone")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    a = p.parse_args(argv)
    q = a.quick
    steps = [
        ("engine", lambda: engine.run(50_000 if q else 1_000_000, a.out)),
        ("durability", lambda: durability.main(
            ["--out", a.out] + (["--commits", "3000", "--rows", "20000"] if q else []))),
        ("transfer", lambda: transfer.main(["--out", a.out] + (["--quick"] if q else []))),
        ("modules", lambda: modules.main(["--out", a.out] + (["--quick"] if q else []))),
        ("queries", lambda: queries.main(["--out", a.out] + (["--quick"] if q else []))),
        ("network", lambda: network.main(
            ["--out", a.out] + (["--seconds", "2", "--fanout", "100", "--trials", "5", "--accounts", "1000",
                                 "--no-relaxed", "--rounds", "1", "--pipelined-accounts", "10000"]
                                if q else []))),
        ("arena", lambda: arena.main(["--out", a.out] + (["--quick"] if q else []))),
        ("replication", lambda: _replication(a.out, q)),
    ]
    t0 = time.perf_counter()
    for i, (name, step) in enumerate(steps, 1):
        print(f"\n=== [{i}/{len(steps)}] {name} ({time.perf_counter() - t0:.0f} s so far)", flush=True)
        rc = step()                  # the steps' main() return an exit status; engine.run its results
        if isinstance(rc, int) and rc:
            print(f"python -m bench: {name} failed (exit status {rc})", flush=True)
            return rc
    print(f"\n=== summary ({time.perf_counter() - t0:.0f} s of benchmarks)", flush=True)
    return summary.main(["--results", a.out] + (["--no-readme"] if q or a.no_readme else []))


if __name__ == "__main__":
    raise SystemExit(main())
