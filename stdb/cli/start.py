"""``stdb start``: run the server (with ``--demo``, the chat and arena examples published and
the arena's page served at ``/``)."""

from __future__ import annotations

import errno
import logging
import os
import pathlib
import tempfile

import click
import trio

from stdb.cli.output import errors_exit
from stdb.client.connection import default_credentials
from stdb.client.credentials import load_token, save_token
from stdb.errors import AuthError, StdbError

__all__ = ["start", "DEMO_MODULES"]

log = logging.getLogger("stdb.server")

_EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
DEMO_MODULES = {"chat": _EXAMPLES / "chat" / "chat.c", "arena": _EXAMPLES / "arena" / "arena.c"}
# the arena's page (built from examples/arena/web by tools/build_web.py; shipped in the package)
DEMO_PAGE = pathlib.Path(__file__).resolve().parents[1] / "web" / "arena"


def split_address(addr: str, default_port: int) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not host:
        host, port = addr, str(default_port)
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise click.BadParameter(f"{addr!r} is not HOST:PORT") from None


def _demo(server: object, url: str, credentials: str) -> bytes:
    """Publish the examples (``DEMO_MODULES``: chat and arena) as databases of those names,
    owned by this machine's CLI identity (so `stdb sql chat "DELETE …"` works from another
    terminal); a database that has a module already is left as it is.  Returns the owner
    identity."""
    from stdb.module.build import build_module
    from stdb.server.server import Server

    assert isinstance(server, Server)
    token = load_token(credentials, url)
    identity = None
    if token is not None:
        try:
            identity = server.issuer.verify(token)
        except AuthError:
            identity = None          # a token of another data directory's key: make a new one
    if identity is None:
        identity, token = server.issuer.new_identity()
        save_token(credentials, url, token)
    for name, source in DEMO_MODULES.items():
        h = server.databases.get(name)
        if h is not None and h.db.schema is not None:
            continue
        if not source.is_file():
            raise StdbError(f"the demo module's source {source} is missing",
                            hint="--demo needs a checkout installed with `pip install -e .`")
        with tempfile.TemporaryDirectory() as d:
            wasm = pathlib.Path(build_module(str(source), os.path.join(d, f"{name}.wasm"))).read_bytes()
        server.publish(name, identity, wasm)
    return identity


@click.command()
@click.option("--data", default="stdb-data", show_default=True, envvar="STDB_DATA",
              help="The data directory (databases, the token key).")
@click.option("--listen", default="127.0.0.1:3000", show_default=True, help="HOST:PORT for clients.")
@click.option("--demo", is_flag=True,
              help="Publish the chat example as database 'chat' and say how to use it.")
