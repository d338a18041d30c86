"""The replication benchmark (issue 26): replica lag under load, and fan-out over three nodes.

A cluster on loopback (fuzz/cluster.py, docs/replication.md): three nats-servers with JetStream
in one NATS cluster, a leader (node ``a``) and two followers (``b``, ``c``), each ``stdb start
--follow`` with the defaults (``--replicas 3``, ``--confirm quorum``, ``--lease-ttl 3``);
examples/transfer published on the leader with ``--accounts`` accounts.

* **Lag under load** — bench/network.py's headline load (``--clients`` closed-loop clients of
  bench/loadgen/load.js calling ``transfer(from, to, 1)``, uniform accounts, not confirmed) for
  ``--seconds`` against the leader and, unless ``--no-confirmed``, the same with
  ``?confirmed=true`` (the answer waits for the fsync and JetStream's quorum).  Before the
  cluster starts, the same loads against a standalone ``stdb start`` (no ``--follow``); after the
  fan-out, the not confirmed load once more on the leader with both followers stopped (it still
  publishes to JetStream): calls/s and the server's CPU per call with and without replication,
  and how much of the difference is the followers' share of the machine.
* **Replica lag** is measured by a probe: one subscriber on each node to ``SELECT * FROM
  account WHERE id <= K`` (K = 1% of the accounts, so ~2% of the commits reach it), all in one
  thread of this process, on one clock; a follower's lag for a commit is the time its subscriber
  received the commit's TransactionUpdate minus the time the leader's subscriber received the
  same offset's, over the commits the leader's subscriber received in the measured window.  Also
  each node's commit-to-diff (arrival minus the TransactionUpdate's commit timestamp), the worst
  lag of each second, and, for comparison, what the followers report in ``stdb status``
  (publish-to-apply: JetStream's stored timestamp to the apply, over their last 10,000
  messages).  The standalone server and the lone leader have the probe's one subscriber too.
* **Fan-out** — load.js's fan-out mode: ``--fanout`` subscribers to ``SELECT * FROM account
  WHERE id = 1`` and one caller on the leader calling ``transfer(1, 2, 1)`` ``--trials`` times;
  (a) every subscriber on the leader, (b) spread over the three nodes (subscriber i on node
  i % 3: 334 / 333 / 333).  Per node and overall: the time from the call to the last
  subscriber's diff (median / p99 over the trials) and every delivery's latency (p50 / p99); the
  leader's CPU per trial over the trials' window, less its idle CPU (measured for 3 s before).

The leader (and the standalone server) is pinned to one CPU and the load generator to the other,
as in bench/network.py; the followers, the NATS servers and the probe are not pinned (on a
2-core machine they share the CPUs with both: see the CPU columns).

    python -m bench.replication [--seconds 20] [--quick] [--clients 50] [--accounts 10000]
                                [--fanout 1000] [--trials 50] [--no-confirmed] [--out DIR|FILE.json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import cbor2
import trio

from bench import network as net

ROOT = net.ROOT
DATABASE = net.DATABASE
NAMES = ("a", "b", "c")                 # a leads; b and c follow
LEASE_TTL = 3.0                         # stdb start's default
IDLE_SECONDS = 3.0                      # the leader's idle CPU, measured before the fan-out
Say = Callable[[str], None]


# ---------------------------------------------------------------- small helpers

def _pct(xs: list[float], q: float) -> float | None:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * q))] if s else None


def _ms(x: float | None, fmt: str = ",.1f") -> str:
    return "–" if x is None else format(x, fmt) + " ms"


def _n(x: float | None, fmt: str = ",.0f") -> str:
    return "–" if x is None else format(x, fmt)


def pin(pid: int, cpu: int | None) -> None:
    """Every thread of ``pid`` onto ``cpu`` (threads it starts later inherit it)."""
    if cpu is None:
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), {cpu})
        except OSError:
            pass                         # a thread that just ended


def machine_busy() -> float | None:
    """CPU seconds the whole machine has been busy (not idle, not waiting for I/O) so far."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def run_queue_wait(pid: int) -> float | None:
    """Seconds the threads of ``pid`` have spent runnable but waiting for a CPU (schedstat)."""
    total, found = 0, False
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
                found = True
        except (OSError, ValueError, IndexError):
            pass                             # a thread that just ended
    return total / 1e9 if found else None


