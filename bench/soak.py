"""Load and soak (issue 8): many subscribed websocket clients and a steady reducer load, for minutes.

One stdb server (durable store, ``examples/transfer/transfer.c``, 10,000 accounts; started as
``python -m bench.network`` starts it) and one load generator process:

* ``--clients`` subscribers; client i subscribes to ``SELECT * FROM account WHERE id = <i % 100 + 1>``,
  so the 100 hot accounts have ~clients/100 subscribers each;
* ``--callers`` more connections sending an open-loop load of ``--rate`` ``transfer(from, to, 1)``
  calls/s (each end is a hot account with probability ``--hot-prob``, else any account);
* diff latency: from sending a call to each subscriber receiving the TransactionUpdate whose
  ``offset`` is the one the caller's answer carried; every subscriber of a touched hot account
  must receive it, its delete must be the row it last had, and offsets must increase;
* the server's RSS (``/proc/<pid>/status``), CPU and open descriptors sampled every few seconds.

After a warm-up, the measured window runs ``--minutes``; a progress line every 30 s.  Results in
``bench/results/soak-<time>.json`` and ``.md``.  Exit status 1 when anything went wrong: an error
(a call not ``committed``, an ``Error`` message, a connection closed by the server, a diff
missing, unexpected or out of order), the server dying or logging a traceback, or RSS growth
over the second half of the window of ≥ 50 MB and ≥ 10%.

    python -m bench.soak [--clients 1000] [--minutes 10] [--rate 500] [--loadgen node|python] [--out ...]

``--loadgen python`` (trio + trio-websocket; connections closed by the server are not reopened)
is the fallback the smoke test tests/test_bench_soak.py uses; ``python -m bench.soak load ...``
is that process.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import cbor2
import trio

from bench.network import (
    LOADGEN_DIR,
    RESULTS_DIR,
    ROOT,
    TRANSFER_C,
    ServerProcess,
    _call,
    _close_all,
    _emit,
    _pct,
    _proc_cpu,
    _raise_nofile,
    _tail,
    _versions,
    _ws,
    ensure_node,
    setup_stdb,
)

RSS_GROWTH_BYTES = 50 << 20          # "bounded": growth over the second half below this ...
RSS_GROWTH_FRACTION = 0.10           # ... or below this fraction of the RSS at half-time


# ---------------------------------------------------------------- the Python load generator

class _PySoak:
    """The soak mode of bench/loadgen/load.js, in trio (same events and result fields)."""

    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.hot = max(1, min(a.hot, a.accounts))
        self.rng = random.Random(12345)
        self.errors = 0
        self.mismatches = 0
        self.first: list[str] = []
        self.subs_of = [0] * (self.hot + 1)
        self.calls: dict[int, dict] = {}
        self.by_offset: dict[int, dict] = {}
        self.early: dict[int, list[float]] = {}
        self.measuring = self.stopping = self.closing = False
        self.t_win = 0.0
        self.m = self._fresh()

    @staticmethod
    def _fresh() -> dict:
        return {"sent": 0, "answered": 0, "committed": 0, "expected": 0, "delivered": 0, "lat": [],
                "call_lat": [], "interval": [], "max_in_flight": 0, "sec_max": [], "sec_count": []}

    @staticmethod
    def now() -> float:
        return time.perf_counter() * 1e6

    def fail(self, what: str) -> None:
        self.errors += 1
        if len(self.first) < 10:
            self.first.append(what[:400])

    def pick(self) -> int:
        if self.rng.random() < self.a.hot_prob:
            return 1 + self.rng.randrange(self.hot)
        return 1 + self.rng.randrange(self.a.accounts)

    def maybe_done(self, rec: dict) -> None:
        if not rec["answered"] or rec["got"] < rec["expect"]:
            return
        if rec["got"] > rec["expect"]:
            self.fail(f"call {rec['rid']} (offset {rec['offset']}): {rec['got']} diffs delivered, "
                      f"{rec['expect']} expected")
        self.calls.pop(rec["rid"], None)
        if rec["offset"] is not None:
            self.by_offset.pop(rec["offset"], None)
        if self.stopping and not self.calls:
            self.drained.set()

    def deliver(self, rec: dict, t: float) -> None:
        rec["got"] += 1
        if rec["measured"]:
            us = t - rec["t0"]
            self.m["delivered"] += 1
            self.m["lat"].append(us)
            self.m["interval"].append(us)
            sec = max(0, int((t - self.t_win) / 1e6))       # per second of the window: worst latency
            while len(self.m["sec_max"]) <= sec:
                self.m["sec_max"].append(0.0)
                self.m["sec_count"].append(0)
            self.m["sec_max"][sec] = max(self.m["sec_max"][sec], us)
            self.m["sec_count"][sec] += 1
        self.maybe_done(rec)

    def on_sub(self, s: dict, msg: dict) -> None:
        t = self.now()
        if msg.get("type") == "TransactionUpdate" and msg.get("request_id") is None:
            off = msg["offset"]
            u = msg["updates"]
            if not (off > s["last"] and len(u) == 1 and len(u[0]["deletes"]) == 1
                    and len(u[0]["inserts"]) == 1 and u[0]["deletes"][0] == s["row"]
                    and u[0]["inserts"][0][0] == s["acct"]):
                self.mismatches += 1
                self.fail(f"subscriber {s['i']} (account {s['acct']}, row {s['row']}, "
                          f"last offset {s['last']}): unexpected diff {msg!r}")
            s["last"] = off
            if len(u) == 1 and len(u[0]["inserts"]) == 1:
                s["row"] = u[0]["inserts"][0]
            rec = self.by_offset.get(off)
            if rec is not None:
                self.deliver(rec, t)
            else:
                self.early.setdefault(off, []).append(t)
        elif msg.get("type") == "SubscribeApplied" and not s["applied"].is_set():
            q = msg["queries"]
            if len(q) == 1 and len(q[0]["rows"]) == 1:
                s["row"] = q[0]["rows"][0]
                s["live"] = True
                self.subs_of[s["acct"]] += 1
            else:
                self.fail(f"subscriber {s['i']}: {msg!r}")
            s["applied"].set()
        else:
            self.fail(f"subscriber {s['i']}: {msg!r}")
            s["applied"].set()

    def on_caller(self, k: int, msg: dict) -> None:
        t = self.now()
        rid = msg.get("request_id")
        rec = self.calls.get(rid) if isinstance(rid, int) else None
        if rec is None or rec["answered"]:
            self.fail(f"caller {k}: {msg!r}")
            return
        rec["answered"] = True
        if rec["measured"]:
            self.m["answered"] += 1
            self.m["call_lat"].append(t - rec["t0"])
        if msg.get("type") != "TransactionUpdate" or msg.get("status") != "committed" \
                or msg.get("offset") is None:
            self.fail(f"caller {k}: {msg!r}")
            rec["expect"] = 0
            self.maybe_done(rec)
            return
        if rec["measured"]:
            self.m["committed"] += 1
        rec["offset"] = msg["offset"]
        self.by_offset[rec["offset"]] = rec
        for te in self.early.pop(rec["offset"], []):
            self.deliver(rec, te)
        self.maybe_done(rec)

    async def reader(self, ws: Any, who: str, handle: Callable[[dict], None], s: dict | None = None) -> None:
        from trio_websocket import ConnectionClosed
        try:
            while True:
                handle(cbor2.loads(await ws.get_message()))
        except ConnectionClosed as e:
            if not self.closing:
                if s is not None and s["live"]:
                    s["live"] = False
                    self.subs_of[s["acct"]] -= 1
                self.fail(f"{who}: closed by the server: {e.reason}")
                if s is not None:
                    s["applied"].set()

    async def main(self) -> None:
        a = self.a
        self.drained = trio.Event()
        t00 = self.now()
        async with trio.open_nursery() as n:
            subs: list[dict] = []
            for i in range(a.clients):
                s = {"i": i, "acct": i % self.hot + 1, "row": None, "last": -1, "live": False,
                     "applied": trio.Event(), "ws": await _ws(n, a.url)}
                n.start_soon(self.reader, s["ws"], f"subscriber {i}", lambda msg, s=s: self.on_sub(s, msg), s)
                await s["ws"].send_message(cbor2.dumps({"type": "Subscribe", "request_id": 1, "queries": [
                    f"SELECT * FROM account WHERE id = {s['acct']}"]}))
                subs.append(s)
            for s in subs:
                await s["applied"].wait()
            callers = []
            for k in range(a.callers):
                ws = await _ws(n, a.url)
                n.start_soon(self.reader, ws, f"caller {k}", lambda msg, k=k: self.on_caller(k, msg))
                callers.append(ws)
            subscribed = sum(s["live"] for s in subs)
            _emit({"event": "ready", "clients": a.clients, "subscribed": subscribed,
                   "connect_seconds": (self.now() - t00) / 1e6})

            async def sender() -> None:
                t_load, sent, rid = self.now(), 0, 0
                while not self.stopping:
                    due = int((self.now() - t_load) * a.rate / 1e6)
                    while sent < due and not self.stopping:
                        sent += 1
                        frm, to = self.pick(), self.pick()
                        if to == frm:
                            to = to % a.accounts + 1
                        rid += 1
                        expect = (self.subs_of[frm] if frm <= self.hot else 0) + \
                            (self.subs_of[to] if to <= self.hot else 0)
                        rec = {"rid": rid, "t0": self.now(), "expect": expect, "got": 0, "offset": None,
                               "answered": False, "measured": self.measuring}
                        self.calls[rid] = rec
                        if self.measuring:
                            self.m["sent"] += 1
                            self.m["expected"] += expect
                        await callers[rid % len(callers)].send_message(_call(rid, "transfer", [frm, to, 1]))
                    self.m["max_in_flight"] = max(self.m["max_in_flight"], len(self.calls))
                    await trio.sleep(0.001)

            async with trio.open_nursery() as load:
                load.start_soon(sender)
                await trio.sleep(a.warmup)
                self.m = self._fresh()
                self.measuring = True
                cpu0, t0 = time.process_time(), self.now()
                self.t_win = t0
                _emit({"event": "start"})
                cpu_last, t_last = cpu0, t0
                end, next_p = t0 + a.seconds * 1e6, t0 + a.progress * 1e6
                while self.now() < end:
                    if next_p >= end:
                        await trio.sleep((end - self.now()) / 1e6)
                        break
                    await trio.sleep(max(0.0, (next_p - self.now()) / 1e6))
                    next_p += a.progress * 1e6
                    t = self.now()
                    iv = sorted(self.m["interval"])
                    lat = sorted(self.m["lat"])
                    _emit({"event": "progress", "elapsed_s": (t - t0) / 1e6, "sent": self.m["sent"],
                           "answered": self.m["answered"], "committed": self.m["committed"],
                           "delivered": self.m["delivered"], "expected": self.m["expected"],
                           "in_flight": len(self.calls), "errors": self.errors, "reconnects": 0,
                           "p99_ms": _ms(_pct(lat, 0.99)), "interval_p50_ms": _ms(_pct(iv, 0.5)),
                           "interval_p99_ms": _ms(_pct(iv, 0.99)),
                           "interval_max_ms": _ms(iv[-1] if iv else None),
                           "loadgen_cpu": (time.process_time() - cpu_last) / ((t - t_last) / 1e6)})
                    self.m["interval"] = []
                    cpu_last, t_last = time.process_time(), t
                self.measuring = False
                self.stopping = True
                wall, cpu = self.now() - t0, time.process_time() - cpu0
            _emit({"event": "stop"})
            if self.calls:
                with trio.move_on_after(a.drain):
                    await self.drained.wait()
            measured = [r for r in self.calls.values() if r["measured"]]
            unanswered = sum(not r["answered"] for r in measured)
            missing = sum(max(0, r["expect"] - r["got"]) for r in measured if r["answered"])
            unmatched = sum(len(v) for v in self.early.values())
            if unanswered:
                self.fail(f"{unanswered} calls unanswered {a.drain:g} s after the load stopped")
            if missing:
                self.fail(f"{missing} diffs not delivered {a.drain:g} s after the load stopped")
            if unmatched:
                self.fail(f"{unmatched} diffs with an offset no call's answer carried")
            lat, cl = sorted(self.m["lat"]), sorted(self.m["call_lat"])
            _emit({"event": "result", "mode": "soak", "loadgen": "python", "clients": a.clients,
                   "subscribed": subscribed, "callers": a.callers, "rate": a.rate, "hot": self.hot,
                   "hot_prob": a.hot_prob, "seconds": wall / 1e6, "warmup": a.warmup,
                   "calls_sent": self.m["sent"], "calls_answered": self.m["answered"],
                   "calls_committed": self.m["committed"], "calls_per_s": self.m["committed"] / (wall / 1e6),
                   "calls_unanswered": unanswered, "diffs_expected": self.m["expected"],
                   "diffs_delivered": self.m["delivered"], "diffs_missing": missing,
                   "diffs_unmatched": unmatched, "diff_mismatches": self.mismatches,
                   "diff_p50_ms": _ms(_pct(lat, 0.5)), "diff_p99_ms": _ms(_pct(lat, 0.99)),
                   "diff_p999_ms": _ms(_pct(lat, 0.999)), "diff_max_ms": _ms(lat[-1] if lat else None),
                   "call_p50_ms": _ms(_pct(cl, 0.5)), "call_p99_ms": _ms(_pct(cl, 0.99)),
                   "call_max_ms": _ms(cl[-1] if cl else None), "max_in_flight": self.m["max_in_flight"],
                   "errors": self.errors, "reconnects": 0, "first_errors": self.first,
                   "loadgen_cpu": cpu / (wall / 1e6),
                   "per_second": {"max_ms": [round(x) / 1e3 for x in self.m["sec_max"]],
                                  "diffs": self.m["sec_count"]}})
            self.closing = True
            await _close_all([*(s["ws"] for s in subs), *callers])
            n.cancel_scope.cancel()


def _ms(us: float | None) -> float | None:
    return None if us is None else us / 1e3


# ---------------------------------------------------------------- sampling the server

def _proc_status(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile (bytes) of a process; {} once it is gone."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        return {}
    return out


def _runq_wait(pid: int) -> float | None:
    """Seconds the process's main thread (stdb's trio thread) has waited for a CPU while runnable."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def _fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def _du(path: str | None) -> int | None:
    """Bytes in the files under ``path`` (the server's data: each database's LMDB file)."""
    if path is None:
        return None
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


