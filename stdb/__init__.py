"""stdb: a database server that runs the application's logic inside itself.

The public API is exactly what this module exports (pinned by tests/test_exports.py).
"""

from typing import TYPE_CHECKING

from stdb._core.codec import ColumnType, RowCodec, parse_type
from stdb._core.schema import Column, IndexDef, TableSchema
from stdb.client import BlockingConnection, DbConnection, Reconnect, ReducerOutcome, connect, connect_blocking
from stdb.errors import (
    AuthError,
    ConnectionLost,
    ConstraintError,
    DataError,
    InternalError,
    ModuleError,
    NotLeader,
    ProtocolError,
    QueryError,
    RateLimited,
    ReducerError,
    ReplicationError,
    SchemaError,
    StdbError,
    StorageError,
    TransactionError,
)
from stdb.module.database import CallResult, Database, Limits, PublishResult
from stdb.storage.datastore import Datastore, TableDelta, Transaction, TxDelta
from stdb.storage.durable import Commit, DurableStore, StoreConfig

if TYPE_CHECKING:
    from stdb.module.build import build_module

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # build_module is imported when first asked for, so that `python -m stdb.module.build`
    # runs a module nobody imported yet (runpy warns about one already imported)
    if name == "build_module":
        from stdb.module.build import build_module
        return build_module
    raise AttributeError(f"module 'stdb' has no attribute {name!r}")


__all__ = [
    "__version__",
    # schema and types
    "Column",
    "ColumnType",
    "IndexDef",
    "RowCodec",
    "TableSchema",
    "parse_type",
    # storage
    "Commit",
    "Datastore",
    "DurableStore",
    "StoreConfig",
    "TableDelta",
    "Transaction",
    "TxDelta",
    # modules
    "CallResult",
    "Database",
    "Limits",
    "PublishResult",
    "build_module",
    # client
    "BlockingConnection",
    "DbConnection",
    "Reconnect",
    "ReducerOutcome",
    "connect",
    "connect_blocking",
    # errors
    "AuthError",
    "ConnectionLost",
    "ConstraintError",
    "DataError",
    "InternalError",
    "ModuleError",
    "NotLeader",
    "ProtocolError",
    "QueryError",
    "RateLimited",
    "ReducerError",
    "ReplicationError",
    "SchemaError",
    "StdbError",
    "StorageError",
    "TransactionError",
]