class CpuMeter:
    """CPU seconds of named processes between ``start()`` and ``stop()``, as cores over that time
    (``machine``: every process's, busy cores of the whole machine), and the time their threads
    were runnable but waiting for a CPU, as a share of that time (``waiting``)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.t0 = 0.0
        self.c0: dict[str, float | None] = {}
        self.w0: dict[str, float | None] = {}
        self.cores: dict[str, float | None] = {}
        self.seconds: dict[str, float | None] = {}
        self.waiting: dict[str, float | None] = {}
        self.wall = 0.0

    def start(self) -> None:
        self.c0 = {k: net._proc_cpu(p) for k, p in self.pids.items()}
        self.c0["machine"] = machine_busy()
        self.w0 = {k: run_queue_wait(p) for k, p in self.pids.items()}
        self.t0 = time.perf_counter()

    def stop(self) -> None:
        self.wall = wall = time.perf_counter() - self.t0
        for k, p in [*self.pids.items(), ("machine", 0)]:
            c1, c0 = net._proc_cpu(p) if p else machine_busy(), self.c0.get(k)
            self.seconds[k] = sec = None if c1 is None or c0 is None else c1 - c0
            self.cores[k] = None if sec is None or wall <= 0 else sec / wall
        for k, p in self.pids.items():
            w1, w0 = run_queue_wait(p), self.w0.get(k)
            self.waiting[k] = None if w1 is None or w0 is None or wall <= 0 else (w1 - w0) / wall

    def on_event(self, ev: dict) -> None:
        """For run_loadgen: the load generator's measured window."""
        if ev.get("event") == "start":
            self.start()
        elif ev.get("event") == "result":
            self.stop()


# ---------------------------------------------------------------- the lag probe

class LagProbe:
    """One subscriber per node to ``sql``, in a thread of its own (its own trio run).  ``seen[node]``:
    commit offset -> (time.time() at arrival, the TransactionUpdate's commit timestamp in s)."""

    def __init__(self, urls: dict[str, str], sql: str) -> None:
        self.urls = urls
        self.sql = sql
        self.seen: dict[str, dict[int, tuple[float, float]]] = {k: {} for k in urls}
        self.errors: list[str] = []
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="lag-probe", daemon=True)

    def start(self, timeout: float = 60) -> None:
        self._thread.start()
        if not self.ready.wait(timeout) or self.errors:
            self._stop.set()
            raise RuntimeError(f"the lag probe did not subscribe within {timeout:g} s: {self.errors[:3]}")

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _main(self) -> None:
        try:
            trio.run(self._run)
        except BaseException as e:       # reported by start() and in the results
            self.errors.append(f"probe: {e!r}")
        finally:
            self.ready.set()

    async def _run(self) -> None:
        async with trio.open_nursery() as n:
            subscribed = 0
            for name, url in self.urls.items():
                ws = await net._ws(n, url)
                await ws.send_message(cbor2.dumps({"type": "Subscribe", "request_id": 1,
                                                   "queries": [self.sql]}))
                msg = cbor2.loads(await ws.get_message())
                if msg.get("type") != "SubscribeApplied":
                    raise RuntimeError(f"{name}: {msg!r:.300}")
                subscribed += 1
                n.start_soon(self._listen, name, ws)
            self.ready.set()
            while not self._stop.is_set():
                await trio.sleep(0.05)
            n.cancel_scope.cancel()

    async def _listen(self, name: str, ws: Any) -> None:
        seen = self.seen[name]
        while True:
            data = await ws.get_message()
            t = time.time()
            msg = cbor2.loads(data)
            if msg.get("type") == "TransactionUpdate" and msg.get("offset") is not None:
                seen[int(msg["offset"])] = (t, msg["timestamp"] / 1e6)
            else:
                self.errors.append(f"{name}: {msg!r:.300}")

    def caught_up(self) -> bool:
        """Every offset the leader's subscriber saw has reached the followers' too."""
        lead, *rest = self.urls
        want = set(self.seen[lead])
        return all(want <= set(self.seen[f]) for f in rest)

    def summary(self, t0: float, t1: float) -> dict[str, Any]:
        """The commits whose diff reached the leader's subscriber in [t0, t1] (time.time())."""
        lead, *rest = self.urls
        offs = sorted(o for o, (t, _) in self.seen[lead].items() if t0 <= t <= t1)
        out: dict[str, Any] = {"samples": len(offs), "commit_to_diff": {}, "lag": {}}
        for name in self.urls:
            got = [self.seen[name][o] for o in offs if o in self.seen[name]]
            c2d = [(t - ts) * 1e3 for t, ts in got]
            out["commit_to_diff"][name] = {"p50_ms": _pct(c2d, 0.5), "p99_ms": _pct(c2d, 0.99),
                                           "max_ms": max(c2d, default=None), "samples": len(c2d)}
        for f in rest:
            pairs = [(self.seen[lead][o][0], self.seen[f][o][0]) for o in offs if o in self.seen[f]]
            lag = [(tf - tl) * 1e3 for tl, tf in pairs]
            per_s: list[float] = []                     # the worst lag of each second of the window
            for tl, tf in pairs:
                k = int(tl - t0)
                per_s += [0.0] * (k + 1 - len(per_s))
                per_s[k] = max(per_s[k], (tf - tl) * 1e3)
            out["lag"][f] = {"p50_ms": _pct(lag, 0.5), "p99_ms": _pct(lag, 0.99),
                             "max_ms": max(lag, default=None),
                             "mean_ms": statistics.fmean(lag) if lag else None, "samples": len(lag),
                             "missing": len(offs) - len(lag), "negative": sum(1 for x in lag if x < 0),
                             "per_second_max_ms": [round(x, 2) for x in per_s]}
        return out


