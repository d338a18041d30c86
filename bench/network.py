"""The networked benchmark (issues 7 and 9): stdb over websockets vs its peers, side by side.

* **Transfers** — the transfer reducer (examples/transfer/transfer.c) called over websocket by
  1, 10 and 50 concurrent closed-loop clients (each sends ``CallReducer transfer(from, to, 1)``
  and waits for the ``TransactionUpdate`` answering it), against a bare trio-websocket echo
  server that decodes each CBOR message and answers with an encoded TransactionUpdate-shaped
  map (no database), driven by the same load generator in the same run; for context, the same
  echo on stdb's own websocket layer (the server's transport since issue 7's rework, so the
  ratio to it is what the database costs).  stdb runs with its
  default store: durable (one fsync per group commit).  Also measured: the same load in
  confirmed mode (``?confirmed=true``: a client hears of a commit only once it is fsync'd), and
  against a second stdb server whose store is relaxed (fsync every 50 ms).
* **Peers** (bench/peers.py, issue 9) — a trio-websocket + SQLite server (synchronous FULL and
  NORMAL), Tarantool 2.6 with an fsync'd WAL (net.box load), Redis with ``appendfsync always``
  (redis-benchmark), and each load generator's own ceiling; every case takes its turn in every
  round.  Targets at 50 clients: stdb durable ≥ Tarantool, stdb ≥ 0.90 of the echo server,
  stdb confirmed ≥ 3× SQLite FULL (equal durability).  ``bash bench/setup.sh`` installs the peers;
  a peer that is not installed is skipped with a message.
* **Fan-out** — 1,000 clients subscribed to ``SELECT * FROM account WHERE id = 1``; one more
  client transfers from account 1, over and over; each trial is the time from sending the call
  to the last subscriber receiving its TransactionUpdate.
* **Pipelined, skewed** — the shape of SpacetimeDB's "keynote-2" benchmark: 64 connections with
  40 transfer calls in flight each, both accounts Zipf-distributed (α = 1.5) over 100,000
  accounts, from != to; stdb (durable, a server of its own) vs Tarantool (fsync'd WAL, net.box
  with 40 fibers per connection) and the two load generators' ceilings at that shape.  Target:
  stdb ≥ 1.0× Tarantool.
* **Isolation** — one stdb server, database A (tests/modules/hostile.c) running ``loop`` back to
  back, each call spinning until its fuel or time limit stops it, while 10 closed-loop clients
  call transfer on database B; B's calls/s, p50 and p99 against the same load with A idle.
  Target: B's p99 while A loops ≤ 10 ms.

Each server runs in its own process pinned to one CPU, the load generator (Node.js, in
bench/loadgen/; or ``--loadgen python``, trio + trio-websocket; net.box; redis-benchmark) on the
other.

    python -m bench.network [--seconds T] [--rounds R] [--clients 1,10,50] [--fanout 1000] [--trials 20]
                            [--loadgen node|python] [--no-confirmed] [--no-relaxed]
                            [--peers sqlite,tarantool,redis,ceilings | --no-peers] [--out DIR|FILE.json]
                            [--only sweep,fanout,pipelined,isolation] [--no-pipelined] [--no-isolation]
                            [--pipelined-connections 64] [--pipelined-inflight 40] [--pipelined-alpha 1.5]
                            [--pipelined-accounts 100000] [--isolation-clients 10]

The subcommands ``serve-stdb``, ``serve-echo`` and ``load`` are the processes it starts.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import cbor2
import trio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADGEN_DIR = os.path.join(ROOT, "bench", "loadgen")
NODE_ECHO = os.path.join(LOADGEN_DIR, "echo.js")
TRANSFER_C = os.path.join(ROOT, "examples", "transfer", "transfer.c")
RESULTS_DIR = os.path.join(ROOT, "bench", "results")
DATABASE = "bank"
FANOUT_SQL = "SELECT * FROM account WHERE id = 1"
BALANCE = 1 << 40                   # every account: far more than the benchmark can move
TARGET_RATIO = 0.90                 # stdb / echo at 50 clients (issue 7)
SUBPROTOCOL = "v1.cbor.stdb"        # stdb.protocol.SUBPROTOCOL (checked in serve_stdb and the test)
MAX_MESSAGE_BYTES = 16 << 20


# ---------------------------------------------------------------- the servers (own processes)

def serve_stdb(data_dir: str, host: str, port: int, durability: str = "durable") -> None:
    import logging

    from stdb.protocol import SUBPROTOCOL as sp
    from stdb.server.server import Server, run
    from stdb.storage.durable import StoreConfig
    assert sp == SUBPROTOCOL, (sp, SUBPROTOCOL)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # the default StoreConfig is durable (one fsync per group commit); relaxed only when asked
    store = None if durability == "durable" else StoreConfig(durability=durability)
    trio.run(run, Server(data_dir, store=store), host, port)


_ECHO_ID = bytes(32)


async def accept_like_stdb(request: Any, identity: bytes, database: str) -> Any:
    """stdb's handshake for a stand-in server: refuse a client without stdb's subprotocol (None),
    else accept and send an IdentityToken first; returns the websocket."""
    if SUBPROTOCOL not in request.proposed_subprotocols:
        await request.reject(400, body=f"ask for the websocket subprotocol {SUBPROTOCOL}".encode())
        return None
    ws = await request.accept(subprotocol=SUBPROTOCOL)
    await ws.send_message(cbor2.dumps({"type": "IdentityToken", "identity": identity, "token": database,
                                       "connection_id": bytes(16), "database": database}))
    return ws


async def _echo_on(request: Any, closed: type[BaseException]) -> None:
    """One echo client: the same handshake as stdb (subprotocol, an IdentityToken first), then
    for each binary message: decode the CBOR, answer with a TransactionUpdate-shaped map.
    ``closed`` is the websocket library's exception for a closed connection."""
    try:
        ws = await accept_like_stdb(request, _ECHO_ID, "echo")
        if ws is None:
            return
        offset = 0
        while True:
            msg = cbor2.loads(await ws.get_message())
            offset += 1
            await ws.send_message(cbor2.dumps({
                "type": "TransactionUpdate", "offset": offset, "timestamp": time.time_ns() // 1000,
                "reducer": msg.get("reducer"), "caller": _ECHO_ID, "status": "committed", "message": None,
                "request_id": msg.get("request_id"), "updates": []}))
    except closed:
        pass


async def _echo(request: Any) -> None:
    """The echo on trio-websocket (the issue's baseline)."""
    from trio_websocket import ConnectionClosed
    await _echo_on(request, ConnectionClosed)


async def _echo_stdb_layer(request: Any) -> None:
    """The same echo on stdb's own websocket layer (stdb/server/websocket.py): what the server's
    transport costs without the database."""
    from stdb.server.websocket import Closed
    await _echo_on(request, Closed)


def serve_echo(host: str, port: int, layer: str = "trio-websocket") -> None:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    if layer == "stdb":
        from stdb.server import websocket as sw

        async def main() -> None:
            async with trio.open_nursery() as n:
                await n.start(partial(sw.serve_websocket, _echo_stdb_layer, host, port, handler_nursery=n,
                                      max_message=MAX_MESSAGE_BYTES))
        trio.run(main)
        return
    from trio_websocket import serve_websocket
    trio.run(lambda: serve_websocket(_echo, host, port, None, max_message_size=MAX_MESSAGE_BYTES,
                                     message_queue_size=4))


# ---------------------------------------------------------------- the Python load generator

def _emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


async def _ws(nursery: trio.Nursery, url: str) -> Any:
    """A connection to ``url`` that has read the server's IdentityToken."""
    from trio_websocket import connect_websocket_url
    ws = await connect_websocket_url(nursery, url, subprotocols=[SUBPROTOCOL], max_message_size=64 << 20)
    hello = cbor2.loads(await ws.get_message())
    if hello.get("type") != "IdentityToken":
        raise RuntimeError(f"first message is {hello.get('type')}, not IdentityToken")
    return ws


async def _close_all(conns: list) -> None:
    """Close with a handshake (at most 5 s), as the Node load generator does."""
    with trio.move_on_after(5):
        async with trio.open_nursery() as n:
            for ws in conns:
                n.start_soon(ws.aclose)


