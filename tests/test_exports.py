"""The public API is exactly stdb.__all__, and everything in it exists."""

import stdb
import stdb.errors

EXPECTED = {
    "__version__",
    "Column", "ColumnType", "IndexDef", "RowCodec", "TableSchema", "parse_type",
    "Datastore", "TableDelta", "Transaction", "TxDelta", "Commit", "DurableStore", "StoreConfig",
    "Database", "Limits", "CallResult", "PublishResult", "build_module",
    "connect", "connect_blocking", "DbConnection", "BlockingConnection", "ReducerOutcome",
    "Reconnect",
    "AuthError", "ConnectionLost", "ConstraintError", "DataError", "InternalError", "ModuleError",
    "ProtocolError",
    "QueryError", "RateLimited", "ReducerError", "NotLeader", "ReplicationError", "SchemaError", "StdbError",
    "StorageError",
    "TransactionError",
}


def test_all_is_pinned():
    assert set(stdb.__all__) == EXPECTED
    assert len(stdb.__all__) == len(EXPECTED)


def test_every_export_exists():
    for name in stdb.__all__:
        assert getattr(stdb, name) is not None, name


def test_errors_share_one_root_with_stable_codes():
    codes = set()
    for name in stdb.errors.__all__:
        cls = getattr(stdb.errors, name)
        assert issubclass(cls, stdb.StdbError)
        assert cls.code not in codes, f"duplicate error code {cls.code}"
        codes.add(cls.code)
        e = cls("something went wrong", hint="do this")
        assert e.detail == "something went wrong" and e.hint == "do this"
        d = e.to_dict()
        assert {k: d[k] for k in ("code", "detail", "hint")} == \
            {"code": cls.code, "detail": "something went wrong", "hint": "do this"}
        extra = {stdb.ReducerError: {"reducer": "", "kind": "error", "message": "", "backtrace": []},
                 stdb.RateLimited: {"retry_after": 0.0}, stdb.NotLeader: {"leader": None}}.get(cls, {})
        assert d == {"code": cls.code, "detail": "something went wrong", "hint": "do this", **extra}
        assert "do this" in str(e)


def test_errors_round_trip_through_their_wire_form():
    for name in stdb.errors.__all__:
        cls = getattr(stdb.errors, name)
        back = stdb.errors.error_from_dict(cls("detail", hint="hint").to_dict())
        assert type(back) is cls and (back.code, back.detail, back.hint) == (cls.code, "detail", "hint")
    other = stdb.errors.error_from_dict({"code": "resubscribe", "detail": "d", "hint": None})
    assert type(other) is stdb.StdbError and other.code == "resubscribe"