# ---------------------------------------------------------------- the cluster's status

def _status(nats_url: str) -> dict[str, dict[str, Any]]:
    """node -> its last report (role, and the bank database's state)."""
    from fuzz.cluster import status
    return {n["node"]: n for n in status(nats_url)["nodes"]}


def _db(report: dict[str, Any]) -> dict[str, Any]:
    return report.get("databases", {}).get(DATABASE) or {}


def wait_replicated(nats_url: str, timeout: float = 120) -> dict[str, dict[str, Any]]:
    """Until both followers report the leader's next offset (after a report newer than now)."""
    t = time.time()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st = _status(nats_url)
        if all(n in st and st[n].get("updated", 0) > t for n in NAMES):
            nxt = _db(st["a"]).get("next_offset")
            if nxt and all(_db(st[f]).get("next_offset") == nxt for f in NAMES[1:]):
                return st
        time.sleep(0.3)
    raise RuntimeError(f"the followers did not catch up with the leader within {timeout:g} s: "
                       f"{ {n: _db(r) for n, r in _status(nats_url).items()} }")


# ---------------------------------------------------------------- the parts

def db_url(node_url: str, query: str = "") -> str:
    return f"{node_url}/v1/database/{DATABASE}" + (f"?{query}" if query else "")


def probe_sql(accounts: int) -> str:
    return f"SELECT * FROM account WHERE id <= {max(1, accounts // 100)}"