class Sampler(threading.Thread):
    """Samples a process's RSS, CPU and descriptors every ``every`` seconds (t: time.monotonic())."""

    def __init__(self, pid: int, every: float, data_dir: str | None = None) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.data_dir = pid, every, data_dir
        self.samples: list[dict[str, Any]] = []
        self._halt = threading.Event()

    def sample(self) -> dict[str, Any] | None:
        st = _proc_status(self.pid)
        if not st:
            return None
        s = {"t": time.monotonic(), "rss": st.get("VmRSS"), "rss_anon": st.get("RssAnon"),
             "rss_file": st.get("RssFile"), "hwm": st.get("VmHWM"), "cpu_s": _proc_cpu(self.pid),
             "runq_wait_s": _runq_wait(self.pid), "fds": _fds(self.pid), "data_bytes": _du(self.data_dir)}
        self.samples.append(s)
        return s

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def latest(self) -> dict[str, Any] | None:
        return self.samples[-1] if self.samples else None


def rss_report(samples: list[dict[str, Any]], t_start: float, t_stop: float) -> dict[str, Any]:
    """RSS over the measured window: start, max, end, the growth over its second half and whether
    that is bounded (< 50 MB or < 10% of the RSS at half-time)."""
    win = [s for s in samples if t_start <= s["t"] <= t_stop and s["rss"] is not None]
    if len(win) < 2:
        return {"samples": len(win), "bounded": None}
    mid_t = t_start + (t_stop - t_start) / 2
    mid = next(s for s in win if s["t"] >= mid_t) if any(s["t"] >= mid_t for s in win) else win[-1]
    start, end = win[0], win[-1]
    growth = end["rss"] - mid["rss"]
    dt = (end["t"] - start["t"]) or None
    return {"samples": len(win), "start": start["rss"], "mid": mid["rss"], "end": end["rss"],
            "max": max(s["rss"] for s in win), "min": min(s["rss"] for s in win),
            "anon_start": start["rss_anon"], "anon_end": end["rss_anon"],
            "file_start": start["rss_file"], "file_end": end["rss_file"],
            "growth_second_half": growth,
            "bounded": growth < RSS_GROWTH_BYTES or growth < RSS_GROWTH_FRACTION * mid["rss"],
            "server_cpu": ((end["cpu_s"] - start["cpu_s"]) / dt
                           if dt and end["cpu_s"] is not None and start["cpu_s"] is not None else None),
            "fds_start": start["fds"], "fds_end": end["fds"], "fds_max": max(s["fds"] or 0 for s in win),
            "data_bytes_start": start.get("data_bytes"), "data_bytes_end": end.get("data_bytes")}


