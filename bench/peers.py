"""The networked benchmark's peers (issue 9): what stdb is compared with over the network.

``python -m bench.network`` measures these next to stdb and the echo server, the cases taking
turns round by round (bench/network.py's ``run``); this module starts them and loads them.

* **sqlite_full / sqlite_normal** — what a Python developer would write instead of stdb: a
  trio-websocket server speaking the part of stdb's protocol the load generators use (the
  subprotocol, an ``IdentityToken`` first, ``CallReducer transfer`` answered by a
  ``TransactionUpdate`` with the same ``request_id``, ``committed`` or ``failed``), doing each
  transfer in its own SQLite transaction (WAL; ``synchronous=FULL``: COMMIT returns once the WAL
  is fsync'd, so the answer comes after the fsync, as in stdb's confirmed mode; or ``NORMAL``:
  no fsync at COMMIT).  One connection, called from the event loop.  Driven by the websocket load
  generator (bench/loadgen/load.js).
* **tarantool** — Tarantool (Debian's 2.6) with its WAL fsync'd at every write (``wal_mode =
  'fsync'``), a memtx space ``account``, ``transfer`` as a Lua function in ``box.atomic``
  (bench/peers/tarantool_server.lua); loaded by net.box from a second tarantool process
  (bench/peers/tarantool_load.lua: one connection and one fiber per client).
* **redis** — redis-server with ``appendonly yes`` and ``appendfsync always`` (the answers of an
  event-loop turn go out after that turn's AOF write and fsync), ``transfer`` as a Lua script
  called with EVALSHA (bench/peers/redis_transfer.lua); loaded by redis-benchmark.
* **ceilings** — each load generator's own maximum: load.js against a trivial Node websocket
  server (bench/loadgen/echo.js), net.box calling a no-op Lua function (no WAL write), and
  redis-benchmark calling EVALSHA of a no-op script.  A result at or above 80% of its load
  generator's ceiling is flagged client-bound.

Servers run pinned to the server CPU, load generators to the other.  Peers whose programs are not
installed are skipped with a message pointing at ``bash bench/setup.sh``.

    python -m bench.peers serve-sqlite --port P --db FILE [--synchronous FULL|NORMAL]
                                       [--accounts N] [--balance B]

is the SQLite server's process.
"""

from __future__ import annotations

import argparse
import csv
import functools
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import cbor2
import trio

from bench.network import (
    BALANCE,
    MAX_MESSAGE_BYTES,
    NODE_ECHO,
    ROOT,
    Bench,
    Case,
    Pipelined,
    ServerProcess,
    _pinned,
    accept_like_stdb,
    ensure_node,
    run_loadgen,
)

PEERS_DIR = os.path.join(ROOT, "bench", "peers")
TARANTOOL_SERVER = os.path.join(PEERS_DIR, "tarantool_server.lua")
TARANTOOL_LOAD = os.path.join(PEERS_DIR, "tarantool_load.lua")
REDIS_TRANSFER = os.path.join(PEERS_DIR, "redis_transfer.lua")
REDIS_NOOP = "return 1"
SETUP_HINT = "run `bash bench/setup.sh` (as root) to install it"


def redis_key(i: int) -> str:
    """Account ``i`` (0-based) as redis-benchmark's ``-r`` names it: ``__rand_int__`` becomes 12 digits."""
    return f"acc:{i:012d}"


# ---------------------------------------------------------------- the trio-websocket + SQLite server