def _call(rid: int, reducer: str, args: list) -> bytes:
    return cbor2.dumps({"type": "CallReducer", "request_id": rid, "reducer": reducer, "args": args})


def _pct(sorted_: list[float], q: float) -> float | None:
    return sorted_[min(len(sorted_) - 1, int(len(sorted_) * q))] if sorted_ else None


def zipf_sampler(n: int, alpha: float, rng: random.Random) -> Callable[[], int]:
    """Zipf(alpha) over ranks 1..n, rank k = account k, as load.js and tarantool_load.lua draw it:
    the cumulative weights once, then a binary search per draw."""
    cdf = list(itertools.accumulate(k ** -alpha for k in range(1, n + 1)))
    total = cdf[-1]
    return lambda: min(n, bisect.bisect_left(cdf, rng.random() * total) + 1)


def account_pairs(accounts: int, zipf: float, rng: random.Random) -> Callable[[], tuple[int, int]]:
    """``() -> (from, to)``, from != to: uniform, or both Zipf(``zipf``) with ``to`` drawn again
    until it differs (load.js's ``--zipf``)."""
    if zipf > 0:
        if accounts < 2:
            raise ValueError("a Zipf pair needs at least 2 accounts")
        draw = zipf_sampler(accounts, zipf, rng)

        def pair() -> tuple[int, int]:
            a, b = draw(), draw()
            while b == a:
                b = draw()
            return a, b
        return pair

    def uniform() -> tuple[int, int]:
        a = 1 + rng.randrange(accounts)
        b = 1 + rng.randrange(accounts)
        return (a, b % accounts + 1) if a == b else (a, b)
    return uniform


async def py_transfer(url: str, clients: int, seconds: float, accounts: int, warmup: float,
                      inflight: int = 1, zipf: float = 0.0) -> dict:
    """load.js's transfer mode in trio: ``clients`` connections, each keeping ``inflight`` calls
    in flight (a new call as soon as one of its answers arrives)."""
    st: dict[str, Any] = {"measuring": False, "stopping": False, "messages": 0, "errors": 0, "lat": [],
                          "first": [], "account1": 0}
    pair = account_pairs(accounts, zipf, random.Random(12345))

    async def loop(i: int, ws: Any) -> None:
        rid = 0
        pending: dict[int, tuple[float, int, int]] = {}     # request id -> (send time, from, to)

        async def send() -> None:
            nonlocal rid
            rid += 1
            a, b = pair()
            pending[rid] = (time.perf_counter(), a, b)
            await ws.send_message(_call(rid, "transfer", [a, b, 1]))

        for _ in range(inflight):
            await send()
        while pending:                      # ends once stopping and every call is answered
            msg = cbor2.loads(await ws.get_message())
            call = pending.pop(msg.get("request_id"), None)
            if call is None:
                continue
            ok = msg.get("type") == "TransactionUpdate" and msg.get("status") == "committed"
            if st["measuring"]:
                if ok:
                    st["messages"] += 1
                    st["lat"].append((time.perf_counter() - call[0]) * 1e6)
                    st["account1"] += call[1] == 1 or call[2] == 1
                else:
                    st["errors"] += 1
            if not ok and len(st["first"]) < 5:
                st["first"].append(f"client {i}: {msg!r:.300}")
            if not st["stopping"]:
                await send()

    async with trio.open_nursery() as n:
        conns = [await _ws(n, url) for _ in range(clients)]
        async with trio.open_nursery() as loops:
            for i, ws in enumerate(conns):
                loops.start_soon(loop, i, ws)
            await trio.sleep(warmup)
            st.update(messages=0, errors=0, lat=[], account1=0, measuring=True)
            cpu0, t0 = time.process_time(), time.perf_counter()
            _emit({"event": "start"})
            await trio.sleep(seconds)
            st.update(measuring=False, stopping=True)     # each loop ends once its calls are answered
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        await _close_all(conns)
        n.cancel_scope.cancel()
    lat = sorted(st["lat"])
    return {"event": "result", "mode": "transfer", "loadgen": "python", "clients": clients,
            "inflight": inflight, "zipf": zipf, "messages": st["messages"], "seconds": wall,
            "msg_per_s": st["messages"] / wall, "p50_us": _pct(lat, 0.5), "p99_us": _pct(lat, 0.99),
            "errors": st["errors"], "first_errors": st["first"], "loadgen_cpu": cpu / wall,
            "account1_share": st["account1"] / st["messages"] if st["messages"] else None}


async def py_fanout(url: str, clients: int, trials: int, gap: float) -> dict:
    errors: list[str] = []
    t00 = time.perf_counter()
    async with trio.open_nursery() as n:
        subs = []
        for _ in range(clients):
            ws = await _ws(n, url)
            await ws.send_message(cbor2.dumps({"type": "Subscribe", "request_id": 1,
                                               "queries": [FANOUT_SQL]}))
            subs.append(ws)
        ok_subs = []
        for i, ws in enumerate(subs):
            msg = cbor2.loads(await ws.get_message())
            if msg.get("type") == "SubscribeApplied" and len(msg["queries"][0]["rows"]) == 1:
                ok_subs.append(ws)
            else:
                errors.append(f"subscriber {i}: {msg!r:.300}")
        connect_s = time.perf_counter() - t00
        caller = await _ws(n, url)
        times: list[float] = []
        caller_times: list[float] = []
        delivered: list[int] = []
        for t in range(-1, trials):                    # trial -1 warms up and is not counted
            heard: list[float] = []
            t0 = time.perf_counter()
            await caller.send_message(_call(t + 2, "transfer", [1, 2, 1]))

            async def listen(ws: Any, heard: list[float] = heard) -> None:
                while True:
                    msg = cbor2.loads(await ws.get_message())
                    if msg.get("type") == "TransactionUpdate" and msg.get("request_id") is None:
                        heard.append(time.perf_counter())
                        return

            async def answer(t: int = t, t0: float = t0) -> None:
                while True:
                    msg = cbor2.loads(await caller.get_message())
                    if msg.get("request_id") == t + 2:
                        if msg.get("status") != "committed":
                            errors.append(f"caller: {msg!r:.300}")
                        if t >= 0:
                            caller_times.append((time.perf_counter() - t0) * 1e3)
                        return

            with trio.move_on_after(10) as scope:
                async with trio.open_nursery() as tn:
                    tn.start_soon(answer)
                    for ws in ok_subs:
                        tn.start_soon(listen, ws)
            if scope.cancelled_caught:
                errors.append(f"trial {t}: {len(heard)} of {len(ok_subs)} subscribers heard within 10 s")
            if t >= 0:
                delivered.append(len(heard))
                if not scope.cancelled_caught:
                    times.append((max(heard) - t0) * 1e3)
            await trio.sleep(gap)
        await _close_all([caller, *subs])
        n.cancel_scope.cancel()
    return {"event": "result", "mode": "fanout", "loadgen": "python", "clients": clients,
            "subscribed": len(ok_subs), "trials": trials, "connect_seconds": connect_s,
            "median_ms": statistics.median_low(times) if times else None,
            "max_ms": max(times, default=None), "min_ms": min(times, default=None),
            "caller_median_ms": statistics.median_low(caller_times) if caller_times else None,
            "times_ms": times, "delivered_min": min(delivered, default=0), "errors": len(errors),
            "first_errors": errors[:5]}


def py_load(url: str, clients: int, seconds: float, mode: str, accounts: int, warmup: float, trials: int,
            gap: float, inflight: int = 1, zipf: float = 0.0) -> None:
    if mode == "transfer":
        res = trio.run(py_transfer, url, clients, seconds, accounts, warmup, inflight, zipf)
    else:
        res = trio.run(py_fanout, url, clients, trials, gap)
    _emit(res)


# ---------------------------------------------------------------- processes