def stalls(per_second_max_ms: list[float], samples: list[dict[str, Any]], t_start: float,
           n: int = 5) -> list[dict[str, Any]]:
    """The ``n`` seconds of the window whose worst diff latency was highest, each with what the
    server did over the time before it that the latency spans (from the samples around it): its
    CPU use and how much of that time its trio thread waited for a CPU (starved by other
    processes) — low CPU with little waiting means it was blocked (I/O, a lock)."""
    worst = sorted(range(len(per_second_max_ms)), key=lambda i: -per_second_max_ms[i])[:n]
    out = []
    for sec in sorted(worst):
        lat = per_second_max_ms[sec]
        lo, hi = t_start + sec - lat / 1e3, t_start + sec + 1
        pairs = [(a, b) for a, b in itertools.pairwise(samples) if b["t"] > lo and a["t"] < hi]
        dt = sum(b["t"] - a["t"] for a, b in pairs)
        cpu = wait = None
        if pairs and dt > 0 and all(a["cpu_s"] is not None and b["cpu_s"] is not None for a, b in pairs):
            cpu = sum(b["cpu_s"] - a["cpu_s"] for a, b in pairs) / dt
        if pairs and dt > 0 and all(a["runq_wait_s"] is not None and b["runq_wait_s"] is not None
                                    for a, b in pairs):
            wait = sum(b["runq_wait_s"] - a["runq_wait_s"] for a, b in pairs) / dt
        out.append({"second": sec, "max_ms": lat, "server_cpu": cpu, "server_runq_wait": wait,
                    "sampled_seconds": dt})
    return out