class SqliteBank:
    """The accounts in one SQLite file (WAL), one transaction per transfer."""

    def __init__(self, path: str, synchronous: str = "FULL", accounts: int = 0,
                 balance: int = BALANCE) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self.con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute(f"PRAGMA synchronous={synchronous}")
        self.con.execute("CREATE TABLE IF NOT EXISTS account "
                         "(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
        if accounts and self.con.execute("SELECT count(*) FROM account").fetchone()[0] == 0:
            self.con.execute("BEGIN")
            self.con.executemany("INSERT INTO account VALUES (?, ?)",
                                 ((i, balance) for i in range(1, accounts + 1)))
            self.con.execute("COMMIT")
        self.commits = 0

    def transfer(self, src: int, dst: int, amount: int) -> str | None:
        """examples/transfer/transfer.c's logic: None when committed, else why it failed (rolled back)."""
        if amount <= 0:
            return "amount must be positive"
        con = self.con
        con.execute("BEGIN IMMEDIATE")
        try:
            a = con.execute("SELECT balance FROM account WHERE id = ?", (src,)).fetchone()
            b = con.execute("SELECT balance FROM account WHERE id = ?", (dst,)).fetchone()
            if a is None or b is None:
                failed: str | None = "no such account"
            elif a[0] < amount:
                failed = "insufficient funds"
            else:
                failed = None
                if src != dst:
                    con.execute("UPDATE account SET balance = balance - ? WHERE id = ?", (amount, src))
                    con.execute("UPDATE account SET balance = balance + ? WHERE id = ?", (amount, dst))
        except BaseException:
            con.execute("ROLLBACK")
            raise
        if failed is None:
            con.execute("COMMIT")                  # FULL: returns once the WAL is fsync'd
            self.commits += 1
        else:
            con.execute("ROLLBACK")
        return failed

    def close(self) -> None:
        self.con.close()


_CALLER = bytes(32)


def _error(rid: Any, code: str, detail: str) -> bytes:
    return cbor2.dumps({"type": "Error", "request_id": rid, "code": code, "detail": detail, "hint": None})


async def _sqlite_client(bank: SqliteBank, request: Any) -> None:
    from trio_websocket import ConnectionClosed
    try:
        ws = await accept_like_stdb(request, _CALLER, "bank")
        if ws is None:
            return
        while True:
            raw = await ws.get_message()
            try:
                msg = cbor2.loads(raw)
            except Exception as e:
                await ws.send_message(_error(None, "protocol_error", f"not CBOR: {e}"))
                continue
            rid = msg.get("request_id") if isinstance(msg, dict) else None
            if not isinstance(msg, dict) or msg.get("type") != "CallReducer":
                await ws.send_message(_error(rid, "protocol_error", "only CallReducer is served here"))
                continue
            args = msg.get("args")
            if msg.get("reducer") != "transfer":
                await ws.send_message(_error(rid, "reducer_error", f"no reducer {msg.get('reducer')!r}"))
                continue
            if not (isinstance(args, list) and len(args) == 3 and all(type(x) is int for x in args)):
                await ws.send_message(_error(rid, "data_error",
                                             "transfer takes (from: u64, to: u64, amount: i64)"))
                continue
            failed = bank.transfer(*args)
            await ws.send_message(cbor2.dumps({
                "type": "TransactionUpdate", "offset": None if failed else bank.commits,
                "timestamp": time.time_ns() // 1000, "reducer": "transfer", "caller": _CALLER,
                "status": "failed" if failed else "committed", "message": failed, "request_id": rid,
                "updates": []}))
    except ConnectionClosed:
        pass


def serve_sqlite(db: str, host: str, port: int, synchronous: str, accounts: int, balance: int) -> None:
    """The server process: the accounts first, then listen; SIGTERM closes the database and exits."""
    from trio_websocket import serve_websocket
    bank = SqliteBank(db, synchronous, accounts, balance)

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as n:
                handler = functools.partial(_sqlite_client, bank)
                n.start_soon(functools.partial(serve_websocket, handler, host, port, None,
                                               max_message_size=MAX_MESSAGE_BYTES, message_queue_size=4))
                async for _ in signals:
                    n.cancel_scope.cancel()
                    break

    trio.run(main)
    bank.close()


def sqlite_db(b: Bench, synchronous: str) -> str:
    """The database file of the SQLite server with this ``synchronous`` setting."""
    return os.path.join(b.tmp, f"bank-{synchronous.lower()}.sqlite")


def sqlite_server(b: Bench, synchronous: str, balance: int = BALANCE) -> ServerProcess:
    db = sqlite_db(b, synchronous)

    def cmd(port: int) -> list[str]:
        return [sys.executable, "-m", "bench.peers", "serve-sqlite", "--port", str(port), "--db", db,
                "--synchronous", synchronous, "--accounts", str(b.accounts), "--balance", str(balance)]

    return b.start(ServerProcess("sqlite", [], b.tmp, b.server_cpu, name=f"sqlite-{synchronous.lower()}",
                                 cmd=cmd))


# ---------------------------------------------------------------- Tarantool

def tarantool_server(b: Bench, balance: int = BALANCE, accounts: int | None = None,
                     name: str = "tarantool") -> ServerProcess:
    """Tarantool with accounts 1..``accounts`` (default: the run's), its files in ``<tmp>/<name>``."""
    exe = shutil.which("tarantool")
    assert exe is not None
    work = os.path.join(b.tmp, name)
    os.makedirs(work, exist_ok=True)
    n = accounts or b.accounts
    return b.start(ServerProcess("tarantool", [], b.tmp, b.server_cpu, name=name, cmd=lambda port: [
        exe, TARANTOOL_SERVER, str(port), work, str(n), str(balance)]))


def tarantool_load(b: Bench, server: ServerProcess, clients: int, function: str = "transfer", *,
                   inflight: int = 1, zipf: float = 0.0, accounts: int | None = None) -> dict:
    """net.box closed-loop clients (one connection each, driven by ``inflight`` fibers) calling
    ``function`` between accounts 1..``accounts`` (default: the run's), uniform or Zipf(``zipf``)."""
    exe = shutil.which("tarantool")
    assert exe is not None
    cmd = [exe, TARANTOOL_LOAD, f"127.0.0.1:{server.port}", str(clients), str(b.seconds),
           str(accounts or b.accounts), str(b.warmup), function]
    if inflight != 1:
        cmd += ["--inflight", str(inflight)]
    if zipf:
        cmd += ["--zipf", str(zipf)]
    r = run_loadgen(cmd, b.warmup + b.seconds + 60, cpu=b.load_cpu, server=server, tmp=b.tmp,
                    what="the net.box load generator")
    b.settle(server)
    return r


# ---------------------------------------------------------------- Redis

class RedisPeer:
    """redis-server (AOF, fsync always) with the accounts and both scripts loaded, and redis-benchmark."""

    def __init__(self, b: Bench, balance: int = BALANCE) -> None:
        exe = shutil.which("redis-server")
        bench_exe = shutil.which("redis-benchmark")
        assert exe is not None and bench_exe is not None
        self.bench_exe = bench_exe
        self.balance = balance
        work = os.path.join(b.tmp, "redis")
        os.makedirs(work, exist_ok=True)
        self.server = b.start(ServerProcess("redis", [], b.tmp, b.server_cpu, cmd=lambda port: [
            exe, "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "no", "--dir", work,
            "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
            "--logfile", ""]))
        self.transfer_sha = self.noop_sha = ""
        self.client: Any = None

    def setup(self, accounts: int) -> None:
        """After the server listens: the accounts (keys ``acc:<12 digits>``, 0-based) and both scripts."""
        import redis
        self.client = r = redis.Redis(host="127.0.0.1", port=self.server.port)
        for start in range(0, accounts, 1000):
            r.mset({redis_key(i): self.balance for i in range(start, min(accounts, start + 1000))})
        with open(REDIS_TRANSFER) as f:
            self.transfer_sha = r.script_load(f.read())
        self.noop_sha = r.script_load(REDIS_NOOP)

    def _evalsha_stats(self) -> tuple[int, int]:
        s = self.client.info("commandstats").get("cmdstat_evalsha", {})
        return int(s.get("calls", 0)), int(s.get("failed_calls", 0)) + int(s.get("rejected_calls", 0))

    def _run(self, b: Bench, clients: int, sha: str, requests: int) -> dict:
        cmd = [self.bench_exe, "-h", "127.0.0.1", "-p", str(self.server.port), "-c", str(clients),
               "-n", str(requests), "-r", str(b.accounts), "--csv",
               "EVALSHA", sha, "2", "acc:__rand_int__", "acc:__rand_int__", "1"]
        calls0, errors0 = self._evalsha_stats()
        cpu0, ru0 = self.server.cpu(), resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        p = subprocess.run(_pinned(b.load_cpu, cmd), capture_output=True, text=True,
                           timeout=b.seconds * 10 + 60)
        wall = time.perf_counter() - t0
        cpu1, ru1 = self.server.cpu(), resource.getrusage(resource.RUSAGE_CHILDREN)
        calls1, errors1 = self._evalsha_stats()
        rows = [r for r in csv.reader(p.stdout.splitlines()) if r]
        if p.returncode != 0 or len(rows) < 2 or rows[0][:2] != ["test", "rps"]:
            raise RuntimeError(f"redis-benchmark failed (exit {p.returncode}):\n{p.stdout[-1000:]}\n"
                               f"{p.stderr[-1000:]}")
        row = dict(zip(rows[0], rows[1], strict=False))
        load = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        return {"mode": "transfer", "loadgen": "redis-benchmark", "clients": clients,
                "messages": calls1 - calls0 - (errors1 - errors0), "requests": requests, "seconds": wall,
                "msg_per_s": float(row["rps"]), "p50_us": float(row["p50_latency_ms"]) * 1e3,
                "p99_us": float(row["p99_latency_ms"]) * 1e3, "errors": errors1 - errors0,
                "first_errors": [], "loadgen_cpu": load / wall,
                "server_cpu": (cpu1 - cpu0) / wall if cpu0 is not None and cpu1 is not None else None}

    def load(self, b: Bench, clients: int, sha: str) -> dict:
        """Warm-up runs for about ``b.warmup`` seconds (they also estimate the rate), then one run of
        about ``b.seconds`` seconds: redis-benchmark stops after a number of requests, not a time."""
        requests, spent, rate = max(100, 10 * clients), 0.0, 0.0
        while True:
            w = self._run(b, clients, sha, requests)
            spent += w["seconds"]
            rate = w["msg_per_s"]
            if spent >= b.warmup:
                break
            requests = max(requests, int(rate * (b.warmup - spent)))
        r = self._run(b, clients, sha, max(10 * clients, int(rate * b.seconds)))
        b.settle(self.server)
        return r


# ---------------------------------------------------------------- the cases of one run

def _missing(*programs: str) -> list[str]:
    return [p for p in programs if shutil.which(p) is None]


def _node_echo(b: Bench, skipped: dict[str, str], name: str | None = None) -> ServerProcess | None:
    """The Node echo server of the load generator's ceiling (None, and why in ``skipped``, when
    the load generator is not Node's)."""
    if b.loadgen != "node":
        skipped["node_ceiling"] = (f"the {b.loadgen} load generator's ceiling is not measured (only the "
                                   "Node load generator's: bench/loadgen/echo.js).")
        return None
    node = ensure_node()
    return b.start(ServerProcess("node-echo", [], b.tmp, b.server_cpu, name=name,
                                 cmd=lambda port: [node, NODE_ECHO, str(port)]))


def cases(b: Bench, which: Sequence[str],
          say: Callable[[str], None] = print) -> tuple[list[Case], dict[str, str]]:
    """Start the peers named in ``which`` (servers registered with ``b``, so the run stops them),
    wait until they listen, set them up; their cases, and the peers skipped with the reason."""
    skipped: dict[str, str] = {}
    out: list[Case] = []
    started: list[ServerProcess] = []
    sqlite: list[tuple[str, ServerProcess]] = []
    tnt = red = node_echo = None
    if "sqlite" in which:
        for sync in ("FULL", "NORMAL"):
            sp = sqlite_server(b, sync)
            started.append(sp)
            sqlite.append((sync, sp))
    if "tarantool" in which:
        if _missing("tarantool"):
            skipped["tarantool"] = f"Tarantool: `tarantool` is not installed; {SETUP_HINT}."
        else:
            tnt = tarantool_server(b)
            started.append(tnt)
    if "redis" in which:
        gone = _missing("redis-server", "redis-benchmark")
        try:
            import redis  # noqa: F401
        except ImportError:
            gone.append("the Python package redis")
        if gone:
            skipped["redis"] = f"Redis: {', '.join(gone)} not installed; {SETUP_HINT}."
        else:
            red = RedisPeer(b)
            started.append(red.server)
    if "ceilings" in which:
        node_echo = _node_echo(b, skipped)
        if node_echo is not None:
            started.append(node_echo)
    for sp in started:
        sp.wait_ready()
    if red is not None:
        say(f"setting up Redis: {b.accounts:,} accounts, SCRIPT LOAD ...")
        red.setup(b.accounts)

    lg = b.loadgen
    for sync, sp in sqlite:
        answer = "after the fsync" if sync == "FULL" else "at COMMIT, no fsync (WAL fsync'd at checkpoints)"
        out.append(Case(f"sqlite_{sync.lower()}", f"trio-websocket + SQLite {sync}", answer, lg,
                        functools.partial(b.ws_load, sp)))
    if tnt is not None:
        t = tnt
        out.append(Case("tarantool", "Tarantool 2.6, wal_mode fsync", "after the fsync", "net.box",
                        lambda c: tarantool_load(b, t, c, "transfer")))
    if red is not None:
        rp = red
        out.append(Case("redis", "Redis, appendfsync always", "after the fsync", "redis-benchmark",
                        lambda c: rp.load(b, c, rp.transfer_sha)))
    if "ceilings" in which:
        if node_echo is not None:
            ne = node_echo
            out.append(Case("node_ceiling", "ceiling: load.js vs a Node echo (echo.js)", "at once", "node",
                            lambda c: b.ws_load(ne, c), ceiling_of="node"))
        if tnt is not None:
            t = tnt
            out.append(Case("netbox_ceiling", "ceiling: net.box calling a no-op function", "at once",
                            "net.box", lambda c: tarantool_load(b, t, c, "noop"), ceiling_of="net.box"))
        if red is not None:
            rp = red
            out.append(Case("redis_ceiling", "ceiling: redis-benchmark, EVALSHA of a no-op script",
                            "at once", "redis-benchmark", lambda c: rp.load(b, c, rp.noop_sha),
                            ceiling_of="redis-benchmark"))
    return out, skipped


def pipelined_cases(b: Bench, which: Sequence[str], shape: Pipelined,
                    say: Callable[[str], None] = print) -> tuple[list[Case], dict[str, str]]:
    """The peers of the pipelined, skewed case (bench/network.py's ``Pipelined``), from ``which``:
    Tarantool with ``shape.accounts`` accounts (a server of its own, ``tarantool-pipelined``) and,
    with ``ceilings``, the ceilings of load.js and net.box at that shape.  Started (registered with
    ``b``) and waited for; their cases, and what was skipped with the reason."""
    skipped: dict[str, str] = {}
    out: list[Case] = []
    tnt = node_echo = None
    if "tarantool" in which:
        if _missing("tarantool"):
            skipped["tarantool"] = f"Tarantool: `tarantool` is not installed; {SETUP_HINT}."
        else:
            tnt = tarantool_server(b, accounts=shape.accounts, name="tarantool-pipelined")
    if "ceilings" in which:
        node_echo = _node_echo(b, skipped, name="node-echo-pipelined")
    for sp in (tnt, node_echo):
        if sp is not None:
            sp.wait_ready()
    k, alpha, n = shape.inflight, shape.alpha, shape.accounts
    if tnt is not None:
        t = tnt
        out.append(Case("tarantool", "Tarantool 2.6, wal_mode fsync", "after the fsync", "net.box",
                        lambda c: tarantool_load(b, t, c, "transfer", inflight=k, zipf=alpha, accounts=n)))
    if node_echo is not None:
        ne = node_echo
        out.append(Case("node_ceiling", "ceiling: load.js vs a Node echo (echo.js)", "at once", "node",
                        lambda c: b.ws_load(ne, c, inflight=k, zipf=alpha, accounts=n), ceiling_of="node"))
    if tnt is not None and "ceilings" in which:
        t = tnt
        out.append(Case("netbox_ceiling", "ceiling: net.box calling a no-op function", "at once", "net.box",
                        lambda c: tarantool_load(b, t, c, "noop", inflight=k, zipf=alpha, accounts=n),
                        ceiling_of="net.box"))
    return out, skipped


def versions(which: Sequence[str]) -> dict[str, Any]:
    """The peers' versions (None when not installed)."""
    import importlib.metadata as md

    def first_line(cmd: list[str]) -> str | None:
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return (p.stdout or p.stderr).strip().splitlines()[0] if p.returncode == 0 else None

    v: dict[str, Any] = {"sqlite": sqlite3.sqlite_version}
    if "tarantool" in which:
        v["tarantool"] = first_line(["tarantool", "--version"])
    if "redis" in which:
        v["redis-server"] = first_line(["redis-server", "--version"])
        v["redis-benchmark"] = first_line(["redis-benchmark", "--version"])
    for pkg in ("redis", "tarantool"):
        if pkg in which:
            try:
                v[f"python-{pkg}"] = md.version(pkg)
            except md.PackageNotFoundError:
                v[f"python-{pkg}"] = None
    return v


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve-sqlite", help="the trio-websocket + SQLite server")
    s.add_argument("--db", required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--synchronous", choices=("FULL", "NORMAL"), default="FULL")
    s.add_argument("--accounts", type=int, default=10_000)
    s.add_argument("--balance", type=int, default=BALANCE)
    a = p.parse_args(argv)
    serve_sqlite(a.db, a.host, a.port, a.synchronous, a.accounts, a.balance)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