@click.option("--metrics", "metrics_addr", default=None, metavar="HOST:PORT",
              help="Serve Prometheus metrics at http://HOST:PORT/metrics.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True)
@click.option("--relaxed", is_flag=True,
              help="Relaxed durability: fsync on an interval, not per commit group (docs/log-format.md).")
@click.option("--snapshot-every", "snapshot_txs", type=click.IntRange(min=0), default=100_000,
              show_default=True, help="Take a snapshot after this many commit-log records (0: not by count).")
@click.option("--snapshot-every-mb", "snapshot_mb", type=click.IntRange(min=0), default=256,
              show_default=True, help="... or after this many MiB of commit log (0: not by size).")
@click.option("--keep-snapshots", type=click.IntRange(min=1), default=2, show_default=True,
              help="How many snapshots to keep per database.")
@click.option("--compact-log", is_flag=True,
              help="Delete commit-log records the oldest kept snapshot covers (no replay before it).")
@click.option("--credentials", default=None, help="Where --demo keeps the CLI identity's token.")
@click.option("--static", "static_dir", default=None, metavar="DIR",
              type=click.Path(exists=True, file_okay=False, dir_okay=True),
              help="Serve the files of DIR over plain HTTP on the same port (GET/HEAD; / is "
                   "index.html; websocket paths /v1/... unchanged).")
@click.option("--follow", "follow", default=None, metavar="NATS_URL",
              help="Join a replicated cluster through NATS JetStream (comma-separated servers): follow "
                   "its leader, and lead when the lease is free (docs/replication.md).")
@click.option("--node", "node_name", default="", help="With --follow: this node's name (default HOST:PORT).")
@click.option("--advertise", default="", metavar="URL",
              help="With --follow: the ws:// URL clients reach this node at (default: from --listen).")
@click.option("--replicas", type=click.IntRange(1, 5), default=3, show_default=True,
              help="With --follow: each database stream's replicas on the NATS servers.")
@click.option("--confirm", type=click.Choice(["quorum", "local"]), default="quorum", show_default=True,
              help="With --follow: confirmed clients are answered once a commit is on a majority of the "
                   "stream's servers (quorum) or once fsync'd here (local).")
@click.option("--lease-ttl", type=click.FloatRange(0.5, 600), default=3.0, show_default=True,
              help="With --follow: seconds the leader's lease lasts unless renewed (failover takes about "
                   "this).")
@click.option("--read-replica", is_flag=True, help="With --follow: never take the lease (serve reads only).")
@click.option("--port-file", default=None, metavar="PATH",
              help="Once listening, write the port there (with --listen HOST:0 the system picks a free one).")
@errors_exit
def start(data: str, listen: str, demo: bool, metrics_addr: str | None, log_format: str, log_level: str,
          relaxed: bool, snapshot_txs: int, snapshot_mb: int, keep_snapshots: int, compact_log: bool,
          credentials: str | None, port_file: str | None, static_dir: str | None, follow: str | None,
          node_name: str, advertise: str, replicas: int, confirm: str, lease_ttl: float,
          read_replica: bool) -> None:
    """Start the server: databases in DATA, clients at ws://HOST:PORT/v1/database/NAME
    (and, with --static DIR, DIR's files at http://HOST:PORT/).

    SIGINT or SIGTERM shuts it down gracefully (running reducers finish, commit logs are
    flushed, clients are told why they are closed)."""
    from stdb.server.logs import configure_logging
    from stdb.server.server import Server, run
    from stdb.storage.durable import StoreConfig

    configure_logging(log_format, log_level)
    host, port = split_address(listen, 3000)
    if demo and port == 0:
        raise click.BadParameter("--demo needs a fixed port (its credentials and instructions name it)",
                                 param_hint="--listen")
    store = StoreConfig(durability="relaxed" if relaxed else "durable",
                        snapshot_every_txs=snapshot_txs or None,
                        snapshot_every_bytes=(snapshot_mb << 20) or None,
                        keep_snapshots=keep_snapshots, compact_log=compact_log)
    if demo and static_dir is None and (DEMO_PAGE / "index.html").is_file():
        static_dir = str(DEMO_PAGE)             # the arena's page at http://HOST:PORT/
    node = None
    if follow:
        if demo:
            raise click.BadParameter("--demo publishes locally; start the cluster's nodes without it",
                                     param_hint="--follow")
        from stdb.replication.node import Node, ReplicationConfig
        node = Node(ReplicationConfig(follow, node=node_name, advertise=advertise, replicas=replicas,
                                      confirm=confirm, lease_ttl=lease_ttl, can_lead=not read_replica))
    server = Server(data, store=store, static_dir=static_dir, node=node)
    url = f"ws://{host}:{port}"
    if metrics_addr:
        mhost, mport = split_address(metrics_addr, 9100)
        server.metrics.serve_http(mhost, mport)
    server.open_existing()
    if demo:
        owner = _demo(server, url, credentials or default_credentials())
        page = "" if server.static is None else (
            f"\n\nPlay the arena: open http://{host}:{port}/ in a browser (a second tab is a second player).")
        click.echo(f"""
stdb is serving the demo databases 'chat' (examples/chat/chat.c) and 'arena'
(examples/arena/arena.c) at {url}{page}
Their owner is your CLI identity {owner.hex()[:16]}… (token saved for `stdb` commands).
In another terminal:

    stdb call chat set_name '"ada"'
    stdb call chat send_message '"hello, world"'
    stdb sql chat "SELECT * FROM message"
    stdb subscribe chat "SELECT * FROM message"      # live diffs; Ctrl-C to stop
    stdb describe chat

From Python:

    async with stdb.connect("{url}", "chat") as conn:
        await conn.subscribe("SELECT * FROM message")
        await conn.call("send_message", "hi from Python")

Ctrl-C stops the server.
""", err=True)
    try:
        trio.run(run, server, host, port, port_file)
    except (OSError, BaseExceptionGroup) as e:
        cause = _only_os_error(e)
        if cause is None:
            raise
        raise StdbError(f"cannot listen on {host}:{port}: {cause.strerror or cause}",
                        hint="another process may hold the port: choose another with --listen "
                             "(HOST:0 lets the system pick one; --port-file says which)",
                        code="cannot_listen") from None


def _only_os_error(e: BaseException) -> OSError | None:
    """The error binding the listening socket that ended the server (a port in use, an
    address not ours, a privileged port), also when trio's nurseries wrapped it in exception
    groups; None for anything else."""
    while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    if isinstance(e, OSError) and e.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
        return e
    return None