def measure(b: Settings, urls: dict[str, str], query: str, pids: dict[str, int], server: str,
            say: Say, label: str) -> dict[str, Any]:
    """One transfer load against ``urls``' first node (``query``: the URL's query string), the
    probe subscribed on every node of ``urls``; CPU of ``pids`` over the measured window."""
    probe = LagProbe({n: db_url(u) for n, u in urls.items()}, probe_sql(b.accounts))
    probe.start()
    meter = CpuMeter(pids)
    edges: list[float] = []

    def on_event(ev: dict) -> None:
        if ev.get("event") in ("start", "result"):
            edges.append(time.time())
        meter.on_event(ev)
    try:
        r = net.run_load("node", db_url(next(iter(urls.values())), query), b.clients, b.seconds, "transfer",
                         b.accounts, warmup=b.warmup, cpu=b.load_cpu, tmp=b.tmp, on_event=on_event)
        t_end = time.time()
        deadline = time.monotonic() + 120
        while not probe.caught_up() and time.monotonic() < deadline:
            time.sleep(0.05)
        caught_up = time.time() - t_end if probe.caught_up() else None
    finally:
        probe.stop()
    calls, sec = r["messages"], meter.seconds.get(server)
    row = {**{k: r.get(k) for k in ("clients", "messages", "seconds", "msg_per_s", "p50_us", "p99_us",
                                    "errors", "first_errors", "loadgen_cpu")},
           "cpu_cores": meter.cores, "server_cpu_us_per_call": sec / calls * 1e6 if sec and calls else None,
           "cpu_waiting": meter.waiting, **probe.summary(edges[0], edges[1]),
           "probe_errors": probe.errors[:5],
           "caught_up_after_s": caught_up}
    lag = "; lag " + ", ".join(f"{f} p50 {_ms(row['lag'][f]['p50_ms'])} p99 {_ms(row['lag'][f]['p99_ms'])}"
                               for f in row["lag"]) if row["lag"] else ""
    say(f"  {label}: {r['msg_per_s']:,.0f} calls/s, p50 {r['p50_us'] / 1e3:.1f} ms, "
        f"p99 {r['p99_us'] / 1e3:.1f} ms, {label.split()[0]} CPU {_n(meter.cores[server], '.2f')}, "
        f"machine {_n(meter.cores['machine'], '.2f')} cores busy{lag} ({row['samples']} commits sampled)")
    time.sleep(0.3)                      # let the server settle the closed connections
    return row


def standalone_loads(b: Settings, wasm: bytes, say: Say) -> dict[str, Any]:
    """The loads against one ``stdb start`` server (no --follow)."""
    tmp = b.tmp
    sp = net.ServerProcess("stdb", [], tmp, b.server_cpu, name="standalone", cmd=lambda port: [
        sys.executable, "-m", "stdb", "start", "--data", os.path.join(tmp, "standalone"),
        "--listen", f"127.0.0.1:{port}", "--log-level", "warning"])
    out: dict[str, Any] = {}
    try:
        sp.wait_ready()
        say(f"standalone stdb start: publish transfer.wasm, create {b.accounts:,} accounts ...")
        trio.run(net.setup_stdb, sp.url(), wasm, b.accounts)
        for key, query in b.modes():
            out[key] = measure(b, {"server": f"ws://127.0.0.1:{sp.port}"}, query, {"server": sp.pid},
                               "server", say, "standalone" + " confirmed" * bool(query))
    finally:
        sp.stop()
        out["log_tracebacks"] = net._tail(sp.log, 10**7).count("Traceback")
    return out


def cluster_loads(b: Settings, nats_url: str, urls: dict[str, str], pids: dict[str, int],
                  say: Say) -> dict[str, Any]:
    """The loads against the leader, the probe listening on every node."""
    out: dict[str, Any] = {}
    for key, query in b.modes():
        before = wait_replicated(nats_url)
        row = measure(b, urls, query, pids, "a", say, "leader" + " confirmed" * bool(query))
        after = wait_replicated(nats_url)
        row["leader_after"] = [n for n, rep in after.items() if rep.get("role") == "leader"]
        row["status"] = {}
        for f in NAMES[1:]:
            d0, d1 = _db(before[f]), _db(after[f])
            row["status"][f] = {"lag_ms_p50": d1.get("lag_ms_p50"), "lag_ms_p99": d1.get("lag_ms_p99"),
                                "messages": d1.get("applied_seq", 0) - d0.get("applied_seq", 0),
                                "records": d1.get("next_offset", 0) - d0.get("next_offset", 0)}
        out[key] = row
    return out


