"""The Python client SDK (docs/client.md): ``connect`` (async), ``connect_blocking``."""

from stdb.client.blocking import BlockingConnection, connect_blocking
from stdb.client.cache import ClientCache, Event, TableCache
from stdb.client.connection import (
    DbConnection,
    QueryResult,
    ReducerOutcome,
    Subscription,
    connect,
    default_credentials,
)
from stdb.client.reconnect import Reconnect
from stdb.errors import ConnectionLost

__all__ = ["connect", "connect_blocking", "default_credentials", "BlockingConnection", "DbConnection",
           "ClientCache", "TableCache", "Event", "ReducerOutcome", "QueryResult", "Subscription",
           "Reconnect", "ConnectionLost"]
