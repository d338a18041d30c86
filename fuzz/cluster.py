"""A replicated stdb cluster on loopback, for the replication tests, torture and benchmark:
three ``nats-server`` processes with JetStream in one NATS cluster, and stdb nodes started with
``stdb start --follow`` (docs/replication.md).

    with NatsCluster(tmp) as nats, Nodes(tmp, nats.url) as nodes:
        a = nodes.start("a"); b = nodes.start("b")
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from stdb.client import connect
from stdb.errors import ConnectionLost, NotLeader, StdbError

__all__ = ["NatsCluster", "Nodes", "Node", "free_ports", "nats_server", "status", "wait_for", "leader_name",
           "database_caught_up", "rows", "publish_bank", "Bank", "BALANCE"]

T = TypeVar("T")


def nats_server() -> str | None:
    for p in (shutil.which("nats-server"), "/usr/sbin/nats-server", "/usr/bin/nats-server"):
        if p and os.path.exists(p):
            return p
    return None


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class NatsCluster:
    """``size`` nats-servers with JetStream, clustered; ``kill(i)`` / ``restart(i)`` one."""

    def __init__(self, root: str, size: int = 3) -> None:
        exe = nats_server()
        if exe is None:
            raise RuntimeError("nats-server is not installed (apt-get install nats-server)")
        self.exe = exe
        self.root = os.path.join(root, "nats")
        self.size = size
        ports = free_ports(2 * size)
        self.ports, self.cports = ports[:size], ports[size:]
        self.procs: list[subprocess.Popen | None] = [None] * size

    @property
    def url(self) -> str:
        return ",".join(f"nats://127.0.0.1:{p}" for p in self.ports)

    def _start(self, i: int) -> None:
        d = os.path.join(self.root, f"n{i}")
        os.makedirs(d, exist_ok=True)
        routes = ",".join(f"nats://127.0.0.1:{p}" for j, p in enumerate(self.cports) if j != i)
        args = [self.exe, "-js", "-sd", d, "-n", f"n{i}", "-a", "127.0.0.1", "-p", str(self.ports[i])]
        if self.size > 1:           # (one server alone is no JetStream cluster)
            args += ["--cluster_name", "stdb", "--cluster", f"nats://127.0.0.1:{self.cports[i]}",
                     "--routes", routes]
        log = open(os.path.join(self.root, f"n{i}.log"), "ab")
        self.procs[i] = subprocess.Popen(args, stdout=log, stderr=log)
        log.close()

    def __enter__(self) -> NatsCluster:
        for i in range(self.size):
            self._start(i)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until JetStream answers on a server and an R``size`` stream can be made."""
        asyncio.run(self._ready(timeout))

    async def _ready(self, timeout: float) -> None:
        import nats
        end = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < end:
            try:
                nc = await nats.connect(self.url.split(","), connect_timeout=2, max_reconnect_attempts=1)
                try:
                    js = nc.jetstream(timeout=3)
                    await js.add_stream(name="READY", subjects=["ready.check"], num_replicas=self.size)
                    await js.publish("ready.check", b"x", timeout=3)
                    await js.delete_stream("READY")
                    return
                finally:
                    await nc.close()
            except Exception as e:  # noqa: BLE001 - not ready yet
                last = e
                await asyncio.sleep(0.3)
        raise RuntimeError(f"the NATS cluster was not ready after {timeout} s: {last!r}")

    def kill(self, i: int) -> None:
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()
        self.procs[i] = None

    def restart(self, i: int) -> None:
        self.kill(i)
        self._start(i)

    def __exit__(self, *exc: object) -> None:
        for i in range(self.size):
            self.kill(i)


@dataclass
class Node:
    name: str
    data: str
    port: int
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Nodes:
    """stdb nodes of one cluster, each with its own data directory and a fixed port (kept across
    restarts, so clients and the lease name the same URL)."""

    def __init__(self, root: str, nats_url: str, *, lease_ttl: float = 2.0, confirm: str = "quorum",
                 extra: tuple[str, ...] = ()) -> None:
        self.root = root
        self.nats_url = nats_url
        self.lease_ttl = lease_ttl
        self.confirm = confirm
        self.extra = extra
        self.nodes: dict[str, Node] = {}

    def start(self, name: str, *args: str) -> Node:
        node = self.nodes.get(name)
        if node is None:
            node = self.nodes[name] = Node(name, os.path.join(self.root, f"node-{name}"), free_ports(1)[0])
        port_file = os.path.join(self.root, f"{name}.port")
        if os.path.exists(port_file):
            os.remove(port_file)
        log = open(os.path.join(self.root, f"{name}.log"), "ab")
        node.proc = subprocess.Popen(
            [sys.executable, "-m", "stdb", "start", "--data", node.data, "--listen", f"127.0.0.1:{node.port}",
             "--port-file", port_file, "--log-level", "info", "--follow", self.nats_url, "--node", name,
             "--lease-ttl", str(self.lease_ttl), "--confirm", self.confirm, *self.extra, *args],
            stdout=log, stderr=log, env=dict(os.environ, STDB_CONFIG_DIR=os.path.join(self.root, "cfg")))
        log.close()
        end = time.monotonic() + 120
        while not os.path.exists(port_file):
            if node.proc.poll() is not None:
                raise RuntimeError(f"node {name} exited with {node.proc.returncode}; see "
                                   f"{os.path.join(self.root, name + '.log')}")
            if time.monotonic() > end:
                raise RuntimeError(f"node {name} did not start")
            time.sleep(0.05)
        return node

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        node = self.nodes[name]
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(sig)
            try:
                node.proc.wait(30)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()

    def log(self, name: str) -> str:
        with open(os.path.join(self.root, f"{name}.log"), errors="replace") as f:
            return f.read()

    def __enter__(self) -> Nodes:
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.nodes:
            self.kill(name, signal.SIGKILL)


