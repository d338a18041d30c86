"""Prometheus metrics of one server (``stdb start --metrics HOST:PORT`` serves them over HTTP).

Counters and the reducer-duration histogram are updated where things happen (reducer calls,
commits, messages sent); gauges that are a state of the server (connected clients,
subscriptions, durable lag) are read from the server when Prometheus scrapes, so they can
never drift.  Each Server has its own registry (tests run several servers in one process).
The names are listed in docs/protocol.md, "Metrics".
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

__all__ = ["DatabaseState", "Metrics"]

log = logging.getLogger("stdb.server")

DURATION_BUCKETS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


class DatabaseState(NamedTuple):
    """One database's gauges, read when Prometheus scrapes (None: the database is closed)."""

    name: str
    clients: int
    subscriptions: int | None = None
    durable_lag: int | None = None
    log_failed: bool | None = None
    snapshot_failing: bool | None = None
    replica_lag_records: int | None = None      # replicated databases (docs/replication.md)
    replica_lag_seconds: float | None = None


class _ServerState(Collector):
    """Gauges read from the server at scrape time (the server's ``states`` runs on the HTTP
    thread: it copies, never iterates live containers)."""

    def __init__(self, states: Callable[[], Iterable[DatabaseState]]) -> None:
        self.states = states

    def collect(self) -> Iterator[Any]:
        clients = GaugeMetricFamily("stdb_connected_clients", "Open client connections", labels=["database"])
        subs = GaugeMetricFamily("stdb_subscriptions", "Subscribed queries (distinct plans)",
                                 labels=["database"])
        lag = GaugeMetricFamily("stdb_durable_lag_transactions",
                                "Committed transactions not yet fsynced", labels=["database"])
        log_failed = GaugeMetricFamily("stdb_commit_log_failed",
                                       "1 when the commit log stopped after an I/O error",
                                       labels=["database"])
        snap_failing = GaugeMetricFamily("stdb_snapshot_failing",
                                         "1 when the last automatic snapshot failed", labels=["database"])
        rlag = GaugeMetricFamily("stdb_replica_lag_records",
                                 "Replicated: records the stream has that this node has not applied (a "
                                 "follower), or has not had acknowledged by JetStream (the leader)",
                                 labels=["database"])
        rlag_s = GaugeMetricFamily("stdb_replica_lag_seconds",
                                   "Follower: age of the oldest replicated message not yet applied",
                                   labels=["database"])
        for st in self.states():
            clients.add_metric([st.name], st.clients)
            if st.subscriptions is None:
                continue
            subs.add_metric([st.name], st.subscriptions)
            lag.add_metric([st.name], st.durable_lag or 0)
            log_failed.add_metric([st.name], int(bool(st.log_failed)))
            snap_failing.add_metric([st.name], int(bool(st.snapshot_failing)))
            if st.replica_lag_records is not None:
                rlag.add_metric([st.name], st.replica_lag_records)
            if st.replica_lag_seconds is not None:
                rlag_s.add_metric([st.name], st.replica_lag_seconds)
        yield rlag
        yield rlag_s
        yield clients
        yield subs
        yield lag
        yield log_failed
        yield snap_failing