def fanout(b: Settings, urls: dict[str, str], pids: dict[str, int], say: Say) -> dict[str, Any]:
    """The fan-out: every subscriber on the leader, then spread over the three nodes."""
    idle = CpuMeter(pids)                # the leader's CPU with nothing to do (lease, status reports)
    idle.start()
    time.sleep(IDLE_SECONDS)
    idle.stop()
    out: dict[str, Any] = {"idle_cpu_cores": idle.cores}
    for key, nodes in (("leader_only", ("a",)), ("spread", NAMES)):
        meter = CpuMeter(pids)
        say(f"fan-out: {b.fanout:,} subscribers on {'+'.join(nodes)}, {b.trials} trials ...")
        r = net.run_load("node", ",".join(db_url(urls[n]) for n in nodes), b.fanout, 0, "fanout",
                         b.accounts, warmup=0, trials=b.trials, gap=b.gap, cpu=b.load_cpu, tmp=b.tmp,
                         on_event=meter.on_event)
        for p, n in zip(r.get("per_url", []), nodes, strict=True):
            p["node"] = n
        sec, base = meter.seconds.get("a"), idle.cores.get("a")
        trials = b.trials + 1                                   # the warm-up trial is in the window too
        out[key] = {**r, "nodes": list(nodes), "cpu_cores": meter.cores, "cpu_seconds": meter.seconds,
                    "cpu_waiting": meter.waiting, "window_s": meter.wall,
                    "leader_cpu_ms_per_trial": sec / trials * 1e3 if sec is not None else None,
                    "leader_cpu_ms_per_trial_above_idle": (sec - base * meter.wall) / trials * 1e3
                    if sec is not None and base is not None else None}
        say(f"  last diff median {_ms(r['median_ms'])}, p99 {_ms(r.get('p99_ms'))}; deliveries p50 "
            f"{_ms(r.get('delivery_p50_ms'))}, p99 {_ms(r.get('delivery_p99_ms'))}; leader CPU "
            f"{_ms(out[key]['leader_cpu_ms_per_trial_above_idle'])} per trial above idle")
        time.sleep(0.5)
    return out


# ---------------------------------------------------------------- a whole run

class Settings:
    def __init__(self, seconds: float, warmup: float, clients: int, accounts: int, fanout: int, trials: int,
                 gap: float, confirmed: bool, tmp: str) -> None:
        self.seconds, self.warmup, self.clients, self.accounts = seconds, warmup, clients, accounts
        self.fanout, self.trials, self.gap, self.confirmed, self.tmp = fanout, trials, gap, confirmed, tmp
        self.server_cpu, self.load_cpu = net._cpus()

    def modes(self) -> list[tuple[str, str]]:
        return [("not_confirmed", "")] + ([("confirmed", "confirmed=true")] if self.confirmed else [])


def run(seconds: float = 20.0, clients: int = 50, accounts: int = 10_000, fanout_clients: int = 1000,
        trials: int = 50, confirmed: bool = True, warmup: float = 1.0, gap: float = 0.05, alone: bool = True,
        say: Say = lambda s: print(s, flush=True)) -> dict[str, Any]:
    """Everything once; the results without machine info.  ``alone``: at the end, the not
    confirmed load again on the leader with both followers stopped (publishing to JetStream
    without the followers' CPU)."""
    import stdb
    from fuzz.cluster import NatsCluster, Nodes, leader_name, wait_for
    net.ensure_node()
    net._raise_nofile(2 * fanout_clients + 2048)          # the nodes inherit it
    os.environ["PYTHONPATH"] = os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])
    tmp = tempfile.mkdtemp(prefix="stdb-bench-repl-")
    b = Settings(seconds, warmup, clients, accounts, fanout_clients, trials, gap, confirmed, tmp)
    res: dict[str, Any] = {"config": {
        "seconds": seconds, "warmup": warmup, "clients": clients, "accounts": accounts,
        "fanout": fanout_clients, "trials": trials, "gap": gap, "confirmed": confirmed,
        "lease_ttl": LEASE_TTL, "replicas": 3, "confirm": "quorum", "probe_query": probe_sql(accounts),
        "server_cpu": b.server_cpu, "loadgen_cpu": b.load_cpu}}
    nodes: Any = None
    try:
        wasm_path = stdb.build_module(net.TRANSFER_C, os.path.join(tmp, "transfer.wasm"))
        with open(wasm_path, "rb") as f:
            wasm = f.read()
        res["standalone"] = standalone_loads(b, wasm, say)
        say("starting three nats-servers, a leader and two followers ...")
        with NatsCluster(tmp) as nats, Nodes(tmp, nats.url, lease_ttl=LEASE_TTL) as nodes:
            a = nodes.start("a")
            wait_for(lambda: leader_name(nats.url, nodes), what="a leader")
            assert a.proc is not None
            pin(a.proc.pid, b.server_cpu)
            for n in NAMES[1:]:
                nodes.start(n)
            urls = {n: nodes.nodes[n].url for n in NAMES}
            pids = {n: p.pid for n in NAMES if (p := nodes.nodes[n].proc) is not None}
            pids.update({f"nats{i}": p.pid for i, p in enumerate(nats.procs) if p is not None})
            say(f"on the leader: publish transfer.wasm, create {accounts:,} accounts ...")
            trio.run(net.setup_stdb, db_url(urls["a"]), wasm, accounts)
            wait_replicated(nats.url)
            res["cluster"] = cluster_loads(b, nats.url, urls, pids, say)
            if fanout_clients:
                res["fanout"] = fanout(b, urls, pids, say)
            st = _status(nats.url)
            res["leader_at_end"] = [n for n, rep in st.items() if rep.get("role") == "leader"]
            if alone:
                say("the followers stopped (SIGTERM) ...")
                for n in NAMES[1:]:
                    nodes.kill(n, signal.SIGTERM)
                res["cluster"]["leader_alone"] = measure(b, {"a": urls["a"]}, "", pids, "a", say,
                                                         "leader (followers stopped)")
            res["node_log_tracebacks"] = {n: nodes.log(n).count("Traceback") for n in NAMES}
    except BaseException:
        if nodes is not None:
            for n in nodes.nodes:
                say(f"--- node {n}'s log (tail):\n{nodes.log(n)[-3000:]}")
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _derive(res)
    return res


