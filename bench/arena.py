"""The arena benchmark: bots playing examples/arena/arena.c against one stdb server.

For each bot count, a fresh server (``python -m stdb start --data TMP --listen 127.0.0.1:0
--port-file F --metrics ...``, the default durable store, pinned to the first CPU) with the
arena published (the protocol's ``Publish`` of the module built by ``stdb.build_module``), and
one Node process of bots on the second CPU (bench/loadgen/arena_bots.js): each bot has an
identity of its own (so a player), follows its player with a subscription to ``id = :sender``,
subscribes to the food and players of the region around it (±800 units snapped to a 500 grid,
moved as the player moves: new region first, then the old one dropped), and steers to a random
direction every 1-2 s.  The arena's ``tick`` runs at 20 Hz from its schedule.

Measured over ``--seconds`` after a warm-up:

* **tick rate** — ticks committed per second, from the server's ``stdb_reducer_calls`` counter
  (Prometheus, ``reducer="tick", status="committed"``) read when the window opens and closes
  (target of the module: 20/s; a server that falls behind skips ticks); also the distinct tick
  offsets the bots saw, per second;
* **tick→diff latency** — for each tick's TransactionUpdate a bot receives: receive time − the
  update's ``timestamp`` (the tick call's time, same machine clock): p50, p99, max in ms;
* **diff bytes per client per tick** — the bytes of every tick update the bots received ÷
  (bots × ticks seen); and the mean size of one tick update;
* **server CPU** (cores, from /proc) and the bots' CPU; **errors** (must be 0).

Target (bench/summary.py): at 200 bots the server commits ≥ 19.5 ticks/s.

    python -m bench.arena [--bots 50,200] [--seconds 20] [--warmup 3] [--out DIR] [--quick]

``--quick``: 10 bots, 5 s.  Results: ``arena.json`` and ``arena.md`` in ``--out``
(bench/results by default).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import trio

from bench.network import (
    LOADGEN_DIR,
    RESULTS_DIR,
    ROOT,
    ServerProcess,
    _cpus,
    _free_port,
    _pinned,
    _proc_cpu,
    _tail,
    _versions,
    ensure_node,
    run_loadgen,
    setup_stdb,
)

ARENA_C = os.path.join(ROOT, "examples", "arena", "arena.c")
BOTS_JS = os.path.join(LOADGEN_DIR, "arena_bots.js")
DATABASE = "arena"
TICK_HZ = 20.0                   # examples/arena/arena.c: TICK_US = 50000
HALF, CELL = 800, 500            # the bots' region: ±HALF around the player, snapped to CELL
TARGET_BOTS, TARGET_TICK_RATE = 200, 19.5     # the tick holds (almost) 20 Hz with 200 players


# ---------------------------------------------------------------- the server

class StdbStart(ServerProcess):
    """``python -m stdb start`` on a port of the system's choosing (``--listen 127.0.0.1:0
    --port-file``), its Prometheus metrics on another; pinned to ``cpu``."""

    def __init__(self, tmp: str, cpu: int | None, name: str = "stdb-arena") -> None:
        self.kind = name
        self.port = 0
        self.metrics_port = _free_port()
        self.port_file = os.path.join(tmp, f"{name}.port")
        self.log = os.path.join(tmp, f"{name}.log")
        argv = [sys.executable, "-m", "stdb", "start", "--data", os.path.join(tmp, f"{name}-data"),
                "--listen", "127.0.0.1:0", "--port-file", self.port_file,
                "--metrics", f"127.0.0.1:{self.metrics_port}", "--log-level", "warning"]
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen(_pinned(cpu, argv), cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.port:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the {self.kind} server exited ({self.proc.returncode}):\n"
                                   f"{_tail(self.log)}")
            try:
                with open(self.port_file) as f:
                    text = f.read().strip()
                self.port = int(text) if text else 0
            except (OSError, ValueError):
                pass
            if not self.port:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {self.kind} server wrote no port file within {timeout:g} s:\n"
                                       f"{_tail(self.log)}")
                time.sleep(0.05)
        super().wait_ready(max(1.0, deadline - time.monotonic()))

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            text: str = r.read().decode()
        return text


_SAMPLE = re.compile(r'^(\w+?)(?:_total)?\{([^}]*)\}\s+(\S+)$|^(\w+?)(?:_total)?\s+(\S+)$')


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text → {(name without ``_total``, labels): value} (the samples stdb exposes)."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m is None or line.startswith("#"):
            continue
        if m.group(1):
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            out[(m.group(1), labels)] = float(m.group(3))
        else:
            out[(m.group(4), frozenset())] = float(m.group(5))
    return out


def metric(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """A counter's value (0 when it has not been counted yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