# ---------------------------------------------------------------- the run

def _mb(b: float | None) -> str:
    return "–" if b is None else f"{b / (1 << 20):,.1f} MB"


def run(clients: int = 1000, seconds: float = 600.0, rate: float = 500.0, loadgen: str = "node",
        accounts: int = 10_000, hot: int = 100, hot_prob: float = 0.25, callers: int = 4,
        warmup: float = 10.0, progress: float = 30.0, sample: float = 2.0, drain: float = 10.0,
        say: Callable[[str], None] = lambda s: print(s, flush=True)) -> dict:
    """One soak run; returns the results (without machine info) with ``ok`` set."""
    import stdb
    if loadgen == "node":
        ensure_node()
    _raise_nofile(2 * (clients + callers) + 1024)   # inherited by the server and the load generator
    tmp = tempfile.mkdtemp(prefix="stdb-soak-")
    server: ServerProcess | None = None
    sampler: Sampler | None = None
    result: dict | None = None
    progress_lines: list[dict] = []
    t_start = t_stop = None
    load_avg = [os.getloadavg()]
    try:
        wasm_path = stdb.build_module(TRANSFER_C, os.path.join(tmp, "transfer.wasm"))
        with open(wasm_path, "rb") as f:
            wasm = f.read()
        data_dir = os.path.join(tmp, "data")
        server = ServerProcess("stdb", ["--data", data_dir], tmp, None)
        server.wait_ready()
        sampler = Sampler(server.pid, sample, data_dir)
        sampler.start()
        say(f"setting up: publish transfer.wasm, create {accounts:,} accounts ...")
        trio.run(setup_stdb, server.url(), wasm, accounts)
        args = [server.url(), str(clients), str(seconds), "soak", str(accounts), "--warmup", str(warmup),
                "--rate", str(rate), "--callers", str(callers), "--hot", str(hot),
                "--hot-prob", str(hot_prob), "--progress", str(progress), "--drain", str(drain)]
        if loadgen == "node":
            cmd = [ensure_node(), os.path.join(LOADGEN_DIR, "load.js"), *args]
        else:
            cmd = [sys.executable, "-m", "bench.soak", "load", *args]
        errlog = os.path.join(tmp, "loadgen.log")
        say(f"{clients:,} subscribers + {callers} callers ({loadgen} load generator), {rate:g} transfers/s, "
            f"{warmup:g} s warm-up + {seconds:g} s ...")
        with open(errlog, "w") as err:
            p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
        timer = threading.Timer(warmup + seconds + drain + clients * 0.1 + 120, p.kill)
        timer.start()
        try:
            assert p.stdout is not None
            for line in p.stdout:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                kind = ev.get("event")
                if kind == "ready":
                    say(f"  {ev['subscribed']:,} of {ev['clients']:,} subscribed in "
                        f"{ev['connect_seconds']:.1f} s; warming up ...")
                elif kind == "start":
                    t_start = time.monotonic()
                    sampler.sample()
                    load_avg.append(os.getloadavg())
                elif kind == "progress":
                    s = sampler.latest() or {}
                    ev["rss"] = s.get("rss")
                    progress_lines.append(ev)
                    el = max(ev["elapsed_s"], 1e-9)
                    say(f"  [{ev['elapsed_s']:5.0f} s] calls {ev['committed']:,} "
                        f"({ev['committed'] / el:,.0f}/s), diffs {ev['delivered']:,}, p99 so far "
                        f"{_f(ev['p99_ms'])} ms (last interval p50 {_f(ev['interval_p50_ms'])} / p99 "
                        f"{_f(ev['interval_p99_ms'])} / max {_f(ev['interval_max_ms'])} ms), "
                        f"in flight {ev['in_flight']}, errors {ev['errors']}, RSS {_mb(ev['rss'])}")
                elif kind == "stop":
                    sampler.sample()
                    t_stop = time.monotonic()
                    load_avg.append(os.getloadavg())
                elif kind == "result":
                    result = ev
            p.wait()
        finally:
            timer.cancel()
            if p.poll() is None:
                p.kill()
                p.wait()
        if result is None:
            raise RuntimeError(f"the {loadgen} load generator gave no result (exit {p.returncode}):\n"
                               f"{_tail(errlog)}")
        server_alive = server.proc.poll() is None
    except BaseException:
        if server is not None:
            say(f"--- the server's log (exit code {server.proc.poll()}):\n{_tail(server.log)}")
        raise
    finally:
        try:
            if sampler is not None:
                sampler.stop()
        finally:
            if server is not None:
                server.stop()
            log_text = _tail(server.log, 10**8) if server is not None else ""
            shutil.rmtree(tmp, ignore_errors=True)
    result.pop("event", None)
    rss = rss_report(sampler.samples, t_start, t_stop) if t_start and t_stop else {"bounded": None}
    per_second = result.get("per_second", {}).get("max_ms", [])
    worst = stalls(per_second, sampler.samples, t_start) if t_start else []
    t0 = sampler.samples[0]["t"] if sampler.samples else 0.0
    log_lines = [ln for ln in log_text.splitlines()
                 if " WARNING " in ln or " ERROR " in ln or " CRITICAL " in ln]
    res: dict[str, Any] = {
        "config": {"clients": clients, "seconds": seconds, "rate": rate, "loadgen": loadgen,
                   "accounts": accounts, "hot": hot, "hot_prob": hot_prob, "callers": callers,
                   "warmup": warmup, "sample_every": sample,
                   "store": "durable (StoreConfig default: one fsync per group commit, a snapshot "
                            "every 100,000 commits)", "pinned": False},
        "load": result, "rss": rss, "server_alive": server_alive,
        "server_log": {"tracebacks": log_text.count("Traceback"), "warnings_or_errors": len(log_lines),
                       "first": log_lines[:10]},
        "load_average": {"before": load_avg[0], "at_start": load_avg[1] if len(load_avg) > 1 else None,
                         "at_stop": load_avg[2] if len(load_avg) > 2 else None},
        "stalls": worst,
        "progress": progress_lines,
        "rss_samples": [{"t": round(s["t"] - t0, 2), "rss": s["rss"], "rss_anon": s["rss_anon"],
                         "rss_file": s["rss_file"], "cpu_s": s["cpu_s"], "runq_wait_s": s["runq_wait_s"],
                         "fds": s["fds"], "data_bytes": s.get("data_bytes")}
                        for s in sampler.samples],
        "window": {"start_t": round(t_start - t0, 2) if t_start else None,
                   "stop_t": round(t_stop - t0, 2) if t_stop else None}}
    res["ok"] = (result["errors"] == 0 and server_alive and res["server_log"]["tracebacks"] == 0
                 and rss.get("bounded") is True)
    return res