def _derive(res: dict[str, Any]) -> None:
    """The ratios: leader vs standalone (the cost of replicating), spread vs leader only."""
    sa, cl = res.get("standalone", {}), res.get("cluster", {})
    res["ratios"] = {}
    for key, base in (("not_confirmed", "not_confirmed"), ("confirmed", "confirmed"),
                      ("leader_alone", "not_confirmed")):
        if key in cl and base in sa and sa[base]["msg_per_s"]:
            res["ratios"][f"{key}_calls_leader_vs_standalone"] = cl[key]["msg_per_s"] / sa[base]["msg_per_s"]
    f = res.get("fanout") or {}
    key = "leader_cpu_ms_per_trial_above_idle"
    one, spread = (f.get("leader_only") or {}).get(key), (f.get("spread") or {}).get(key)
    if one and spread is not None:
        res["ratios"]["fanout_leader_cpu_spread_vs_leader_only"] = spread / one


# ---------------------------------------------------------------- the report

def _f(x: float | None) -> str:
    return _n(x, ".1f")


def _transfer_table(res: dict[str, Any]) -> list[str]:
    cfg = res["config"]
    sa, cl = res.get("standalone", {}), res.get("cluster", {})
    lines = [
        f"Replication (issue 26): three nats-servers (JetStream, R3), a leader and two followers on one "
        f"{res.get('machine', {}).get('cores', '?')}-core machine (loopback), `--confirm quorum`, lease "
        f"{cfg['lease_ttl']:g} s. Load: {cfg['clients']} closed-loop load.js clients calling `transfer` "
        f"(uniform over {cfg['accounts']:,} accounts) for {cfg['seconds']:g} s after {cfg['warmup']:g} s "
        f"warm-up, one run per case; the leader or standalone server on CPU {cfg['server_cpu']}, the load "
        f"generator on CPU {cfg['loadgen_cpu']}, followers and NATS servers unpinned. CPU in cores over the "
        "measured window; machine: busy cores of the whole machine; waiting: the time the server's threads "
        "were runnable but waiting for a CPU (schedstat), per second.", "",
        "| server | answer | calls/s | p50 / p99 | server CPU | waiting | server CPU per call | "
        "followers (b + c) | NATS servers | machine |", "|---|---|---|---|---|---|---|---|---|---|"]
    rows = (("standalone `stdb start`", sa, "not_confirmed", "server", "at commit"),
            ("leader of 3", cl, "not_confirmed", "a", "at commit"),
            ("leader, followers stopped", cl, "leader_alone", "a", "at commit"),
            ("standalone `stdb start`", sa, "confirmed", "server", "after the fsync"),
            ("leader of 3", cl, "confirmed", "a", "after the fsync and JetStream's quorum"))
    for label, part, key, srv, answer in rows:
        x = part.get(key)
        if not x:
            continue
        cores = x["cpu_cores"]
        fol = nats = None
        if srv == "a":
            nats = sum(v or 0 for k, v in cores.items() if k.startswith("nats"))
            if key != "leader_alone":
                fol = sum(cores.get(n) or 0 for n in NAMES[1:])
        waiting = (x.get("cpu_waiting") or {}).get(srv)
        lines.append(f"| {label} | {answer} | **{_n(x['msg_per_s'])}** | {x['p50_us'] / 1e3:.1f} / "
                     f"{x['p99_us'] / 1e3:.1f} ms | {_n(cores.get(srv), '.2f')} | "
                     f"{_n(waiting, '.2f')} | {_n(x['server_cpu_us_per_call'])} µs | "
                     f"{_n(fol, '.2f')} | {_n(nats, '.2f')} | {_n(cores.get('machine'), '.2f')} |")
    names = {"not_confirmed": "not confirmed", "confirmed": "confirmed",
             "leader_alone": "followers stopped (vs standalone not confirmed)"}
    ratios = [f"{names[k.split('_calls')[0]]} {v:.2f}" for k, v in res.get("ratios", {}).items()
              if "_calls_" in k]
    if ratios:
        lines += ["", "Leader / standalone calls/s: " + ", ".join(ratios) + "."]
    return lines


