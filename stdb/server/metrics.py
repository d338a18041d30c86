"""Prometheus metrics of one server (``stdb start --metrics HOST:PORT`` serves them over HTTP).

Counters and the reducer-duration histogram are updated where things happen (reducer calls,
commits, messages sent); gauges that are a state of the server (connected clients,
subscriptions, durable lag) are read from the server when Prometheus scrapes, so they can
never drift.  Each Server has its own registry (tests run several servers in one process).
The names are listed in docs/protocol.md, "Metrics".
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from stdb.server.server import Server

__all__ = ["Metrics"]

log = logging.getLogger("stdb.server")

DURATION_BUCKETS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


class _ServerState(Collector):
    """Gauges read from the server at scrape time (from the HTTP thread: copies, never iterates
    live containers)."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def collect(self) -> Iterator[Any]:
        clients = GaugeMetricFamily("stdb_connected_clients", "Open client connections", labels=["database"])
        subs = GaugeMetricFamily("stdb_subscriptions", "Subscribed queries (distinct plans)",
                                 labels=["database"])
        lag = GaugeMetricFamily("stdb_durable_lag_transactions",
                                "Committed transactions not yet fsynced", labels=["database"])
        for name, h in list(self.server.databases.items()):
            clients.add_metric([name], len(h.connections.copy()))
            if h.closed:
                continue
            subs.add_metric([name], len(h.db.queries.subs))
            log_ = h.db.store.log
            lag.add_metric([name], max(0, log_.next_offset - 1 - log_.durable_offset))
        yield clients
        yield subs
        yield lag


class Metrics:
    def __init__(self, server: Server) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.reducer_calls = Counter("stdb_reducer_calls", "Reducer calls by outcome",
                                     ["database", "reducer", "status"], registry=r)
        self.reducer_seconds = Histogram("stdb_reducer_duration_seconds", "Reducer run time",
                                         ["database"], buckets=DURATION_BUCKETS, registry=r)
        self.reducer_fuel = Counter("stdb_reducer_fuel", "Fuel (wasm instructions) used by committed calls",
                                    ["database", "reducer"], registry=r)
        self.commits = Counter("stdb_commits", "Committed transactions", ["database"], registry=r)
        self.messages_sent = Counter("stdb_messages_sent", "Messages sent to clients", registry=r)
        self.bytes_sent = Counter("stdb_bytes_sent", "Bytes sent to clients (message payloads)", registry=r)
        self.connections = Counter("stdb_connections", "Client connections accepted", registry=r)
        self.disconnected_slow = Counter("stdb_slow_client_disconnects",
                                         "Clients cut off for falling behind", registry=r)
        r.register(_ServerState(server))
        self._http: Any = None
        self._children: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}
        self._commits: dict[str, Any] = {}

    def serve_http(self, host: str, port: int) -> int:
        """Serve /metrics from a thread; returns the port (0 picks one)."""
        self._http, _ = start_http_server(port, host, registry=self.registry)
        bound = int(self._http.server_address[1])
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def call(self, database: str, reducer: str, status: str, seconds: float, fuel: int = 0) -> None:
        key = (database, reducer, status)
        children = self._children.get(key)       # labels() costs more than the update itself
        if children is None:
            children = self._children[key] = (self.reducer_calls.labels(database, reducer, status),
                                              self.reducer_seconds.labels(database),
                                              self.reducer_fuel.labels(database, reducer))
        calls, hist, fuel_used = children
        calls.inc()
        hist.observe(seconds)
        if fuel:
            fuel_used.inc(fuel)

    def commit(self, database: str) -> None:
        c = self._commits.get(database)
        if c is None:
            c = self._commits[database] = self.commits.labels(database)
        c.inc()