def _f(x: float | None, fmt: str = ",.1f") -> str:
    return "–" if x is None else format(x, fmt)


def markdown(res: dict) -> str:
    c, ld, r = res["config"], res["load"], res["rss"]
    lines = [
        f"Soak: {c['clients']:,} websocket clients ({ld['subscribed']:,} subscribed) + {c['callers']} "
        f"callers, open-loop `transfer` at {c['rate']:g} calls/s ({c['hot']} hot accounts, each end hot with "
        f"probability {c['hot_prob']:g}), {ld['seconds']:.0f} s measured after {c['warmup']:g} s warm-up, "
        f"{c['loadgen']} load generator, stdb store durable.", "",
        "| | |", "|---|---|",
        f"| calls committed | {ld['calls_committed']:,} of {ld['calls_sent']:,} sent "
        f"({ld['calls_per_s']:,.1f}/s) |",
        f"| diffs delivered | {ld['diffs_delivered']:,} of {ld['diffs_expected']:,} expected |",
        f"| commit-to-diff latency p50 / p99 / p99.9 / max | {_f(ld['diff_p50_ms'])} / "
        f"{_f(ld['diff_p99_ms'])} / {_f(ld['diff_p999_ms'])} / {_f(ld['diff_max_ms'])} ms |",
        f"| caller's answer p50 / p99 / max | {_f(ld['call_p50_ms'])} / {_f(ld['call_p99_ms'])} / "
        f"{_f(ld['call_max_ms'])} ms |",
        f"| most calls in flight | {ld['max_in_flight']:,} |",
        f"| errors / reconnects | {ld['errors']} / {ld['reconnects']} |",
        f"| server RSS start / max / end | {_mb(r.get('start'))} / {_mb(r.get('max'))} / {_mb(r.get('end'))} "
        f"(anon {_mb(r.get('anon_start'))} → {_mb(r.get('anon_end'))}, file {_mb(r.get('file_start'))} → "
        f"{_mb(r.get('file_end'))}) |",
        f"| RSS growth over the second half | {_mb(r.get('growth_second_half'))}: "
        f"{ {True: 'bounded', False: 'NOT bounded'}.get(r.get('bounded'), 'not measured')} "
        f"(< 50 MB or < 10%) |",
        f"| server CPU, open fds (start / end) | {_f(r.get('server_cpu'), '.2f')} cores, "
        f"{r.get('fds_start')} / {r.get('fds_end')} |",
        f"| the server's data files (start / end) | {_mb(r.get('data_bytes_start'))} / "
        f"{_mb(r.get('data_bytes_end'))} |",
        f"| load generator CPU | {_f(ld['loadgen_cpu'], '.2f')} cores |",
        f"| server alive at the end, tracebacks in its log | {'yes' if res['server_alive'] else 'NO'}, "
        f"{res['server_log']['tracebacks']} |",
        "| worst seconds (diff latency; server CPU and its trio thread's wait for a CPU, in cores, "
        "over that time) | " + "; ".join(
            f"{w['second']} s: {_f(w['max_ms'], ',.0f')} ms (CPU {_f(w['server_cpu'], '.2f')}, "
            f"waiting {_f(w['server_runq_wait'], '.2f')})" for w in res.get("stalls", [])) + " |",
        "", f"Result: **{'OK' if res['ok'] else 'FAILED'}**."]
    if ld["first_errors"]:
        lines += ["", "First errors:", *(f"* `{e}`" for e in ld["first_errors"][:5])]
    if res["server_log"]["first"]:
        lines += ["", "Server log warnings/errors:", *(f"* `{e}`" for e in res["server_log"]["first"][:5])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "load":
        return _load(argv[1:])
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=1000, help="subscribed websocket clients")
    p.add_argument("--minutes", type=float, default=10.0, help="measured minutes (after the warm-up)")
    p.add_argument("--rate", type=float, default=500.0, help="transfer calls per second (open loop)")
    p.add_argument("--callers", type=int, default=4, help="connections the calls are spread over")
    p.add_argument("--accounts", type=int, default=10_000)
    p.add_argument("--hot", type=int, default=100, help="accounts the subscribers watch")
    p.add_argument("--hot-prob", type=float, default=0.25, help="chance that each end of a transfer is hot")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds of load before measuring")
    p.add_argument("--progress", type=float, default=30.0, help="seconds between progress lines")
    p.add_argument("--loadgen", choices=("node", "python"), default="node")
    p.add_argument("--out", default=RESULTS_DIR, help="a directory, or the .json file to write")
    a = p.parse_args(argv)
    if a.loadgen == "node" and shutil.which("node") is None:
        print("node is not installed: using the Python load generator instead (--loadgen python)", flush=True)
        a.loadgen = "python"
    from bench.machine import machine, save_results
    res = run(a.clients, a.minutes * 60, a.rate, a.loadgen, a.accounts, a.hot, a.hot_prob, a.callers,
              a.warmup, a.progress)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out_dir, name = a.out, f"soak-{stamp}"
    if a.out.endswith(".json"):
        out_dir, name = os.path.dirname(a.out) or ".", os.path.basename(a.out)[:-5]
    result = {"machine": {**machine(), **_versions(a.loadgen)},
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "command": "python -m bench.soak " + " ".join(argv), **res}
    save_results(out_dir, name, result, markdown(result))
    print(f"(written to {os.path.join(out_dir, name)}.json)")
    return 0 if res["ok"] else 1


def _load(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak load",
                                description="the Python load generator (as bench/loadgen/load.js soak)")
    p.add_argument("url")
    p.add_argument("clients", type=int)
    p.add_argument("seconds", type=float)
    p.add_argument("mode", choices=("soak",))
    p.add_argument("accounts", type=int)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--rate", type=float, default=500.0)
    p.add_argument("--callers", type=int, default=4)
    p.add_argument("--hot", type=int, default=100)
    p.add_argument("--hot-prob", type=float, default=0.25)
    p.add_argument("--progress", type=float, default=30.0)
    p.add_argument("--drain", type=float, default=10.0)
    a = p.parse_args(argv)
    trio.run(_PySoak(a).main)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