def _cpus() -> tuple[int | None, int | None]:
    """(server CPU, load generator CPU); None when there is nothing to pin to."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    if len(cpus) < 2 or shutil.which("taskset") is None:
        return None, None
    return cpus[0], cpus[1]


def _pinned(cpu: int | None, cmd: list[str]) -> list[str]:
    return cmd if cpu is None else ["taskset", "-c", str(cpu), *cmd]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_cpu(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) the process has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tail(path: str, n: int = 2000) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError:
        return ""


class ServerProcess:
    """A server subprocess on a free port; ``stop()`` always ends it."""

    def __init__(self, kind: str, args: list[str], tmp: str, cpu: int | None,
                 name: str | None = None, cmd: Callable[[int], list[str]] | None = None) -> None:
        """``python -m bench.network serve-<kind> --port P *args``, or ``cmd(P)`` when given (any
        program that listens on 127.0.0.1:P), pinned to ``cpu``; its output goes to ``<tmp>/<name>.log``."""
        self.kind = name or kind
        self.port = _free_port()
        self.log = os.path.join(tmp, f"{self.kind}.log")
        if cmd is None:
            argv = [sys.executable, "-m", "bench.network", f"serve-{kind}", "--port", str(self.port), *args]
        else:
            argv = cmd(self.port)
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen(_pinned(cpu, argv), cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

    def url(self, query: str = "", database: str = DATABASE) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/database/{database}" + (f"?{query}" if query else "")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the {self.kind} server exited ({self.proc.returncode}):\n"
                                   f"{_tail(self.log)}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {self.kind} server did not listen within {timeout:g} s:\n"
                                       f"{_tail(self.log)}") from None
                time.sleep(0.05)

    def cpu(self) -> float | None:
        return _proc_cpu(self.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()              # stdb, tarantool, redis: graceful; the echo servers exit
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _raise_nofile(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def ensure_node() -> str:
    """The node executable, with bench/loadgen's packages installed; RuntimeError without node."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is not installed (use --loadgen python)")
    if not os.path.isdir(os.path.join(LOADGEN_DIR, "node_modules", "cbor-x")) or \
            not os.path.isdir(os.path.join(LOADGEN_DIR, "node_modules", "ws")):
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed: cannot install bench/loadgen's packages")
        print("installing bench/loadgen's packages (npm install) ...", flush=True)
        subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=LOADGEN_DIR, check=True,
                       stdout=subprocess.DEVNULL)
    return node


def run_load(loadgen: str, url: str, clients: int, seconds: float, mode: str, accounts: int, *,
             warmup: float = 1.0, trials: int = 20, gap: float = 0.05, cpu: int | None = None,
             server: ServerProcess | None = None, tmp: str | None = None, inflight: int = 1,
             zipf: float = 0.0, window: list[float] | None = None,
             on_event: Callable[[dict], None] | None = None) -> dict:
    """One load generator run (a subprocess); its result line, plus the server's CPU use
    (fraction of one core) over the measured window when ``server`` is given.  Transfer mode:
    ``inflight`` calls in flight per connection, accounts Zipf(``zipf``) when > 0 (load.js's
    ``--inflight`` and ``--zipf``); ``window`` and ``on_event`` as in ``run_loadgen``."""
    args = [url, str(clients), str(seconds), mode, str(accounts), "--warmup", str(warmup),
            "--trials", str(trials), "--gap", str(gap)]
    if inflight != 1:
        args += ["--inflight", str(inflight)]
    if zipf:
        args += ["--zipf", str(zipf)]
    if loadgen == "node":
        cmd = [ensure_node(), os.path.join(LOADGEN_DIR, "load.js"), *args]
    else:
        cmd = [sys.executable, "-m", "bench.network", "load", *args]
    limit = warmup + seconds + 60 + (trials * (10 + gap) + clients * 0.05 if mode == "fanout" else 0)
    return run_loadgen(cmd, limit, cpu=cpu, server=server, tmp=tmp, what=f"the {loadgen} load generator",
                       window=window, on_event=on_event)