def _lag_table(res: dict[str, Any]) -> list[str]:
    cl = res.get("cluster", {})
    if "not_confirmed" not in cl:
        return []
    lines = [
        "", "Replica lag, measured by a probe: one subscriber on each node to "
        f"`{res['config']['probe_query']}` (one process, one clock); a follower's lag for a commit is when "
        "its subscriber got that offset's TransactionUpdate minus when the leader's subscriber got it. "
        "Commit-to-diff: arrival minus the TransactionUpdate's commit timestamp. `stdb status`: the "
        "follower's own publish-to-apply figure (JetStream's stored time to applied) over its last 10,000 "
        "messages, read after the run (when the run had fewer, that window holds earlier messages too: the "
        "accounts' creation, or the run before).", "",
        "| load | follower | lag p50 / p99 / max | commits sampled | commit-to-diff p50 / p99 (the leader's "
        "subscriber) | `stdb status` p50 / p99 | messages / records in the run |",
        "|---|---|---|---|---|---|---|"]
    for key in ("not_confirmed", "confirmed"):
        x = cl.get(key)
        if not x:
            continue
        lead = x["commit_to_diff"]["a"]
        for f in NAMES[1:]:
            lg, cd, st = x["lag"][f], x["commit_to_diff"][f], x["status"][f]
            lines.append(
                f"| {key.replace('_', ' ')} | {f} | **{_f(lg['p50_ms'])} / {_f(lg['p99_ms'])}** / "
                f"{_f(lg['max_ms'])} ms | {lg['samples']:,} | {_f(cd['p50_ms'])} / {_f(cd['p99_ms'])} ms "
                f"({_f(lead['p50_ms'])} / {_f(lead['p99_ms'])}) | {_f(st['lag_ms_p50'])} / "
                f"{_f(st['lag_ms_p99'])} ms | {st['messages']:,} / {st['records']:,} |")
    odd = [f"{k.replace('_', ' ')}: {f} {lg['missing']} missing, {lg['negative']} negative"
           for k, v in cl.items() for f, lg in v["lag"].items() if lg["missing"] or lg["negative"]]
    if odd:
        lines += ["", "Probe: commits a follower's subscriber never got, or got before the leader's: "
                  + "; ".join(odd) + "."]
    return lines