def status(nats_url: str) -> dict[str, Any]:
    from stdb.cli.status import read_status
    return read_status(nats_url)


# ---- a bank on the cluster: the tests', the torture's and the benchmark's load

BALANCE = 1_000_000_000


def wait_for(pred: Callable[[], T], timeout: float = 60.0, what: str = "the condition") -> T:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def leader_name(nats_url: str, nodes: Nodes, not_: str | None = None) -> str | None:
    """The node the lease names, if it is alive and reports itself leading (None also while
    the NATS servers do not answer: a server was killed and its streams elect new leaders)."""
    try:
        st = status(nats_url)
    except StdbError:
        return None
    lead = st["leader"]
    if not lead or lead["node"] == not_ or not nodes.nodes[lead["node"]].alive:
        return None
    for n in st["nodes"]:
        if n["node"] == lead["node"] and n["role"] == "leader":
            return str(lead["node"])
    return None


def database_caught_up(nats_url: str, node: str, database: str, offset: int) -> bool:
    try:
        st = status(nats_url)
    except StdbError:
        return False
    for n in st["nodes"]:
        if n["node"] == node:
            d = n["databases"].get(database)
            return d is not None and d["next_offset"] > offset
    return False


async def rows(url: str, database: str, creds: str, sql: str = "SELECT * FROM account") -> list[tuple]:
    async with connect(url, database, credentials=creds) as c:
        return sorted((await c.query(sql)).rows)


async def publish_bank(url: str, creds: str, wasm: bytes, accounts: int) -> None:
    async with connect(url, "bank", credentials=creds) as c:
        await c.publish(wasm)
        for i in range(accounts):
            out = await c.call("create_account", i, BALANCE if i % 2 == 0 else 0)
            assert out.ok, out


class Bank:
    """Confirmed clients, each moving 1 from its own account 2i to 2i + 1 in a loop, following
    the leader across failovers.  ``acked[i]``: transfers client i saw committed; ``unknown[i]``:
    calls whose connection died before the answer (applied or not)."""

    def __init__(self, nats_url: str, nodes: Nodes, creds: str, clients: int) -> None:
        self.nats_url = nats_url
        self.nodes = nodes
        self.creds = creds
        self.acked = [0] * clients
        self.unknown = [0] * clients
        self.stop = False

    async def client(self, i: int) -> None:
        while not self.stop:
            lead = await trio.to_thread.run_sync(leader_name, self.nats_url, self.nodes)
            if lead is None:
                await trio.sleep(0.1)
                continue
            try:
                # (no reconnecting by itself: after a drop it finds the leader, which may be another node)
                async with connect(self.nodes.nodes[lead].url, "bank", credentials=self.creds,
                                   confirmed=True, reconnect=False) as conn:
                    while not self.stop:
                        try:
                            out = await conn.call("transfer", 2 * i, 2 * i + 1, 1)
                        except NotLeader:
                            break
                        except (ConnectionLost, OSError, trio.BrokenResourceError):
                            self.unknown[i] += 1
                            break
                        if out.ok:
                            self.acked[i] += 1
                        else:
                            raise AssertionError(f"transfer failed: {out}")
            except (ConnectionLost, OSError, StdbError):
                await trio.sleep(0.1)

    def check(self, balances: dict[int, int], acked_before: list[int] | None = None) -> None:
        """The invariants over ``balances``.  With the clients stopped: each client's transfers
        are between those acknowledged and those plus the unknown ones.  While they run
        (``acked_before``: ``acked`` copied before the balances were read): every transfer
        acknowledged before is there, and at most those acknowledged by now, the unknown ones and
        one more each (committed, its answer not arrived yet)."""
        for i in range(len(self.acked)):
            got = balances[2 * i + 1]
            assert balances[2 * i] + got == BALANCE, (i, balances)
            low = self.acked[i] if acked_before is None else acked_before[i]
            high = self.acked[i] + self.unknown[i] + (0 if acked_before is None else 1)
            assert low <= got <= high, (i, low, high, got)
