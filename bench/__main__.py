"""Run every benchmark: ``python -m bench [--quick]``.  Results in bench/results/."""

from __future__ import annotations

import argparse
import os

from bench import durability, engine, modules, network, queries, transfer


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every benchmark")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    a = p.parse_args()
    engine.run(50_000 if a.quick else 1_000_000, a.out)
    durability.main(["--out", a.out] + (["--commits", "3000", "--rows", "20000"] if a.quick else []))
    transfer.main(["--out", a.out] + (["--quick"] if a.quick else []))
    modules.main(["--out", a.out] + (["--quick"] if a.quick else []))
    queries.main(["--out", a.out] + (["--quick"] if a.quick else []))
    network.main(["--out", a.out] + (["--seconds", "2", "--fanout", "100", "--trials", "5", "--accounts",
                                      "1000", "--no-relaxed", "--rounds", "1"] if a.quick else []))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