def _fanout_table(res: dict[str, Any]) -> list[str]:
    cfg, fo = res["config"], res.get("fanout")
    if not fo:
        return []
    lines = [
        "", f"Fan-out: {cfg['fanout']:,} subscribers to `{net.FANOUT_SQL}`, a caller on the leader calling "
        f"`transfer(1, 2, 1)` {cfg['trials']} times ({cfg['gap']:g} s apart, one warm-up trial not counted). "
        "Last diff: from the call to the last subscriber's diff (median / p99 over the trials); deliveries: "
        "from the call to each subscriber's diff (p50 / p99 over every delivery). Leader CPU: its CPU time "
        f"over the trials, per trial, less its idle CPU ({_n(fo['idle_cpu_cores'].get('a'), '.3f')} cores, "
        "measured before; in parentheses: without that subtraction).", "",
        "| layout | node | subscribers | last diff median / p99 | deliveries p50 / p99 "
        "| leader CPU per trial |",
        "|---|---|---|---|---|---|"]
    for key, label in (("leader_only", "all on the leader"), ("spread", "spread over 3 nodes")):
        x = fo.get(key)
        if not x:
            continue
        lines.append(f"| {label} | all | {x['subscribed']:,} | **{_f(x['median_ms'])} / "
                     f"{_f(x.get('p99_ms'))} ms** | {_f(x.get('delivery_p50_ms'))} / "
                     f"{_f(x.get('delivery_p99_ms'))} ms | "
                     f"**{_f(x['leader_cpu_ms_per_trial_above_idle'])} ms** "
                     f"({_f(x['leader_cpu_ms_per_trial'])}) |")
        for p in x.get("per_url", []) if len(x.get("per_url", [])) > 1 else []:
            lines.append(f"| | {p['node']} | {p['subscribed']:,} | {_f(p['median_ms'])} / "
                         f"{_f(p['p99_ms'])} ms | "
                         f"{_f(p['delivery_p50_ms'])} / {_f(p['delivery_p99_ms'])} ms | |")
    errs = [f"{k} {v['errors']} ({'; '.join(v.get('first_errors', [])[:2])})"
            for k, v in fo.items() if isinstance(v, dict) and v.get("errors")]
    lines += ["", "Fan-out errors: " + (", ".join(errs) if errs else "none") + "."]
    return lines


def markdown(res: dict[str, Any]) -> str:
    sa, cl = res.get("standalone", {}), res.get("cluster", {})
    lines = _transfer_table(res) + _lag_table(res) + _fanout_table(res)
    errs = [f"{part} {k.replace('_', ' ')} {v['errors']} errors"
            for part, d in (("standalone", sa), ("leader", cl))
            for k, v in d.items() if isinstance(v, dict) and v.get("errors")]
    tb = {**(res.get("node_log_tracebacks") or {}), "standalone": sa.get("log_tracebacks")}
    lines += ["", "Every call answered `committed`: " + ("yes" if not errs else "no: " + ", ".join(errs))
              + "; the leader at the end: " + (", ".join(res.get("leader_at_end", [])) or "none")
              + "; tracebacks in the servers' logs: " + ", ".join(f"{n} {c}" for n, c in tb.items()) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="python -m bench.replication", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=None,
                   help="measured seconds per load (default 20; quick 5)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 5 s loads, 1,000 accounts, 100 subscribers, 10 trials, no confirmed "
                        "loads")
    p.add_argument("--clients", type=int, default=50)
    p.add_argument("--accounts", type=int, default=None, help="default 10,000 (quick: 1,000)")
    p.add_argument("--fanout", type=int, default=None, help="subscribers (default 1,000; quick 100; 0: skip)")
    p.add_argument("--trials", type=int, default=None, help="fan-out trials (default 50; quick 10)")
    p.add_argument("--no-confirmed", action="store_true", help="skip the confirmed loads")
    p.add_argument("--out", default=net.RESULTS_DIR, help="a directory, or the .json file to write")
    a = p.parse_args(argv)
    q = a.quick

    def pick(v: Any, full: Any, quick: Any) -> Any:
        return v if v is not None else (quick if q else full)
    from fuzz.cluster import nats_server
    if nats_server() is None:
        print("python -m bench.replication: nats-server is not installed (apt-get install nats-server)",
              file=sys.stderr)
        return 2
    from bench.machine import machine, save_results
    res = run(pick(a.seconds, 20.0, 5.0), a.clients, pick(a.accounts, 10_000, 1000),
              pick(a.fanout, 1000, 100), pick(a.trials, 50, 10), confirmed=not (a.no_confirmed or q))
    out_dir, name = a.out, "replication"
    if a.out.endswith(".json"):
        out_dir, name = os.path.dirname(a.out) or ".", os.path.basename(a.out)[:-5]
    result = {"machine": {**machine(), **net._versions("node")},
              "command": "python -m bench.replication " + " ".join(argv),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **res}
    save_results(out_dir, name, result, markdown(result))
    print(f"(written to {os.path.join(out_dir, name)}.json)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