# ---------------------------------------------------------------- one run

def run_one(bots: int, seconds: float, warmup: float, tmp: str, wasm: bytes,
            cpus: tuple[int | None, int | None]) -> dict[str, Any]:
    """A fresh server with the arena, ``bots`` bots for ``seconds`` after ``warmup``: the bots'
    result line plus the server's figures over the same window."""
    server = StdbStart(tmp, cpus[0], name=f"stdb-arena-{bots}")
    try:
        server.wait_ready()
        trio.run(setup_stdb, server.url(database=DATABASE), wasm, 0)
        marks: dict[str, tuple[float, float | None, Any]] = {}

        def on_event(ev: dict) -> None:
            if ev.get("event") in ("start", "stop"):       # the window's ends, as the bots saw them
                marks[ev["event"]] = (time.perf_counter(), _proc_cpu(server.pid),
                                      parse_metrics(server.metrics()))

        cmd = [ensure_node(), BOTS_JS, server.url(database=DATABASE), str(bots), str(seconds),
               "--warmup", str(warmup), "--half", str(HALF), "--cell", str(CELL)]
        r = run_loadgen(cmd, 120 + bots * 0.5 + warmup + seconds, cpu=cpus[1], tmp=tmp,
                        what="the arena bots (node)", on_event=on_event)
        if server.proc.poll() is not None:
            raise RuntimeError(f"the stdb server died during the run:\n{_tail(server.log)}")
        if "start" not in marks or "stop" not in marks:
            raise RuntimeError("the arena bots gave no start and stop lines")
        (t0, c0, m0), (t1, c1, m1) = marks["start"], marks["stop"]
        dt = t1 - t0

        def delta(name: str, **labels: str) -> float:
            return metric(m1, name, **labels) - metric(m0, name, **labels)

        ticks = delta("stdb_reducer_calls", database=DATABASE, reducer="tick", status="committed")
        failed = sum(v - metric(m0, k[0], **dict(k[1])) for k, v in m1.items()
                     if k[0] == "stdb_reducer_calls" and ("reducer", "tick") in k[1]
                     and ("status", "committed") not in k[1])
        r.update(
            ticks_committed=int(ticks), tick_rate=ticks / dt, ticks_failed=int(failed),
            server_cpu=(c1 - c0) / dt if c0 is not None and c1 is not None else None,
            server_bytes_per_s=delta("stdb_bytes_sent") / dt,
            server_messages_per_s=delta("stdb_messages_sent") / dt,
            slow_client_disconnects=int(delta("stdb_slow_client_disconnects")),
            window_seconds=dt,
        )
        r["errors"] = r["errors"] + r["ticks_failed"] + r["slow_client_disconnects"]
        return r
    finally:
        server.stop()


def run(bots: Sequence[int] = (50, 200), seconds: float = 20.0, warmup: float = 3.0,
        say: Callable[[str], None] = print) -> dict[str, Any]:
    import stdb
    server_cpu, load_cpu = _cpus()
    with tempfile.TemporaryDirectory(prefix="stdb-arena-bench-") as tmp:
        with open(stdb.build_module(ARENA_C, os.path.join(tmp, "arena.wasm")), "rb") as f:
            wasm = f.read()
        runs = []
        for n in bots:
            say(f"arena: {n} bots, {seconds:g} s (after {warmup:g} s of warm-up) ...")
            r = run_one(n, seconds, warmup, tmp, wasm, (server_cpu, load_cpu))
            say(f"  {r['tick_rate']:.2f} ticks/s, tick→diff p50 {r['latency_p50_ms']} ms, "
                f"p99 {r['latency_p99_ms']} ms, {r['errors']} errors")
            runs.append(r)
    return {"tick_hz": TICK_HZ, "half": HALF, "cell": CELL, "seconds": seconds, "warmup": warmup,
            "target": {"bots": TARGET_BOTS, "tick_rate": TARGET_TICK_RATE},
            "server_cpu_pinned": server_cpu, "loadgen_cpu_pinned": load_cpu, "runs": runs}