def run_loadgen(cmd: list[str], limit: float, *, cpu: int | None = None, server: ServerProcess | None = None,
                tmp: str | None = None, what: str = "the load generator",
                window: list[float] | None = None, on_event: Callable[[dict], None] | None = None) -> dict:
    """Run a load generator that prints JSON lines (``{"event": "start"}`` when its measured window
    opens, then ``{"event": "result", ...}``), pinned to ``cpu`` and killed after ``limit`` seconds;
    its result, plus ``server_cpu``: the server's CPU use (cores) over the window.  ``window``, when
    given, receives the window's start and end on this process's ``time.perf_counter()`` (when
    the two lines were read); ``on_event``, when given, is called with every event line as it is
    read (e.g. to sample the server at ``start`` and at a ``stop`` line)."""
    errlog = os.path.join(tmp or tempfile.gettempdir(), f"loadgen-{os.getpid()}.log")
    with open(errlog, "w") as err:
        p = subprocess.Popen(_pinned(cpu, cmd), cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
    timer = threading.Timer(limit, p.kill)
    timer.start()
    result: dict | None = None
    cpu0 = t0 = None
    try:
        assert p.stdout is not None
        for line in p.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if on_event is not None and isinstance(ev, dict):
                on_event(ev)
            if ev.get("event") == "start":
                t0 = time.perf_counter()
                cpu0 = server.cpu() if server is not None else None
                if window is not None:
                    window[:] = [t0]
            elif ev.get("event") == "result":
                if window is not None:
                    window.append(time.perf_counter())
                if server is not None and cpu0 is not None and t0 is not None:
                    cpu1, dt = server.cpu(), time.perf_counter() - t0
                    ev["server_cpu"] = (cpu1 - cpu0) / dt if cpu1 is not None else None
                result = ev
        p.wait()
    finally:
        timer.cancel()
        if p.poll() is None:
            p.kill()
            p.wait()
    if result is None:
        raise RuntimeError(f"{what} gave no result (exit {p.returncode}):\n"
                           f"{_tail(errlog)}")
    result.pop("event", None)
    return result


# ---------------------------------------------------------------- setting stdb up

async def setup_stdb(url: str, wasm: bytes, accounts: int, batch: int = 500) -> None:
    """Publish the transfer module and create accounts 1..N (pipelined in batches); with
    ``accounts=0``, publish any module."""
    async with trio.open_nursery() as n:
        ws = await _ws(n, url)

        async def answer(rid: int) -> dict:
            while True:
                msg = cbor2.loads(await ws.get_message())
                if msg.get("request_id") == rid:
                    return msg

        await ws.send_message(cbor2.dumps({"type": "Publish", "request_id": 1, "wasm": wasm}))
        res = await answer(1)
        if res.get("type") != "PublishResult":
            raise RuntimeError(f"publishing the module at {url} failed: {res!r:.500}")
        rid = 1
        for start in range(1, accounts + 1, batch):
            ids = range(start, min(accounts + 1, start + batch))
            for i in ids:
                await ws.send_message(_call(rid + i, "create_account", [i, BALANCE]))
            for i in ids:
                res = await answer(rid + i)
                if res.get("type") != "TransactionUpdate" or res.get("status") != "committed":
                    raise RuntimeError(f"create_account({i}) failed: {res!r:.500}")
        n.cancel_scope.cancel()


# ---------------------------------------------------------------- the benchmark

PEERS = ("sqlite", "tarantool", "redis", "ceilings")      # issue 9's peers and ceilings (bench/peers.py)
CLIENT_BOUND = 0.80     # a result at or above this share of its load generator's ceiling is client-bound
TARGET_CLIENTS = 50
# (stdb case, compared case, wanted ratio or None for context only, what is compared)
TARGETS: list[tuple[str, str, float | None, str]] = [
    ("stdb", "tarantool", 1.0, "stdb durable vs Tarantool (fsync'd WAL)"),
    ("stdb", "echo", TARGET_RATIO, "stdb durable vs the echo ceiling"),
    ("stdb_confirmed", "sqlite_full", 3.0,
     "stdb confirmed vs trio-websocket + SQLite FULL (equal durability)"),
    ("stdb_confirmed", "tarantool", None, "stdb confirmed vs Tarantool (both answer after the fsync)"),
    # context: the server's own transport without the database (what the database costs)
    ("stdb", "echo_stdb", None, "stdb durable vs an echo on stdb's own websocket layer"),
]


@dataclass
class Case:
    """One server (or a load generator's ceiling), measured at every client count."""
    key: str                              # its key in the JSON: "stdb", "tarantool", "node_ceiling", ...
    title: str
    answer: str                           # when a call's answer goes out: what it promises
    loadgen: str                          # what drives it: node, python, net.box, redis-benchmark
    measure: Callable[[int], dict]        # clients -> one load run's result line
    ceiling_of: str | None = None         # set on a ceiling: the load generator it measures


@dataclass
class Bench:
    """What the cases of one run share: the work directory, the CPUs, the load's shape, and every
    server started (all stopped at the end, whatever happens)."""
    tmp: str
    server_cpu: int | None
    load_cpu: int | None
    accounts: int
    seconds: float
    warmup: float
    loadgen: str
    servers: list[ServerProcess] = field(default_factory=list)

    def start(self, sp: ServerProcess) -> ServerProcess:
        self.servers.append(sp)
        return sp

    def settle(self, server: ServerProcess) -> None:
        time.sleep(0.3)                   # let the server settle the closed connections
        if server.proc.poll() is not None:
            raise RuntimeError(f"the {server.kind} server died during the run")

    def ws_load(self, server: ServerProcess, clients: int, query: str = "", *, inflight: int = 1,
                zipf: float = 0.0, accounts: int | None = None, database: str = DATABASE,
                window: list[float] | None = None) -> dict:
        """The websocket load generator's transfer mode against ``server``: ``clients``
        connections with ``inflight`` calls in flight each, accounts 1..``accounts`` (default: the
        run's) uniform or Zipf(``zipf``)."""
        r = run_load(self.loadgen, server.url(query, database), clients, self.seconds, "transfer",
                     accounts or self.accounts, warmup=self.warmup, cpu=self.load_cpu, server=server,
                     tmp=self.tmp, inflight=inflight, zipf=zipf, window=window)
        self.settle(server)
        return r


def _keep_best(row: dict[str, Any], key: str, r: dict) -> None:
    """Keep the best round of a case in ``row``; every round's rate and the errors of all rounds too."""
    best = row.get(key)
    rates = (best["rounds_msg_per_s"] if best else []) + [r["msg_per_s"]]
    errors = (best["errors"] if best else 0) + r["errors"]
    if best is None or r["msg_per_s"] > best["msg_per_s"]:
        best = r
    row[key] = {**best, "rounds_msg_per_s": rates, "errors": errors}


def _flag_client_bound(row: dict[str, Any], cases: Sequence[Case]) -> None:
    """Mark each result with its load generator's ceiling at this client count, when measured."""
    ceilings = {c.ceiling_of: row[c.key]["msg_per_s"] for c in cases if c.ceiling_of and c.key in row}
    for c in cases:
        ceiling = ceilings.get(c.loadgen)
        if c.ceiling_of is None and c.key in row and ceiling:
            share = row[c.key]["msg_per_s"] / ceiling
            row[c.key].update(ceiling_msg_per_s=ceiling, share_of_ceiling=share,
                              client_bound=share >= CLIENT_BOUND)


def _targets(rows: list[dict[str, Any]], info: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The target rows (read by bench/summary.py): ratios of msg/s at TARGET_CLIENTS clients."""
    at = next((r for r in rows if r["clients"] == TARGET_CLIENTS), None)
    out = []
    for a, b, want, what in TARGETS:
        ra, rb = (at or {}).get(a), (at or {}).get(b)
        ratio = ra["msg_per_s"] / rb["msg_per_s"] if ra and rb and rb["msg_per_s"] else None
        out.append({
            "measure": f"{what}, msg/s at {TARGET_CLIENTS} clients", "case": a, "versus": b,
            "clients": TARGET_CLIENTS, "stdb": ra["msg_per_s"] if ra else None,
            "baseline": info.get(b, {}).get("title", b), "baseline_value": rb["msg_per_s"] if rb else None,
            "ratio": ratio, "want": want, "target": f"≥ {want:g}×" if want is not None else "",
            "met": None if want is None or ratio is None else ratio >= want,
            "client_bound": bool(ra and ra.get("client_bound")) or bool(rb and rb.get("client_bound"))})
    return out


ANSWER_DURABLE = "at commit, before its group's fsync"


# ---------------------------------------------------------------- the pipelined, skewed case

@dataclass(frozen=True)
class Pipelined:
    """The shape of the pipelined, skewed case (SpacetimeDB's "keynote-2" benchmark): ``connections``
    connections with ``inflight`` transfer calls in flight each, both accounts drawn from a Zipf
    distribution with exponent ``alpha`` over ``accounts`` accounts (from != to)."""
    connections: int = 64
    inflight: int = 40
    alpha: float = 1.5
    accounts: int = 100_000

    @property
    def name(self) -> str:
        return f"{self.connections} × {self.inflight} zipf"


PIPELINED = Pipelined()
PIPELINED_WANT = 1.0                 # stdb durable / Tarantool (fsync'd WAL) at the pipelined shape


def _pipelined_target(p: dict[str, Any] | None, shape: Pipelined | None) -> dict[str, Any]:
    """The pipelined case's target row: stdb durable vs Tarantool, msg/s."""
    shape = shape or PIPELINED
    found = (p or {}).get("cases", {})
    ra, rb = found.get("stdb"), found.get("tarantool")
    ratio = ra["msg_per_s"] / rb["msg_per_s"] if ra and rb and rb["msg_per_s"] else None
    name = f"{shape.name}: stdb vs Tarantool net.box"
    return {"measure": f"{name}, msg/s (α = {shape.alpha:g}, {shape.accounts:,} accounts)", "name": name,
            "case": "stdb", "versus": "tarantool", "section": "pipelined", "clients": shape.connections,
            "inflight": shape.inflight, "stdb": ra["msg_per_s"] if ra else None,
            "baseline": "Tarantool 2.6, wal_mode fsync (net.box)",
            "baseline_value": rb["msg_per_s"] if rb else None, "ratio": ratio, "want": PIPELINED_WANT,
            "target": f"≥ {PIPELINED_WANT:g}×", "met": None if ratio is None else ratio >= PIPELINED_WANT,
            "client_bound": bool(ra and ra.get("client_bound")) or bool(rb and rb.get("client_bound")),
            "unmeasured": None if ratio is not None else
            "the pipelined case not run" if p is None else f"{'stdb' if ra is None else 'Tarantool'} not run"}


def run_pipelined(b: Bench, shape: Pipelined, cases: Sequence[Case], rounds: int,
                  say: Callable[[str], None]) -> dict[str, Any]:
    """The cases at ``shape``, taking turns ``rounds`` times; each keeps its best round."""
    say(f"pipelined: {shape.connections} connections × {shape.inflight} in flight, zipf α {shape.alpha:g} "
        f"over {shape.accounts:,} accounts, {b.seconds:g} s each, {rounds} round(s): "
        f"{', '.join(k.key for k in cases)} ...")
    found: dict[str, Any] = {}
    for _ in range(rounds):
        for case in cases:
            _keep_best(found, case.key, case.measure(shape.connections))
    _flag_client_bound(found, cases)
    say("  " + ", ".join(f"{k.key} {found[k.key]['msg_per_s']:,.0f}/s (p50 {found[k.key]['p50_us'] or 0:,.0f}"
                         f" µs, p99 {found[k.key]['p99_us'] or 0:,.0f} µs)" for k in cases))
    return {**asdict(shape), "cases": found,
            "case_info": {c.key: {"title": c.title, "answer": c.answer, "loadgen": c.loadgen,
                                  "ceiling_of": c.ceiling_of} for c in cases}}


# ---------------------------------------------------------------- the isolation case

HOSTILE_C = os.path.join(ROOT, "tests", "modules", "hostile.c")   # loop(n) spins until a limit stops it
LOOP_DATABASE = "loop"               # database A: the looping module; database B is DATABASE
ISOLATION_CLIENTS = 10
ISOLATION_P99_US = 10_000            # target: B's p99 while A loops ≤ 10 ms
LIMIT_OF = {"out_of_fuel": "fuel", "timeout": "time"}


class Looper:
    """One client calling database A's ``loop(0)`` back to back, in a thread of its own (its own
    trio run), until ``stop()``: each call spins until a per-call limit (fuel or time) ends it.
    ``calls``: (sent, answered, status, message) per answered call, on ``time.perf_counter()``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.calls: list[tuple[float, float, str, str]] = []
        self.error: BaseException | None = None
        self.sent = threading.Event()              # the first call is on its way
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="looper", daemon=True)

    def start(self, timeout: float = 30) -> None:
        self._thread.start()
        if not self.sent.wait(timeout) or self.error is not None:
            raise RuntimeError(f"the looping client did not start: {self.error!r}")

    def stop(self, timeout: float = 60) -> None:
        """Stop after the call running now (joins the thread)."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise RuntimeError(f"the looping client did not stop within {timeout:g} s")
        if self.error is not None:
            raise RuntimeError(f"the looping client failed: {self.error!r}") from self.error

    def _main(self) -> None:
        try:
            trio.run(self._loop)
        except BaseException as e:                 # reported by start() / stop()
            self.error = e
        finally:
            self.sent.set()

    async def _loop(self) -> None:
        async with trio.open_nursery() as n:
            ws = await _ws(n, self.url)
            rid = 0
            while not self._stop.is_set():
                rid += 1
                t0 = time.perf_counter()
                await ws.send_message(_call(rid, "loop", [0]))
                self.sent.set()
                while True:
                    msg = cbor2.loads(await ws.get_message())
                    if msg.get("request_id") == rid:
                        break
                self.calls.append((t0, time.perf_counter(), str(msg.get("status") or msg.get("type")),
                                   str(msg.get("message") or msg.get("detail") or "")))
            await ws.aclose()
            n.cancel_scope.cancel()


def loop_summary(calls: Sequence[tuple[float, float, str, str]], window: Sequence[float]) -> dict[str, Any]:
    """What database A did over B's measured window ``(start, end)``: its loop calls that ended
    within it, the share of the window a loop call was running, and every call's status and duration."""
    w0, w1 = window
    busy = sum(max(0.0, min(t1, w1) - max(t0, w0)) for t0, t1, _, _ in calls)
    ms = sorted((t1 - t0) * 1e3 for t0, t1, _, _ in calls)
    statuses: dict[str, int] = {}
    for c in calls:
        statuses[c[2]] = statuses.get(c[2], 0) + 1
    return {"a_loops_in_window": sum(1 for _, t1, _, _ in calls if w0 <= t1 <= w1),
            "a_loop_ms": [round((t1 - t0) * 1e3, 1) for t0, t1, _, _ in calls],          # in call order
            "a_busy_share": busy / (w1 - w0) if w1 > w0 else None, "a_loop_calls": len(calls),
            "a_loop_ms_median": statistics.median_low(ms) if ms else None,
            "a_loop_ms_max": ms[-1] if ms else None,
            "a_loop_statuses": statuses, "a_loop_message": calls[0][3] if calls else None,
            "a_stopped_by": sorted({LIMIT_OF.get(c[2], c[2]) for c in calls})}


def run_isolation(b: Bench, transfer_wasm: bytes, clients: int, say: Callable[[str], None]) -> dict[str, Any]:
    """One stdb server (default limits), database A running hostile.c's ``loop`` back to back and
    database B the transfer module: ``clients`` closed-loop transfer clients on B with A idle,
    then with A looping."""
    import stdb
    limits = stdb.Limits()                   # the server's (serve_stdb passes none)
    with open(stdb.build_module(HOSTILE_C, os.path.join(b.tmp, "hostile.wasm")), "rb") as f:
        hostile = f.read()
    sp = b.start(ServerProcess("stdb", ["--data", os.path.join(b.tmp, "data-isolation")], b.tmp, b.server_cpu,
                               name="stdb-isolation"))
    sp.wait_ready()
    say(f"isolation: database {DATABASE} (B: transfer, {b.accounts:,} accounts) and database {LOOP_DATABASE} "
        f"(A: {os.path.relpath(HOSTILE_C, ROOT)}) on one server; {clients} clients on B, {b.seconds:g} s "
        "with A idle, then with A looping ...")
    trio.run(setup_stdb, sp.url(database=DATABASE), transfer_wasm, b.accounts)
    trio.run(setup_stdb, sp.url(database=LOOP_DATABASE), hostile, 0)
    idle = b.ws_load(sp, clients)
    looper = Looper(sp.url(database=LOOP_DATABASE))
    window: list[float] = []
    looper.start()
    try:
        looping = b.ws_load(sp, clients, window=window)
    finally:
        looper.stop(timeout=2 * limits.time + 60)
    res = {"clients": clients, "accounts": b.accounts, "database_a": LOOP_DATABASE, "database_b": DATABASE,
           "module_a": os.path.relpath(HOSTILE_C, ROOT), "reducer_a": "loop(0)",
           "limits": {"fuel": limits.fuel, "time_s": limits.time}, "idle": idle, "looping": looping,
           **loop_summary(looper.calls, window)}
    say(f"  B with A idle: {idle['msg_per_s']:,.0f}/s, p50 {idle['p50_us'] or 0:,.0f} µs, "
        f"p99 {idle['p99_us'] or 0:,.0f} µs; with A looping: {looping['msg_per_s']:,.0f}/s, "
        f"p50 {looping['p50_us'] or 0:,.0f} µs, p99 {looping['p99_us'] or 0:,.0f} µs; A: "
        f"{res['a_loops_in_window']} loop calls ended in the window, median "
        f"{res['a_loop_ms_median'] or 0:,.0f} ms, stopped by {', '.join(res['a_stopped_by']) or '?'}")
    return res


def _isolation_target(iso: dict[str, Any] | None) -> dict[str, Any]:
    busy = (iso or {}).get("looping") or {}
    idle = (iso or {}).get("idle") or {}
    p99 = busy.get("p99_us")
    name = "isolation: B's p99 while A loops"
    return {"measure": f"{name} (µs; A: a reducer looping until its limit, B: "
                       f"{(iso or {}).get('clients', ISOLATION_CLIENTS)} closed-loop transfer clients)",
            "name": name, "case": "isolation_looping", "versus": "isolation_idle", "section": "isolation",
            "clients": (iso or {}).get("clients"), "stdb": p99, "baseline": "B's p99 with A idle",
            "baseline_value": idle.get("p99_us"), "ratio": None, "want": None,
            "want_p99_us": ISOLATION_P99_US, "target": f"≤ {ISOLATION_P99_US / 1000:g} ms",
            "met": None if p99 is None else p99 <= ISOLATION_P99_US,
            "client_bound": False, "unmeasured": None if p99 is not None else "the isolation case not run"}


# ---------------------------------------------------------------- a whole run

SECTIONS = ("sweep", "fanout", "pipelined", "isolation")


def run(seconds: float = 4.0, clients: Sequence[int] = (1, 10, 50), fanout: int = 1000, trials: int = 20,
        accounts: int = 10_000, loadgen: str = "node", warmup: float = 1.0, confirmed: bool = True,
        relaxed: bool = True, rounds: int = 2, gap: float = 0.05, peers: Sequence[str] = PEERS,
        say: Callable[[str], None] = lambda s: print(s, flush=True), sweep: bool = True,
        pipelined: Pipelined | None = PIPELINED, isolation: int = ISOLATION_CLIENTS) -> dict:
    """Run everything once; returns the results (without machine info).

    The sweep (``sweep``): per client count, in turns, ``rounds`` times: stdb (durable store), the
    echo server, when asked stdb in confirmed mode (same server, ``?confirmed=true``) and stdb
    with a relaxed store (a second server whose commit log fsyncs every 50 ms instead of every
    group), then the ``peers`` (bench/peers.py: ``sqlite``, ``tarantool``, ``redis``, and
    ``ceilings``: the load generators' own).  Each case reports its best round (the VM's speed
    wanders; every round's rate is kept too).  A peer whose program is not installed is skipped,
    with the reason in ``skipped``.  Then the fan-out (``fanout`` subscribers, 0: none), the
    pipelined, skewed case (``pipelined``, None: not run; stdb and, of the ``peers``, Tarantool
    and the ceilings) and the isolation case (``isolation`` clients on database B, 0: not run)."""
    import stdb
    if loadgen == "node":
        ensure_node()
    _raise_nofile(2 * fanout + 1024 + (2 * pipelined.connections if pipelined else 0))
    server_cpu, load_cpu = _cpus()
    tmp = tempfile.mkdtemp(prefix="stdb-bench-net-")
    b = Bench(tmp, server_cpu, load_cpu, accounts, seconds, warmup, loadgen)
    rows: list[dict[str, Any]] = []
    cases: list[Case] = []
    skipped: dict[str, str] = {}
    fan = pipe = iso = None
    setup_s: float | None = None
    pipe_setup_s: float | None = None
    try:
        wasm_path = stdb.build_module(TRANSFER_C, os.path.join(tmp, "transfer.wasm"))
        with open(wasm_path, "rb") as f:
            wasm = f.read()
        db = echo = echo_own = lax = zdb = None
        if sweep or fanout:
            db = b.start(ServerProcess("stdb", ["--data", os.path.join(tmp, "data")], tmp, server_cpu))
        if sweep:
            echo = b.start(ServerProcess("echo", [], tmp, server_cpu))
            echo_own = b.start(ServerProcess("echo", ["--layer", "stdb"], tmp, server_cpu,
                                             name="echo-stdb-layer"))
            if relaxed:
                lax = b.start(ServerProcess("stdb", ["--data", os.path.join(tmp, "data-relaxed"),
                                                     "--durability", "relaxed"], tmp, server_cpu,
                                            name="stdb-relaxed"))
        if pipelined:
            zdb = b.start(ServerProcess("stdb", ["--data", os.path.join(tmp, "data-pipelined")], tmp,
                                        server_cpu, name="stdb-pipelined"))
        for sp in b.servers:
            sp.wait_ready()
        if db is not None:
            say(f"setting up: publish transfer.wasm, create {accounts:,} accounts ...")
            t0 = time.perf_counter()
            trio.run(setup_stdb, db.url(), wasm, accounts)
            setup_s = time.perf_counter() - t0
        if lax is not None:
            trio.run(setup_stdb, lax.url(), wasm, accounts)

        if sweep:
            assert db is not None and echo is not None and echo_own is not None
            d, e, eo = db, echo, echo_own
            cases = [Case("stdb", "stdb durable", ANSWER_DURABLE, loadgen, lambda c: b.ws_load(d, c)),
                     Case("echo", "trio-websocket echo (no database)", "at once (nothing stored)", loadgen,
                          lambda c: b.ws_load(e, c)),
                     Case("echo_stdb", "echo on stdb's websocket layer (no database)",
                          "at once (nothing stored)", loadgen, lambda c: b.ws_load(eo, c))]
            if confirmed:
                cases.append(Case("stdb_confirmed", "stdb confirmed (?confirmed=true)", "after the fsync",
                                  loadgen, lambda c: b.ws_load(d, c, "confirmed=true")))
            if lax is not None:
                lx = lax
                cases.append(Case("stdb_relaxed", "stdb relaxed store", "at commit; fsync every 50 ms",
                                  loadgen, lambda c: b.ws_load(lx, c)))
            if peers:
                from bench import peers as peers_mod
                more, skipped = peers_mod.cases(b, peers, say)
                cases += more
                for why in skipped.values():
                    say(f"  skipped: {why}")
            for c in clients:
                say(f"transfers, {c} client(s), {seconds:g} s each, {rounds} round(s): "
                    f"{', '.join(k.key for k in cases)} ...")
                row: dict[str, Any] = {"clients": c}
                for _ in range(rounds):               # the cases take turns; each keeps its best round
                    for case in cases:
                        _keep_best(row, case.key, case.measure(c))
                _flag_client_bound(row, cases)
                echo_rate = row["echo"]["msg_per_s"]
                row["ratio"] = row["stdb"]["msg_per_s"] / echo_rate if echo_rate else None
                rows.append(row)
                say("  " + ", ".join(f"{k.key} {row[k.key]['msg_per_s']:,.0f}/s "
                                     f"(p50 {row[k.key]['p50_us'] or 0:,.0f} µs)" for k in cases)
                    + f"; stdb/echo {row['ratio'] or 0:.2f}")
        if fanout and db is not None:
            say(f"fan-out: {fanout:,} subscribers, {trials} trials ...")
            fan = run_load(loadgen, db.url(), fanout, 0, "fanout", accounts, warmup=0, trials=trials, gap=gap,
                           cpu=load_cpu, tmp=tmp)
            say(f"  commit to last delivery: median {fan['median_ms'] or 0:.1f} ms, "
                f"max {fan['max_ms'] or 0:.1f} ms")
            if "ceilings" in peers and loadgen == "node":
                # the floor of this load: the same subscribers and calls against echo.js, a Node
                # server that only answers and broadcasts (bench/loadgen/echo.js)
                node = ensure_node()
                floor = b.start(ServerProcess("node-echo", [], tmp, server_cpu, name="node-echo-fanout",
                                              cmd=lambda port: [node, NODE_ECHO, str(port)]))
                floor.wait_ready()
                fan_floor = run_load(loadgen, floor.url(), fanout, 0, "fanout", accounts, warmup=0,
                                     trials=trials, gap=gap, cpu=load_cpu, tmp=tmp)
                floor.stop()
                fan["floor"] = fan_floor
                say(f"  the same against echo.js (the load generator's floor): median "
                    f"{fan_floor['median_ms'] or 0:.1f} ms, max {fan_floor['max_ms'] or 0:.1f} ms")
        if pipelined and zdb is not None:
            say(f"setting up the pipelined case: create {pipelined.accounts:,} accounts ...")
            t0 = time.perf_counter()
            trio.run(setup_stdb, zdb.url(), wasm, pipelined.accounts)
            pipe_setup_s = time.perf_counter() - t0
            z, shape = zdb, pipelined
            pcases = [Case("stdb", "stdb durable", ANSWER_DURABLE, loadgen, lambda c: b.ws_load(
                z, c, inflight=shape.inflight, zipf=shape.alpha, accounts=shape.accounts))]
            if peers:
                from bench import peers as peers_mod
                more, why_not = peers_mod.pipelined_cases(b, peers, shape, say)
                pcases += more
                for k, why in why_not.items():
                    if k not in skipped:
                        say(f"  skipped: {why}")
                        skipped[k] = why
            pipe = run_pipelined(b, shape, pcases, rounds, say)
            pipe["setup_seconds"] = pipe_setup_s
        if isolation:
            iso = run_isolation(b, wasm, isolation, say)
    except BaseException:
        for sp in b.servers:
            say(f"--- the {sp.kind} server's log (exit code {sp.proc.poll()}):\n{_tail(sp.log)}")
        raise
    finally:
        for sp in b.servers:
            sp.stop()
        tracebacks = {sp.kind: _tail(sp.log, 10**7).count("Traceback") for sp in b.servers}
        shutil.rmtree(tmp, ignore_errors=True)
    info = {c.key: {"title": c.title, "answer": c.answer, "loadgen": c.loadgen, "ceiling_of": c.ceiling_of}
            for c in cases}
    fields = ("msg_per_s", "p50_us", "p99_us", "errors", "server_cpu", "loadgen_cpu", "client_bound")
    summary = {c.key: [{"clients": r["clients"], **{k: r[c.key].get(k) for k in fields}} for r in rows]
               for c in cases}
    at = next((r for r in rows if r["clients"] == TARGET_CLIENTS), None)
    targets = _targets(rows, info) + [_pipelined_target(pipe, pipelined), _isolation_target(iso)]
    return {"config": {"seconds": seconds, "warmup": warmup, "clients": list(clients) if sweep else [],
                       "accounts": accounts, "fanout": fanout, "trials": trials, "loadgen": loadgen,
                       "rounds": rounds,
                       "peers": list(peers), "sections": [s for s, on in zip(SECTIONS, (
                           sweep, bool(fanout), bool(pipelined), bool(isolation)), strict=True) if on],
                       "pipelined": asdict(pipelined) if pipelined else None, "isolation_clients": isolation,
                       "store": "durable (StoreConfig default: one fsync per group commit)",
                       "server_cpu": server_cpu, "loadgen_cpu": load_cpu, "client_bound_share": CLIENT_BOUND},
            "setup_seconds": setup_s, "transfer": rows, "cases": summary, "case_info": info,
            "targets": targets, "skipped": skipped, "fanout": fan, "pipelined": pipe, "isolation": iso,
            "server_log_tracebacks": tracebacks,
            "target": {"ratio_at_50_clients": at["ratio"] if at else None, "want": TARGET_RATIO,
                       "met": (at["ratio"] >= TARGET_RATIO) if at and at["ratio"] is not None else None}}


def _versions(loadgen: str, peers: Sequence[str] = ()) -> dict:
    import importlib.metadata as md
    v: dict[str, Any] = {}
    for pkg in ("trio", "trio-websocket", "cbor2"):
        try:
            v[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            v[pkg] = None
    if loadgen == "node" or "ceilings" in peers:
        try:
            v["node"] = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        except OSError:
            v["node"] = None
        for pkg in ("ws", "cbor-x"):
            try:
                with open(os.path.join(LOADGEN_DIR, "node_modules", pkg, "package.json")) as f:
                    v[pkg] = json.load(f)["version"]
            except (OSError, ValueError, KeyError):
                v[pkg] = None
    if peers:
        from bench import peers as peers_mod
        v.update(peers_mod.versions(peers))
    return v


def markdown(res: dict) -> str:
    def n(x: float | None, fmt: str = ",.0f") -> str:
        return "–" if x is None else format(x, fmt)

    def ms(us: float | None) -> str:
        return "–" if us is None else f"{us / 1000:,.1f} ms"

    cfg = res["config"]
    rows = res["transfer"]
    info = res.get("case_info") or {k: {"title": k, "answer": "", "loadgen": cfg["loadgen"]}
                                    for k in ("stdb", "echo") if rows and k in rows[0]}
    counts = [r["clients"] for r in rows]
    lines: list[str] = []
    if rows:
        lines += [
            f"Transfers over the network: best of {cfg['rounds']} rounds of {cfg['seconds']:g} s per case "
            f"(each after {cfg['warmup']:g} s warm-up), {cfg['accounts']:,} accounts, closed-loop clients; "
            f"servers on CPU {cfg['server_cpu']}, load generators on CPU {cfg['loadgen_cpu']}. "
            f"Cell: msg/s (p50 / p99 µs); ⚠ = at least {CLIENT_BOUND:.0%} of its load generator's ceiling "
            "(client-bound: the figure says more about the load generator than the server).", "",
            "| case | answer sent | load generator | "
            + " | ".join(f"{c} client{'s' * (c != 1)}" for c in counts) + " |",
            "|---|---|---|" + "---|" * len(counts)]
        for key, i in info.items():
            cells = []
            for r in rows:
                x = r.get(key)
                if x is None:
                    cells.append("–")
                    continue
                flag = " ⚠" if x.get("client_bound") else ""
                cells.append(f"**{n(x['msg_per_s'])}**{flag} ({n(x['p50_us'])} / {n(x['p99_us'])})")
            lines.append(f"| {i['title']} | {i['answer']} | {i['loadgen']} | " + " | ".join(cells) + " |")
        lines += ["", "CPU used over the measured window, server / load generator (cores):", "",
                  "| case | " + " | ".join(str(c) for c in counts) + " |", "|---|" + "---|" * len(counts)]
        for key, i in info.items():
            cells = [f"{n(r[key].get('server_cpu'), '.2f')} / {n(r[key].get('loadgen_cpu'), '.2f')}"
                     if key in r else "–" for r in rows]
            lines.append(f"| {i['title']} | " + " | ".join(cells) + " |")
    p = res.get("pipelined")
    if p:
        lines += [""] * bool(lines) + [
            f"Pipelined, skewed transfers (the shape of SpacetimeDB's keynote-2): {p['connections']} "
            f"connections × {p['inflight']} calls in flight each (a connection sends its next call as soon "
            f"as one of its answers arrives), `transfer(from, to, 1)` with both accounts drawn from a Zipf "
            f"distribution, α = {p['alpha']:g}, over {p['accounts']:,} accounts (from ≠ to); best of "
            f"{cfg['rounds']} rounds of {cfg['seconds']:g} s per case; a call's latency is from sending it "
            f"to its answer. ⚠ = at least {CLIENT_BOUND:.0%} of its load generator's ceiling at this shape.",
            "", "| case | answer sent | load generator | msg/s | p50 / p99 µs | calls touching account 1 "
            "| CPU server / load generator |", "|---|---|---|---|---|---|---|"]
        for key, i in p["case_info"].items():
            x = p["cases"].get(key)
            if x is None:
                continue
            flag = " ⚠" if x.get("client_bound") else ""
            share = x.get("account1_share")
            lines.append(f"| {i['title']} | {i['answer']} | {i['loadgen']} | **{n(x['msg_per_s'])}**{flag} | "
                         f"{n(x['p50_us'])} / {n(x['p99_us'])} | {n(share, '.0%')} | "
                         f"{n(x.get('server_cpu'), '.2f')} / {n(x.get('loadgen_cpu'), '.2f')} |")
    iso = res.get("isolation")
    if iso:
        lim = iso["limits"]
        by = {"fuel": f"its fuel limit ({lim['fuel']:,} instructions)",
              "time": f"its time limit ({lim['time_s']:g} s)"}
        stopped = " or ".join(by.get(s, s) for s in iso["a_stopped_by"]) or "–"
        statuses = ", ".join(f"{k} × {v}" for k, v in sorted(iso["a_loop_statuses"].items()))
        busy = iso.get("a_busy_share")
        lines += [""] * bool(lines) + [
            f"Isolation: one stdb server (CPU {cfg['server_cpu']}, default limits), database A "
            f"(`{iso['database_a']}`: {iso['module_a']}) and database B (`{iso['database_b']}`: the transfer "
            f"module, {iso['accounts']:,} accounts). While one client calls A's `{iso['reducer_a']}` back to "
            f"back — every call ended by {stopped} ({statuses}; median {n(iso['a_loop_ms_median'])} ms, max "
            f"{n(iso['a_loop_ms_max'])} ms) — {iso['clients']} closed-loop clients call `transfer` on B for "
            f"{cfg['seconds']:g} s (after {cfg['warmup']:g} s warm-up); before that, the same load on B with "
            f"A idle. Over B's window A was looping {n(busy, '.0%')} of the time and "
            f"{iso['a_loops_in_window']} of its loop calls ended.", "",
            "| B's transfers | calls/s | p50 | p99 | server CPU |", "|---|---|---|---|---|"]
        for label, key in (("A idle", "idle"), ("A looping", "looping")):
            x = iso[key]
            lines.append(f"| {label} | **{n(x['msg_per_s'])}** | {ms(x['p50_us'])} | **{ms(x['p99_us'])}** | "
                         f"{n(x.get('server_cpu'), '.2f')} |")
    targets = res.get("targets") or []
    if targets:
        lines += ["", f"Targets (msg/s ratios at {TARGET_CLIENTS} clients unless said otherwise):", ""]
        for t in targets:
            name = t.get("name") or t["measure"].rsplit(",", 1)[0]
            if "want_p99_us" in t:                         # the isolation row: a latency, not a ratio
                if t["stdb"] is None:
                    verdict = f"not measured ({t.get('unmeasured') or 'not run'})"
                else:
                    verdict = (f"{ms(t['stdb'])} (A idle: {ms(t['baseline_value'])}; want ≤ "
                               f"{t['want_p99_us'] / 1000:g} ms) — **{'met' if t['met'] else 'not met'}**")
                lines.append(f"* {name}: {verdict}")
                continue
            if t["ratio"] is None:
                if t.get("unmeasured"):
                    verdict = f"not measured ({t['unmeasured']})"
                elif not any(r["clients"] == TARGET_CLIENTS for r in rows):
                    verdict = f"not measured (no {TARGET_CLIENTS}-client run)"
                else:
                    gone = t["versus"] if t["baseline_value"] is None else t["case"]
                    verdict = f"not measured ({gone} not run)"
            else:
                verdict = f"{t['ratio']:.2f}"
                if t["want"] is not None:
                    verdict += f" (want ≥ {t['want']:g}) — **{'met' if t['met'] else 'not met'}**"
                else:
                    verdict += " (context, no target)"
                if t["client_bound"]:
                    verdict += "; ⚠ one side is client-bound"
            lines.append(f"* {name}: {verdict}")
    elif res["target"]["ratio_at_50_clients"] is not None:
        t = res["target"]
        lines += ["", f"Target ≥ {t['want']:.2f} of echo at 50 clients: {t['ratio_at_50_clients']:.2f} — "
                  f"**{'met' if t['met'] else 'not met'}**."]
    errs = {i["title"]: sum(r[k].get("errors", 0) for r in rows if k in r) for k, i in info.items()}
    if p:
        for k, i in p["case_info"].items():
            if k in p["cases"]:
                label = f"{i['title']} (pipelined)"
                errs[label] = errs.get(label, 0) + p["cases"][k].get("errors", 0)
    if iso:
        errs["B (isolation)"] = iso["idle"].get("errors", 0) + iso["looping"].get("errors", 0)
    bad = {k: e for k, e in errs.items() if e}
    lines += ["", "Every call answered `committed` (or OK): " + ("yes." if not bad else "no: " + ", ".join(
        f"{k} {e} errors" for k, e in bad.items()) + ".")]
    for why in (res.get("skipped") or {}).values():
        lines.append(f"Skipped: {why}")
    f = res.get("fanout")
    if f:
        lines += ["", f"Fan-out: {f['subscribed']:,} of {f['clients']:,} clients subscribed to "
                  f"`{FANOUT_SQL}`; {f['trials']} transfers from account 1: commit to last diff delivered "
                  f"median {n(f['median_ms'], '.1f')} ms, min {n(f['min_ms'], '.1f')} ms, "
                  f"max {n(f['max_ms'], '.1f')} ms (the caller's own answer: median "
                  f"{n(f['caller_median_ms'], '.1f')} ms); fewest subscribers reached in a trial: "
                  f"{f['delivered_min']:,}; errors: {f['errors']}."]
        fl = f.get("floor")
        if fl:
            lines[-1] += (f" The same load against echo.js, a Node server that only answers and "
                          f"broadcasts (the load generator's floor): median {n(fl['median_ms'], '.1f')} ms, "
                          f"min {n(fl['min_ms'], '.1f')} ms, max {n(fl['max_ms'], '.1f')} ms.")
    tb = {k: v for k, v in res.get("server_log_tracebacks", {}).items() if v}
    if tb:
        lines += ["", "Tracebacks in the server logs: " + ", ".join(f"{k} {v}" for k, v in tb.items()) + "."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("serve-stdb", "serve-echo", "load"):
        return _sub(argv)
    p = argparse.ArgumentParser(prog="python -m bench.network", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=4.0, help="measured seconds per case and round")
    p.add_argument("--rounds", type=int, default=2, help="rounds of every case; the best is reported")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--clients", default="1,10,50", help="concurrent clients, comma-separated")
    p.add_argument("--fanout", type=int, default=1000, help="subscribed clients for fan-out (0: skip)")
    p.add_argument("--trials", type=int, default=20, help="fan-out trials")
    p.add_argument("--accounts", type=int, default=10_000)
    p.add_argument("--loadgen", choices=("node", "python"), default="node")
    p.add_argument("--no-confirmed", action="store_true", help="skip the confirmed-mode runs")
    p.add_argument("--no-relaxed", action="store_true", help="skip the relaxed-store runs")
    p.add_argument("--peers", default=",".join(PEERS),
                   help=f"the peers to measure too, comma-separated, from {','.join(PEERS)} (default: all)")
    p.add_argument("--no-peers", action="store_true", help="stdb and the echo server only (issue 7's run)")
    p.add_argument("--only", default=None, metavar="SECTIONS",
                   help=f"run only these parts, comma-separated, from {','.join(SECTIONS)} (sweep: the "
                        "closed-loop runs at each --clients count)")
    p.add_argument("--no-pipelined", action="store_true", help="skip the pipelined, skewed case")
    p.add_argument("--no-isolation", action="store_true", help="skip the isolation case")
    p.add_argument("--pipelined-connections", type=int, default=PIPELINED.connections,
                   help="the pipelined case: connections")
    p.add_argument("--pipelined-inflight", type=int, default=PIPELINED.inflight,
                   help="the pipelined case: calls in flight per connection")
    p.add_argument("--pipelined-alpha", type=float, default=PIPELINED.alpha,
                   help="the pipelined case: the Zipf exponent of both accounts (0: uniform)")
    p.add_argument("--pipelined-accounts", type=int, default=PIPELINED.accounts,
                   help="the pipelined case: accounts (its own stdb and Tarantool servers)")
    p.add_argument("--isolation-clients", type=int, default=ISOLATION_CLIENTS,
                   help="the isolation case: closed-loop transfer clients on database B")
    p.add_argument("--out", default=RESULTS_DIR, help="a directory, or the .json file to write")
    a = p.parse_args(argv)
    peers = [] if a.no_peers else [x for x in a.peers.split(",") if x]
    unknown = set(peers) - set(PEERS)
    if unknown:
        p.error(f"unknown peers: {', '.join(sorted(unknown))} (known: {', '.join(PEERS)})")
    sections = set(SECTIONS) if a.only is None else {x for x in a.only.split(",") if x}
    if sections - set(SECTIONS):
        p.error(f"unknown parts: {', '.join(sorted(sections - set(SECTIONS)))} "
                f"(known: {', '.join(SECTIONS)})")
    if a.no_pipelined:
        sections.discard("pipelined")
    if a.no_isolation:
        sections.discard("isolation")
    if min(a.pipelined_connections, a.pipelined_inflight) < 1 or a.pipelined_alpha < 0 \
            or a.pipelined_accounts < 2:
        p.error("the pipelined case needs connections ≥ 1, in flight ≥ 1, alpha ≥ 0 and accounts ≥ 2")
    if a.loadgen == "node" and shutil.which("node") is None:
        print("node is not installed: using the Python load generator instead (--loadgen python)", flush=True)
        a.loadgen = "python"
    from bench.machine import machine, save_results
    shape = Pipelined(a.pipelined_connections, a.pipelined_inflight, a.pipelined_alpha, a.pipelined_accounts)
    res = run(a.seconds, [int(c) for c in a.clients.split(",") if c], a.fanout if "fanout" in sections else 0,
              a.trials, a.accounts, a.loadgen, a.warmup, not a.no_confirmed, not a.no_relaxed, a.rounds,
              peers=peers, sweep="sweep" in sections, pipelined=shape if "pipelined" in sections else None,
              isolation=a.isolation_clients if "isolation" in sections else 0)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out_dir, name = a.out, f"network-{stamp}"
    if a.out.endswith(".json"):
        out_dir, name = os.path.dirname(a.out) or ".", os.path.basename(a.out)[:-5]
    result = {"machine": {**machine(), **_versions(a.loadgen, peers)},
              "command": "python -m bench.network " + " ".join(argv),
              "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **res}
    save_results(out_dir, name, result, markdown(result))
    print(f"(written to {os.path.join(out_dir, name)}.json)")
    return 0


def _sub(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.network")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve-stdb")
    s.add_argument("--data", required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--durability", choices=("durable", "relaxed"), default="durable")
    e = sub.add_parser("serve-echo")
    e.add_argument("--host", default="127.0.0.1")
    e.add_argument("--port", type=int, required=True)
    e.add_argument("--layer", choices=("trio-websocket", "stdb"), default="trio-websocket")
    ld = sub.add_parser("load", help="the Python load generator (same arguments as bench/loadgen/load.js)")
    ld.add_argument("url")
    ld.add_argument("clients", type=int)
    ld.add_argument("seconds", type=float)
    ld.add_argument("mode", choices=("transfer", "fanout"))
    ld.add_argument("accounts", type=int)
    ld.add_argument("--warmup", type=float, default=1.0)
    ld.add_argument("--trials", type=int, default=20)
    ld.add_argument("--gap", type=float, default=0.05)
    ld.add_argument("--inflight", type=int, default=1)
    ld.add_argument("--zipf", type=float, default=0.0)
    a = p.parse_args(argv)
    if a.cmd == "serve-stdb":
        serve_stdb(a.data, a.host, a.port, a.durability)
    elif a.cmd == "serve-echo":
        serve_echo(a.host, a.port, a.layer)
    else:
        py_load(a.url, a.clients, a.seconds, a.mode, a.accounts, a.warmup, a.trials, a.gap, a.inflight,
                a.zipf)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
