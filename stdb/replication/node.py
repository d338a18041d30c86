"""A node's part in a replicated cluster (docs/replication.md).

Every node is started with ``stdb start --follow NATS_URL``.  It starts as a follower of every
database in the catalog: one ordered JetStream consumer per database, from the message holding
its own log's last record, each message applied on the database's execution thread.  When the
lease (a key with a TTL in a JetStream key-value bucket) is free and this node is caught up, it
takes it (compare-and-set), reads every stream to its end, and leads: its databases accept
writes and their commit logs are published (stdb/replication/publisher.py).  It renews the
lease; when it cannot, or a publish is fenced, it steps down and follows again.

Threads: everything here runs on the NATS loop (stdb/replication/bridge.py), but for the
methods the server calls on its I/O thread (``start``, ``opened``, ``removed``, ``stop``,
``states``), which only read or hand work across.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.js.api import ConsumerConfig, DeliverPolicy, KeyValueConfig, StorageType, StreamConfig

from stdb.errors import ReplicationError, StdbError
from stdb.module import replica
from stdb.replication import wire
from stdb.replication.bridge import AsyncioThread
from stdb.replication.publisher import Publisher, SteppedDown
from stdb.storage import logformat as lf
from stdb.storage.commitlog import iter_values, split_value

if TYPE_CHECKING:
    import trio

    from stdb.server.hosted import HostedDatabase
    from stdb.server.server import Server

__all__ = ["ReplicationConfig", "Node", "CONFIRM_MODES"]

log = logging.getLogger("stdb.replication")
CONFIRM_MODES = ("quorum", "local")
MARKER = "replica.json"          # in a database's directory: the incarnation it copies
T = TypeVar("T")


@dataclass
class ReplicationConfig:
    url: str                         # the NATS servers, comma-separated
    node: str = ""                   # this node's name (default: host:port of its listener)
    advertise: str = ""              # the URL clients reach this node at (default: ws://listen)
    replicas: int = 3                # each stream's replicas (R3: a majority is 2 servers)
    confirm: str = "quorum"          # confirmed clients wait for: "quorum" (JetStream) or "local" (fsync)
    lease_ttl: float = 3.0           # seconds a lease lasts unless renewed
    can_lead: bool = True            # False: a read replica that never takes the lease

    def __post_init__(self) -> None:
        if self.confirm not in CONFIRM_MODES:
            raise StdbError(f"unknown confirm mode {self.confirm!r}", hint="use 'quorum' or 'local'")
        if not 0.5 <= self.lease_ttl <= 600:
            raise StdbError(f"the lease TTL must be 0.5 to 600 s, got {self.lease_ttl}")


class Diverged(Exception):
    """This node's log holds a record at ``offset`` that the stream holds differently."""

    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


@dataclass
class Replica:
    name: str
    incarnation: str
    h: HostedDatabase | None = None
    applied_seq: int = 0               # stream sequence of the last message applied here
    stream_offset: int = -1            # the last log offset the stream holds, as far as known
    module_sha: str | None = None      # the module the stream carries last
    pending: int = 0                   # messages behind, at the last one applied
    applied_at: float = 0.0            # when the last message was applied (time.time())
    published_at: float = 0.0          # ... and when it had been published
    lags: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))   # publish → applied, s
    task: asyncio.Task | None = None   # the consumer (following)
    publisher: Publisher | None = None  # (leading)
    error: str | None = None