class _Hot(Collector):
    """The counters and histogram the call path updates, as plain numbers (a dict update costs
    ~0.1 µs; a prometheus_client child's ``inc`` several, with its lock), turned into metric
    families when Prometheus scrapes.  The HTTP thread reads copies, which may be a moment old.
    Each database's execution thread updates the entries of
    its own database; the I/O thread the message counts: every entry has one writer."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str, str], int] = {}
        self.fuel: dict[tuple[str, str], int] = {}
        self.durations: dict[str, list[float]] = {}    # database -> per-bucket counts, then the sum
        self.commits: dict[str, int] = {}
        self.queries: dict[tuple[str, str], int] = {}     # (database, outcome) -> one-off queries
        self.query_seconds: dict[str, float] = {}
        self.messages_sent = 0
        self.bytes_sent = 0

    def collect(self) -> Iterator[Any]:
        calls = CounterMetricFamily("stdb_reducer_calls", "Reducer calls by outcome",
                                    labels=["database", "reducer", "status"])
        for k, v in self.calls.copy().items():
            calls.add_metric(list(k), v)
        seconds = HistogramMetricFamily("stdb_reducer_duration_seconds", "Reducer run time",
                                        labels=["database"])
        for db, counts in self.durations.copy().items():
            counts = list(counts)
            cumulative, acc = [], 0.0
            for le, n in zip([*map(_le, DURATION_BUCKETS), "+Inf"], counts[:-1], strict=True):
                acc += n
                cumulative.append((le, acc))
            seconds.add_metric([db], cumulative, counts[-1])
        fuel = CounterMetricFamily("stdb_reducer_fuel", "Fuel (wasm instructions) used by committed calls",
                                   labels=["database", "reducer"])
        for k2, v in self.fuel.copy().items():
            fuel.add_metric(list(k2), v)
        commits = CounterMetricFamily("stdb_commits", "Committed transactions", labels=["database"])
        for db, v in self.commits.copy().items():
            commits.add_metric([db], v)
        queries = CounterMetricFamily("stdb_queries", "One-off queries by outcome (answered, the limit that "
                                      "refused it, or error)", labels=["database", "outcome"])
        for k3, v in self.queries.copy().items():
            queries.add_metric(list(k3), v)
        query_seconds = CounterMetricFamily("stdb_query_seconds", "Time spent in one-off queries",
                                            labels=["database"])
        for db, t in self.query_seconds.copy().items():
            query_seconds.add_metric([db], t)
        yield calls
        yield seconds
        yield fuel
        yield commits
        yield queries
        yield query_seconds
        yield CounterMetricFamily("stdb_messages_sent", "Messages sent to clients", value=self.messages_sent)
        yield CounterMetricFamily("stdb_bytes_sent", "Bytes sent to clients (message payloads)",
                                  value=self.bytes_sent)


def _le(bound: float) -> str:
    return repr(float(bound))


class Metrics:
    def __init__(self, states: Callable[[], Iterable[DatabaseState]] = tuple) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.hot = _Hot()
        r.register(self.hot)
        self.connections = Counter("stdb_connections", "Client connections accepted", registry=r)
        self.disconnected_slow = Counter("stdb_slow_client_disconnects",
                                         "Clients cut off for falling behind", registry=r)
        r.register(_ServerState(states))
        self._http: Any = None

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
        hot = self.hot
        key = (database, reducer, status)
        hot.calls[key] = hot.calls.get(key, 0) + 1
        counts = hot.durations.get(database)
        if counts is None:
            counts = hot.durations[database] = [0.0] * (len(DURATION_BUCKETS) + 2)
        counts[bisect_left(DURATION_BUCKETS, seconds)] += 1       # the first bucket with le >= seconds
        counts[-1] += seconds
        if fuel:
            k2 = (database, reducer)
            hot.fuel[k2] = hot.fuel.get(k2, 0) + fuel

    def call_refused(self, database: str, reducer: str, status: str) -> None:
        """A call refused before it ran (``rate_limited``): counted, not timed."""
        key = (database, reducer, status)
        calls = self.hot.calls
        calls[key] = calls.get(key, 0) + 1

    def query(self, database: str, outcome: str, seconds: float) -> None:
        """One one-off query: ``answered``, ``over_<limit>`` (refused by a limit) or ``error``."""
        hot = self.hot
        key = (database, outcome)
        hot.queries[key] = hot.queries.get(key, 0) + 1
        hot.query_seconds[database] = hot.query_seconds.get(database, 0.0) + seconds

    def commit(self, database: str) -> None:
        commits = self.hot.commits
        commits[database] = commits.get(database, 0) + 1

    def sent(self, messages: int, nbytes: int) -> None:
        self.hot.messages_sent += messages
        self.hot.bytes_sent += nbytes
