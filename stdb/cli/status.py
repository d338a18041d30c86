"""``stdb status --nats URL``: a replicated cluster's nodes, who leads, and each database's
offsets and lag, as the nodes report them every second (docs/replication.md)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import click

from stdb.cli.output import errors_exit
from stdb.errors import ReplicationError

__all__ = ["status", "read_status"]


async def _read(url: str) -> dict[str, Any]:
    import nats
    import nats.js.errors

    from stdb.replication import wire
    # (the whole list: nats-py tries the next server when one refuses; one server alone that refuses
    # is retried for minutes)
    async def quiet(e: Exception) -> None:      # (a server that refuses: the next one is tried)
        pass
    nc = await nats.connect([u.strip() for u in url.split(",") if u.strip()], connect_timeout=2,
                            max_reconnect_attempts=1, reconnect_time_wait=0.1, error_cb=quiet)
    try:
        js = nc.jetstream(timeout=5)
        out: dict[str, Any] = {"leader": None, "nodes": []}
        try:
            lease = await js.key_value(wire.LEASE_BUCKET)
            out["leader"] = json.loads((await lease.get(wire.LEASE_KEY)).value or b"null")
        except nats.js.errors.NotFoundError:
            pass
        try:
            nodes = await js.key_value(wire.NODES_BUCKET)
            for key in await nodes.keys():
                try:
                    out["nodes"].append(json.loads((await nodes.get(key)).value or b"{}"))
                except nats.js.errors.NotFoundError:
                    pass
        except nats.js.errors.NoKeysError:
            pass
        except nats.js.errors.NotFoundError:
            pass
        return out
    finally:
        await nc.close()


def read_status(url: str, timeout: float = 15.0) -> dict[str, Any]:
    """The lease's value and every live node's last report.  Tried again for ``timeout``
    seconds: while a NATS server is down, the buckets it led answer only once they elected
    another leader (a few seconds)."""
    end = time.monotonic() + timeout
    while True:
        try:
            return asyncio.run(_read(url))
        except Exception as e:
            if time.monotonic() < end:
                time.sleep(0.2)
                continue
            raise ReplicationError(f"cannot read the cluster's status from {url}: {e!r}",
                                   hint="is nats-server running there with JetStream (-js)?") from None


@click.command()
@click.option("--nats", "url", required=True, envvar="STDB_NATS", metavar="NATS_URL",
              help="The cluster's NATS servers (what its nodes were started with --follow).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@errors_exit
def status(url: str, as_json: bool) -> None:
    """Each node of a replicated cluster: its role, and per database its offsets and lag."""
    st = read_status(url)
    if as_json:
        click.echo(json.dumps(st, indent=2, sort_keys=True))
        return
    lead = st["leader"]
    click.echo(f"leader: {lead['node']} at {lead['url']}" if lead else "leader: none (the lease is free)")
    now = time.time()
    for n in sorted(st["nodes"], key=lambda n: (n.get("role") != "leader", n.get("node", ""))):
        age = now - n.get("updated", now)
        click.echo(f"\n{n.get('node')}  {n.get('role')}  {n.get('url')}  (reported {age:.1f} s ago)")
        for name, d in sorted(n.get("databases", {}).items()):
            line = f"  {name}: next offset {d.get('next_offset')}"
            if d.get("role") == "leader":
                line += (f", replicated through {d.get('replicated_offset')}, "
                         f"unacknowledged {d.get('lag_records')}")
            else:
                line += (f", stream through {d.get('stream_offset')}, lag {d.get('lag_records')} records / "
                         f"{d.get('lag_seconds', 0):.3f} s")
                if "lag_ms_p50" in d:
                    line += f" (apply lag p50 {d['lag_ms_p50']} ms, p99 {d['lag_ms_p99']} ms)"
            if d.get("error"):
                line += f"  ERROR: {d['error']}"
            click.echo(line)
    if not st["nodes"]:
        click.echo("no node has reported in the last 10 s")