# ---------------------------------------------------------------- output

def _f(x: float | None, fmt: str = ".1f") -> str:
    return "–" if x is None else format(x, fmt)


def markdown(res: dict[str, Any]) -> str:
    out = [f"## Arena: bots playing examples/arena/arena.c (tick {res['tick_hz']:g} Hz)", "",
           f"One stdb server (`python -m stdb start`, durable store) on one core, the bots (Node, "
           f"bench/loadgen/arena_bots.js) on the other; each bot subscribes to its player and to the "
           f"region ±{res['half']} units around it (snapped to a {res['cell']} grid) and steers every "
           f"1-2 s. {res['seconds']:g} s measured after {res['warmup']:g} s of warm-up. "
           "Latency: bot's receive time − the tick update's timestamp.", "",
           "| bots | ticks/s committed | ticks/s seen by bots | tick→diff p50 / p99 / max (ms) "
           "| diff bytes / client / tick | bytes / tick update | server CPU (cores) | bots' CPU | errors |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        out.append(f"| {r['bots']} | {_f(r['tick_rate'], '.2f')} | {_f(r['tick_rate_seen'], '.2f')} "
                   f"| {_f(r['latency_p50_ms'])} / {_f(r['latency_p99_ms'])} / {_f(r['latency_max_ms'])} "
                   f"| {_f(r['diff_bytes_per_client_per_tick'], ',.0f')} "
                   f"| {_f(r['tick_message_bytes_mean'], ',.0f')} | {_f(r['server_cpu'], '.2f')} "
                   f"| {_f(r['loadgen_cpu'], '.2f')} | {r['errors']} |")
    errs = [e for r in res["runs"] for e in r.get("first_errors", [])]
    if errs:
        out += ["", "First errors:", *[f"* `{e}`" for e in errs[:10]]]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.arena", description=__doc__.splitlines()[0])
    p.add_argument("--bots", default=None,
                   help="bot counts, comma-separated, a fresh server each (default 50,200)")
    p.add_argument("--seconds", type=float, default=None, help="measured seconds per bot count (default 20)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds after every bot has its region")
    p.add_argument("--quick", action="store_true",
                   help="10 bots, 5 s (unless --bots or --seconds say otherwise)")
    p.add_argument("--out", default=RESULTS_DIR, help="the directory for arena.json and arena.md")
    a = p.parse_args(argv)
    a.bots = a.bots or ("10" if a.quick else "50,200")
    a.seconds = a.seconds or (5.0 if a.quick else 20.0)
    try:
        bots = [int(x) for x in a.bots.split(",") if x]
    except ValueError:
        p.error(f"--bots must be comma-separated integers, not {a.bots!r}")
    if not bots or min(bots) < 1 or a.seconds <= 0:
        p.error("need at least one bot count ≥ 1 and --seconds > 0")
    if shutil.which("node") is None:
        print("python -m bench.arena: node is not installed (the bots are a Node program)", file=sys.stderr)
        return 1
    from bench.machine import machine, save_results
    res = run(bots, a.seconds, a.warmup)
    result = {"machine": {**machine(), **_versions("node")},
              "command": "python -m bench.arena " + " ".join(sys.argv[1:] if argv is None else argv),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **res}
    save_results(a.out, "arena", result, markdown(result))
    print(f"(written to {os.path.join(a.out, 'arena')}.json)")
    return 1 if any(r["errors"] for r in res["runs"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