class Node:
    def __init__(self, config: ReplicationConfig) -> None:
        self.config = config
        self.bridge: AsyncioThread | None = None
        self.server: Server | None = None
        self.token: trio.lowlevel.TrioToken | None = None
        self.nc: Any = None
        self.js: Any = None
        self.role = "follower"              # or "leader"
        self.leader: dict | None = None     # the lease's value: {"node", "url", "since"}
        self.revision = 0                   # the lease's revision while leading (the term)
        self.lease_until = 0.0              # monotonic: leading is safe until then
        self.replicas: dict[str, Replica] = {}
        self.catalog: dict[str, dict] = {}
        self.max_payload = 1 << 20
        self.started = time.time()
        self._tasks: list[asyncio.Task] = []
        self._taking_over = False

    # ---- the I/O thread

    def start(self, server: Server, token: trio.lowlevel.TrioToken) -> None:
        """Connect to NATS: the buckets made if missing, the token key shared (before clients
        connect: the tokens they get must work on every node)."""
        self.server = server
        self.token = token
        self.bridge = AsyncioThread()
        try:
            self.bridge.submit(self._connect()).result(30)
        except StdbError:
            self.bridge.stop()
            raise
        except Exception as e:
            self.bridge.stop()
            hint = "is nats-server running there with JetStream enabled (-js)?"
            raise ReplicationError(f"cannot join the cluster at {self.config.url}: {e!r}",
                                   hint=hint) from None

    def run(self, listen_url: str) -> None:
        """(once the server listens) follow, and lead when the lease is free."""
        if not self.config.node:
            self.config.node = listen_url.split("//", 1)[-1] or socket.gethostname()
        if not self.config.advertise:
            self.config.advertise = listen_url
        assert self.bridge is not None
        self.bridge.submit(self._main())

    def opened(self, h: HostedDatabase) -> None:
        """(I/O thread, before ``h``'s thread runs anything) the server opened database ``h``: it
        follows until this node leads — but one this node creates while leading is led at once,
        its publisher taking the log's groups before the stream exists."""
        if self.role == "leader" and not self._taking_over and self.bridge is not None \
                and h.name not in self.replicas:
            r = self.replicas[h.name] = Replica(h.name, uuid.uuid4().hex, h)
            pub = self._publisher(r, 0)
            self._hook(h, pub)
            self.bridge.call_soon(self._created, r)
            return
        h.follower_of = self.leader_url
        if self.bridge is not None:
            self.bridge.call_soon(self._opened, h)

    def removed(self, name: str, deleted: bool) -> None:
        """(I/O thread) the server closed database ``name``; ``deleted``: its owner deleted it here."""
        if self.bridge is not None:
            self.bridge.call_soon(self._removed, name, deleted)

    def stop(self) -> None:
        if self.bridge is None:
            return
        try:
            self.bridge.submit(self._close()).result(10)
        except Exception as e:  # noqa: BLE001 - stopping anyway
            log.warning("leaving the cluster: %r", e)
        self.bridge.stop()
        self.bridge = None

    def leader_url(self) -> str | None:
        lead = self.leader
        return lead.get("url") if lead else None

    def states(self) -> dict[str, dict[str, Any]]:
        """Each database's replication state (any thread; copies)."""
        out = {}
        for name, r in list(self.replicas.items()):
            out[name] = self._state(r)
        return out

    # ---- connecting

    async def _connect(self) -> None:
        servers = [u.strip() for u in self.config.url.split(",") if u.strip()]

        async def error_cb(e: Exception) -> None:
            log.debug("nats: %r", e)
        self.nc = await nats.connect(servers, connect_timeout=3, max_reconnect_attempts=-1,
                                     reconnect_time_wait=0.2, error_cb=error_cb,
                                     name=f"stdb {self.config.node}")
        self.max_payload = self.nc.max_payload
        self.js = self.nc.jetstream(timeout=5)
        reps = self.config.replicas
        self.kv_catalog = await self._bucket(wire.CATALOG_BUCKET, replicas=reps)
        self.kv_lease = await self._bucket(wire.LEASE_BUCKET, replicas=reps, ttl=self.config.lease_ttl)
        self.kv_nodes = await self._bucket(wire.NODES_BUCKET, replicas=reps, ttl=10.0)
        kv_cluster = await self._bucket(wire.CLUSTER_BUCKET, replicas=reps)
        await self._share_token_key(kv_cluster)

    async def _bucket(self, name: str, *, replicas: int, ttl: float | None = None) -> Any:
        try:
            return await self.js.key_value(name)
        except nats.js.errors.BucketNotFoundError:
            pass
        cfg = KeyValueConfig(bucket=name, history=1, replicas=replicas, ttl=ttl, storage=StorageType.FILE)
        try:
            return await self.js.create_key_value(cfg)
        except nats.js.errors.APIError:
            return await self.js.key_value(name)    # another node made it meanwhile

    async def _share_token_key(self, kv: Any) -> None:
        """Every node signs and checks identity tokens with one key, so a client's token works on
        whichever node it reaches: the first node's key, kept in the cluster bucket."""
        assert self.server is not None
        mine = self.server.issuer.key
        try:
            await kv.create(wire.TOKEN_KEY, mine)
            return
        except nats.js.errors.KeyWrongLastSequenceError:
            pass
        entry = await kv.get(wire.TOKEN_KEY)
        if entry.value != mine:
            self.server.adopt_token_key(entry.value)

    async def _close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for r in self.replicas.values():
            if r.task is not None:
                r.task.cancel()
            if r.publisher is not None:
                r.publisher.stop("the server is shutting down")
        if self.role == "leader" and self.revision:
            try:                # a graceful stop hands the lease on at once
                await self.kv_lease.delete(wire.LEASE_KEY, last=self.revision)
            except Exception:  # noqa: BLE001 - it expires anyway
                pass
        try:
            await self.nc.drain()
        except Exception:  # noqa: BLE001
            pass

    # ---- running

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._guard(self._watch_catalog, "the catalog watch")),
                       loop.create_task(self._guard(self._lease_loop, "the lease")),
                       loop.create_task(self._guard(self._report_loop, "the status report"))]

    async def _guard(self, fn: Callable[[], Any], what: str) -> None:
        while True:
            try:
                await fn()
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - logged; tried again
                log.warning("replication: %s failed (%r); again in 1 s", what, e)
                await asyncio.sleep(1.0)

    async def _watch_catalog(self) -> None:
        watcher = await self.kv_catalog.watchall()
        async for entry in watcher:
            if entry is None:           # the initial values have all arrived
                await self._sync_local()
                continue
            if entry.operation in ("DEL", "PURGE"):
                self.catalog.pop(entry.key, None)
                if self.role != "leader":
                    await self._drop(entry.key)
                continue
            value = json.loads(entry.value)
            self.catalog[entry.key] = value
            if self.role != "leader" or entry.key not in self.replicas:
                await self._follow_database(entry.key, value["incarnation"])

    async def _sync_local(self) -> None:
        """After the catalog's first read: the local databases it does not have are either
        copies of deleted ones (dropped) or databases this node had alone (kept: a leader
        replicates them once it leads)."""
        assert self.server is not None
        for name in await self._on_trio(lambda: list(self.server.databases) if self.server else []):
            if name not in self.catalog and self._marker(name) is not None:
                log.info("%s: deleted while this node was away; dropping its copy", name)
                await self._drop(name)

    def _marker(self, name: str) -> str | None:
        assert self.server is not None
        try:
            with open(os.path.join(self.server.database_path(name), MARKER)) as f:
                return str(json.load(f)["incarnation"])
        except (OSError, ValueError, KeyError):
            return None

    def _write_marker(self, name: str, incarnation: str) -> None:
        assert self.server is not None
        path = os.path.join(self.server.database_path(name), MARKER)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"incarnation": incarnation}, f)
        os.replace(tmp, path)

    async def _follow_database(self, name: str, incarnation: str) -> None:
        r = self.replicas.get(name)
        if r is not None and r.incarnation == incarnation and (r.task is not None or r.publisher is not None):
            return
        if self._marker(name) not in (None, incarnation):
            log.info("%s: the cluster's copy is a new database of that name; dropping the old copy", name)
            await self._drop(name)
        r = self.replicas[name] = Replica(name, incarnation)
        h = await self._on_trio(lambda: self.server.open_replica(name) if self.server else None)
        if h is None:
            return
        r.h = h
        self._write_marker(name, incarnation)
        if self.role != "leader":
            r.task = asyncio.get_running_loop().create_task(self._follow(r))

    def _opened(self, h: HostedDatabase) -> None:
        r = self.replicas.get(h.name)
        if r is not None:
            r.h = h

    def _created(self, r: Replica) -> None:
        asyncio.get_running_loop().create_task(self._guard(lambda: self._create_stream(r),
                                                           f"creating {r.name}"))

    async def _create_stream(self, r: Replica) -> None:
        """The stream of a database created on this leader, then its catalog entry; then its
        publisher starts (it has been gathering the log's groups meanwhile)."""
        await self._new_stream(r)
        await self._list(r)
        if r.publisher is not None:
            r.publisher.start()

    async def _new_stream(self, r: Replica) -> None:
        """Database ``r``'s stream, empty (a deleted incarnation's, if it lingered, goes first)."""
        name = wire.stream_name(r.name)
        try:
            await self.js.delete_stream(name)
        except nats.js.errors.NotFoundError:
            pass
        await self.js.add_stream(StreamConfig(name=name, subjects=[wire.subject(r.name)],
                                              num_replicas=self.config.replicas, storage=StorageType.FILE,
                                              duplicate_window=120.0))
        self._write_marker(r.name, r.incarnation)

    async def _list(self, r: Replica) -> None:
        """Database ``r`` in the catalog: the followers open their copies."""
        entry = {"stream": wire.stream_name(r.name), "incarnation": r.incarnation}
        await self.kv_catalog.put(r.name, json.dumps(entry).encode())
        self.catalog[r.name] = entry

    def _removed(self, name: str, deleted: bool) -> None:
        r = self.replicas.get(name)
        if r is not None and r.publisher is not None:
            r.publisher.stop(f"database '{name}' was closed")
        if deleted and self.role == "leader":
            self.replicas.pop(name, None)
            asyncio.get_running_loop().create_task(self._delete_stream(name))

    async def _delete_stream(self, name: str) -> None:
        try:
            await self.kv_catalog.delete(name)
            await self.js.delete_stream(wire.stream_name(name))
        except Exception as e:  # noqa: BLE001
            log.warning("%s: removing its stream failed: %r", name, e)

    async def _drop(self, name: str) -> None:
        r = self.replicas.pop(name, None)
        if r is not None and r.task is not None:
            r.task.cancel()
        await self._on_trio(lambda: self.server.drop_replica(name) if self.server else None)

    # ---- following

    async def _follow(self, r: Replica) -> None:
        """Apply the stream's messages from where this copy's log ends, for ever."""
        while True:
            try:
                await self._consume(r)
                return
            except asyncio.CancelledError:
                raise
            except Diverged as d:
                at = d.offset
                log.warning("%s: this node's log differs from the stream from offset %d on (it led and "
                            "its last commits were not replicated): rewinding it", r.name, at)
                server = self.server
                assert server is not None
                h = await self._on_trio(partial(server.reopen_replica, r.name, at))
                if h is None:
                    return
                r.h = h
            except (TimeoutError, nats.js.errors.NotFoundError, nats.js.errors.ServiceUnavailableError,
                    nats.errors.TimeoutError) as e:
                r.error = None if isinstance(e, nats.js.errors.NotFoundError) else repr(e)
                await asyncio.sleep(0.5)            # the stream is not there yet, or NATS is away
            except StdbError as e:
                r.error = e.detail
                log.error("%s: replication stopped: %s", r.name, e.detail)
                await asyncio.sleep(2.0)
            except Exception as e:  # noqa: BLE001
                r.error = repr(e)
                log.exception("%s: following failed", r.name)
                await asyncio.sleep(2.0)

    async def _consume(self, r: Replica) -> None:
        stream = wire.stream_name(r.name)
        start = await self._start_seq(r)
        cfg = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
        sub = await self.js.subscribe(wire.subject(r.name), stream=stream, ordered_consumer=True, config=cfg,
                                      idle_heartbeat=2.0)
        parts = wire.Parts()
        try:
            async for msg in sub.messages:
                whole = parts.add(msg.headers, msg.data)
                md = msg.metadata
                if whole is None:
                    continue
                m = wire.Message.parse(msg.headers, whole)
                h = r.h
                if h is None:
                    return
                await self._run_on(h, partial(self._apply, r, h, m))
                r.applied_seq = md.sequence.stream
                r.pending = md.num_pending
                r.error = None
                now = time.time()
                r.applied_at = now
                r.published_at = md.timestamp.timestamp() if hasattr(md.timestamp, "timestamp") else now
                r.lags.append(max(0.0, now - r.published_at))
        finally:
            try:
                await sub.unsubscribe()
            except Exception:  # noqa: BLE001
                pass

    async def _start_seq(self, r: Replica) -> int:
        """The stream sequence to read from: the first message that holds an offset at or
        after this copy's last record (that record is compared: a rewound leader's is not the
        stream's), found by a binary search over the stream's ``Stdb-After`` headers."""
        assert r.h is not None
        nxt = r.h.db.store.log.next_offset
        info = await self.js.stream_info(wire.stream_name(r.name))
        lo, hi = info.state.first_seq, info.state.last_seq
        if hi == 0 or nxt == 0:
            return max(lo, 1)
        stream = wire.stream_name(r.name)

        async def after(seq: int) -> int:
            m = await self.js.get_msg(stream, seq)
            return int((m.headers or {}).get(wire.AFTER, "0"))
        # the last message wholly before offset nxt - 1: everything up to it is in this log
        found = lo - 1
        a, b = lo, hi
        while a <= b:
            mid = (a + b) // 2
            if await after(mid) <= nxt - 1:
                found, a = mid, mid + 1
            else:
                b = mid - 1
        start = found + 1
        if start <= hi:
            part = ((await self.js.get_msg(stream, start)).headers or {}).get(wire.PART)
            if part is not None:
                start -= int(part.split("/")[0]) - 1
        r.stream_offset = max(r.stream_offset, min(nxt - 1, (await after(found)) - 1 if found >= lo else -1))
        return max(start, 1)

    def _apply(self, r: Replica, h: HostedDatabase, m: wire.Message) -> None:
        """(execution thread) one message of the stream, into this copy."""
        if h.closed:
            return
        db = h.db
        if m.kind == "log":
            for off, raw in wire.records(m):
                nxt = db.store.log.next_offset
                if off < nxt:
                    if replica.local_record(db, off) != raw:
                        raise Diverged(off)
                    continue
                if off > nxt:
                    raise ReplicationError(f"database '{r.name}': the stream jumps from offset {nxt - 1} to "
                                           f"{off}: records are missing")
                res, caller = replica.apply_record(db, off, raw)
                if res is not None:
                    h.broadcast(res, None, None, caller)
                else:
                    h._note_commit(off)
            r.stream_offset = m.after - 1
        elif m.kind == "module":
            sha = json.loads(m.info or b"{}").get("sha256") if m.payload else None
            r.module_sha = sha
            if sha == replica.module_sha256(db) and (sha is None) == (db.schema is None):
                return
            for conn in replica.install_module(db, m.payload or None, m.info):
                h._error(conn, StdbError(f"the module of '{r.name}' was updated; subscribe again",
                                         code="resubscribe"), None)
            h._due_stale = True
        elif m.kind == "settings":
            replica.install_settings(db, m.payload)

    # ---- the lease

    def _lease_value(self) -> bytes:
        return json.dumps({"node": self.config.node, "url": self.config.advertise,
                           "since": time.time()}).encode()

    def lease_ok(self) -> bool:
        return self.role == "leader" and time.monotonic() < self.lease_until

    async def _lease_loop(self) -> None:
        ttl = self.config.lease_ttl
        while True:
            if self.role == "leader":
                await asyncio.sleep(ttl / 4)
                t0 = time.monotonic()
                try:
                    self.revision = await self.kv_lease.update(wire.LEASE_KEY, self._lease_value(),
                                                               last=self.revision)
                    self.lease_until = t0 + ttl * 0.8
                except nats.js.errors.KeyWrongLastSequenceError:
                    await self._step_down("another node holds the lease")
                except Exception as e:  # noqa: BLE001 - NATS away: lead while the lease lasts
                    if time.monotonic() >= self.lease_until:
                        await self._step_down(f"the lease could not be renewed ({e!r})")
                continue
            try:
                entry = await self.kv_lease.get(wire.LEASE_KEY)
                self.leader = json.loads(entry.value)
            except nats.js.errors.KeyNotFoundError:
                self.leader = None
                if self.config.can_lead and await self._caught_up():
                    t0 = time.monotonic()
                    try:
                        rev = await self.kv_lease.create(wire.LEASE_KEY, self._lease_value())
                    except nats.js.errors.KeyWrongLastSequenceError:
                        rev = 0                 # another node was quicker
                    if rev:
                        self.revision = rev
                        self.lease_until = t0 + ttl * 0.8
                        await self._take_over()
                        continue
            except (TimeoutError, nats.errors.Error):
                pass
            await asyncio.sleep(min(0.25, ttl / 6))

    async def _caught_up(self) -> bool:
        """Every database of the catalog is open here and has applied its whole stream."""
        for name in self.catalog:
            r = self.replicas.get(name)
            if r is None or r.h is None or r.task is None or r.error is not None:
                return False
            info = await self.js.stream_info(wire.stream_name(name))
            if r.applied_seq < info.state.last_seq:
                return False
        return True

    async def _take_over(self) -> None:
        """This node holds the lease: read every stream to its end, then lead."""
        self._taking_over = True
        try:
            self.role = "leader"
            self.leader = json.loads(self._lease_value())
            log.info("node %s leads (lease revision %d)", self.config.node, self.revision)
            deadline = time.monotonic() + self.config.lease_ttl * 0.5
            ends: dict[str, int] = {}
            for name, r in list(self.replicas.items()):
                info = await self.js.stream_info(wire.stream_name(name))
                while r.applied_seq < info.state.last_seq:
                    if time.monotonic() > deadline or r.error is not None:
                        raise ReplicationError(f"database '{name}' did not catch up with its stream")
                    await asyncio.sleep(0.01)
                if r.task is not None:
                    r.task.cancel()
                    r.task = None
                ends[name] = info.state.last_seq
            for name, r in list(self.replicas.items()):
                await self._lead(r, ends[name])
            assert self.server is not None
            for name in await self._on_trio(lambda: list(self.server.databases) if self.server else []):
                if name not in self.replicas:
                    server = self.server
                    h = await self._on_trio(partial(server.databases.get, name))
                    if h is not None:
                        await self._lead_new(h)
        except Exception as e:  # noqa: BLE001
            log.error("taking over failed (%s); following again", e)
            await self._step_down(f"taking over failed: {e}")
        finally:
            self._taking_over = False

    async def _lead_new(self, h: HostedDatabase) -> None:
        """Lead a database this node has that the cluster does not (it was made here alone):
        its stream made, then its whole log published."""
        r = self.replicas[h.name] = Replica(h.name, uuid.uuid4().hex, h)
        await self._new_stream(r)
        await self._lead(r, 0)
        await self._list(r)

    def _publisher(self, r: Replica, last_seq: int) -> Publisher:
        assert self.bridge is not None
        loop = self.bridge.loop
        pub = Publisher(self.bridge, self.js, r.name, expected_seq=last_seq,
                        replicated_offset=r.stream_offset, term=self.revision, max_payload=self.max_payload,
                        lease_ok=self.lease_ok,
                        on_fenced=lambda why: self._fenced(loop, why))
        r.publisher = pub
        return pub

    def _fenced(self, loop: asyncio.AbstractEventLoop, why: str) -> None:
        loop.create_task(self._step_down(why))

    def _hook(self, h: HostedDatabase, pub: Publisher) -> None:
        """(before or on ``h``'s execution thread) its commits and meta changes go to ``pub``;
        it takes writes."""
        log_ = h.db.store.log
        log_.on_written = pub.written
        h.db.on_meta = lambda kind, data, info: pub.meta(kind, data, info, log_.next_offset)
        h.replicated = pub if self.config.confirm == "quorum" else None
        h.follower_of = None
        h._due_stale = True

    async def _lead(self, r: Replica, last_seq: int) -> None:
        h = r.h
        assert h is not None
        pub = self._publisher(r, last_seq)

        def lead() -> None:
            db = h.db
            db.store.flush()                 # what it applied is written: the hook sees only new groups
            log_ = db.store.log
            tail = r.stream_offset + 1
            if tail < log_.next_offset:      # its own commits the stream lacks (it led before)
                for first, value in iter_values(db.store.env, tail):
                    pieces = split_value(first, value)
                    recs = [(off, bytes(rec)) for off, rec in pieces if off >= tail]
                    if recs:
                        pub.written([(lf.offset_key(recs[0][0]), b"".join(rec for _, rec in recs))])
            sha = replica.module_sha256(db)
            if sha is not None and sha != r.module_sha:
                wasm, info = replica.stored_module(db)
                pub.meta("module", wasm, info, log_.next_offset)
            self._hook(h, pub)
        await self._run_on(h, lead)
        pub.start()

    async def _step_down(self, why: str) -> None:
        if self.role != "leader":
            return
        log.warning("node %s stops leading: %s", self.config.node, why)
        self.role = "follower"
        self.leader = None
        self.revision = 0
        for r in list(self.replicas.values()):
            pub, r.publisher = r.publisher, None
            if pub is not None:
                pub.stop(why)
            h = r.h
            if h is not None and not h.closed:
                def follow(h: HostedDatabase = h, pub: Publisher | None = pub) -> None:
                    log_ = h.db.store.log
                    log_.on_written = None
                    h.db.on_meta = None
                    h.follower_of = self.leader_url
                    if pub is not None and h.replicated is not None:
                        h.replicated = SteppedDown(h.name, pub.offset, log_.next_offset - 1)
                try:
                    await self._run_on(h, follow)
                except StdbError:
                    pass
            if r.task is None:
                r.task = asyncio.get_running_loop().create_task(self._follow(r))

    # ---- status

    def _state(self, r: Replica) -> dict[str, Any]:
        h = r.h
        nxt = h.db.store.log.next_offset if h is not None and not h.closed else 0
        lags = sorted(r.lags)
        st: dict[str, Any] = {"role": "leader" if r.publisher is not None else "follower",
                              "next_offset": nxt, "stream_offset": r.stream_offset, "error": r.error}
        if r.publisher is not None:
            st["replicated_offset"] = r.publisher.offset
            st["lag_records"] = max(0, nxt - 1 - r.publisher.offset)
        else:
            st["applied_seq"] = r.applied_seq
            st["pending_messages"] = r.pending
            st["lag_seconds"] = 0.0 if not r.pending else max(0.0, time.time() - r.published_at)
            st["lag_records"] = max(0, r.stream_offset - (nxt - 1))
            if lags:
                st["lag_ms_p50"] = round(lags[len(lags) // 2] * 1000, 3)
                st["lag_ms_p99"] = round(lags[min(len(lags) - 1, int(len(lags) * 0.99))] * 1000, 3)
        return st

    def status(self) -> dict[str, Any]:
        return {"node": self.config.node, "url": self.config.advertise, "role": self.role,
                "leader": self.leader_url(), "confirm": self.config.confirm, "can_lead": self.config.can_lead,
                "updated": time.time(), "databases": self.states()}

    async def _report_loop(self) -> None:
        while True:
            try:
                await self.kv_nodes.put(_key(self.config.node), json.dumps(self.status()).encode())
            except Exception as e:  # noqa: BLE001 - reported again in a second
                log.debug("status report: %r", e)
            await asyncio.sleep(1.0)

    # ---- hand-offs

    async def _run_on(self, h: HostedDatabase, fn: Callable[[], T]) -> T:
        """``fn()`` on ``h``'s execution thread; its result or what it raised."""
        fut, job = self._handoff(fn)
        if not h.submit(job):
            raise ReplicationError(f"database '{h.name}' is closed")
        return await fut

    async def _on_trio(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the server's I/O thread."""
        assert self.token is not None
        fut, job = self._handoff(fn)
        self.token.run_sync_soon(job)
        return await fut

    @staticmethod
    def _handoff(fn: Callable[[], T]) -> tuple[asyncio.Future[T], Callable[[], None]]:
        """A future on this loop and the job (for another thread) that runs ``fn`` into it."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()

        def done(ok: bool, value: Any) -> None:
            if not fut.done():
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

        def job() -> None:
            value: Any
            try:
                value, ok = fn(), True
            except BaseException as e:  # noqa: BLE001 - handed to the waiting task
                value, ok = e, False
            loop.call_soon_threadsafe(done, ok, value)
        return fut, job

def _key(node: str) -> str:
    """A node name as a key-value key (letters, digits, - _ = . /)."""
    return "".join(c if c.isalnum() or c in "-_=./" else "_" for c in node)

