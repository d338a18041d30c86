"""The one error hierarchy of stdb.

Every error carries a stable ``code`` (never renamed once released, so clients and
scripts may match on it), a human ``detail`` naming what was wrong and where, and an
optional ``hint`` saying what to do about it.  Errors from third-party libraries
(lmdb, wasmtime, cbor2) are translated into these at the boundary.
"""

from __future__ import annotations

__all__ = [
    "StdbError",
    "DataError",
    "ConstraintError",
    "SchemaError",
    "ModuleError",
    "ReducerError",
    "QueryError",
    "ProtocolError",
    "AuthError",
    "StorageError",
    "InternalError",
    "TransactionError",
    "ConnectionLost",
    "RateLimited",
    "NotLeader",
    "ReplicationError",
]


class StdbError(Exception):
    """Root of every error stdb raises on purpose."""

    code: str = "stdb_error"

    def __init__(self, detail: str, *, hint: str | None = None, code: str | None = None) -> None:
        self.detail = detail
        self.hint = hint
        if code is not None:
            self.code = code
        super().__init__(detail)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.detail} (hint: {self.hint})"
        return self.detail

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, detail={self.detail!r}, hint={self.hint!r})"

    def to_dict(self) -> dict[str, str | None]:
        """The error as sent to clients and written to logs."""
        return {"code": self.code, "detail": self.detail, "hint": self.hint}


class DataError(StdbError):
    """A value of the wrong type or out of range for its column."""

    code = "data_error"


class ConstraintError(StdbError):
    """A unique or primary-key constraint would be violated, or a row is missing."""

    code = "constraint_violation"


class SchemaError(StdbError):
    """A table, column, index or module schema is invalid or does not exist."""

    code = "schema_error"


class TransactionError(StdbError):
    """A transaction was used after it ended, or two were opened at once."""

    code = "transaction_error"


class ModuleError(StdbError):
    """A WASM module could not be loaded, validated or migrated."""

    code = "module_error"


class ReducerError(StdbError):
    """A reducer returned an error, trapped, or hit a limit; its transaction rolled back.

    ``kind`` says which: "error" (the reducer returned ``message``), "trap", "out_of_fuel"
    or "timeout" (with the WASM ``backtrace``)."""

    code = "reducer_error"

    def __init__(self, detail: str, *, hint: str | None = None, code: str | None = None,
                 reducer: str = "", kind: str = "error", message: str = "",
                 backtrace: tuple[str, ...] | list[str] = (), fuel_used: int = 0) -> None:
        super().__init__(detail, hint=hint, code=code)
        self.reducer = reducer
        self.kind = kind
        self.message = message
        self.backtrace = tuple(backtrace)
        self.fuel_used = fuel_used

    def to_dict(self) -> dict:
        d: dict = dict(super().to_dict())
        d.update(reducer=self.reducer, kind=self.kind, message=self.message, backtrace=list(self.backtrace))
        return d


class QueryError(StdbError):
    """A SQL query could not be parsed, planned or run."""

    code = "query_error"
    limit: str | None = None        # the query limit that refused it, if one did (stdb/query/budget.py)


class ProtocolError(StdbError):
    """A client message was malformed or not allowed."""

    code = "protocol_error"

    def __init__(self, detail: str, *, hint: str | None = None, code: str | None = None,
                 request_id: int | None = None) -> None:
        super().__init__(detail, hint=hint, code=code)
        self.request_id = request_id          # of the message it is about, when that was readable


class RateLimited(StdbError):
    """Too many requests of one kind from one identity: a database's rate limit (its settings)
    refused this one.  ``retry_after``: seconds until the next would be accepted."""

    code = "rate_limited"

    def __init__(self, detail: str, *, hint: str | None = None, code: str | None = None,
                 retry_after: float = 0.0) -> None:
        super().__init__(detail, hint=hint, code=code)
        self.retry_after = retry_after

    def to_dict(self) -> dict:
        d: dict = dict(super().to_dict())
        d["retry_after"] = self.retry_after
        return d


class NotLeader(StdbError):
    """A write (a reducer call, a publish, DML, a settings change, a delete) sent to a follower
    of a replicated database: only the leader writes.  ``leader``: the leader's client URL
    when one is known (docs/replication.md)."""

    code = "not_leader"

    def __init__(self, detail: str, *, hint: str | None = None, code: str | None = None,
                 leader: str | None = None) -> None:
        super().__init__(detail, hint=hint, code=code)
        self.leader = leader

    def to_dict(self) -> dict:
        d: dict = dict(super().to_dict())
        d["leader"] = self.leader
        return d


class ReplicationError(StdbError):
    """Replication through NATS JetStream failed: the NATS servers cannot be reached, a stream
    refused a write (another node leads now), or a replicated record does not apply."""

    code = "replication_error"


class AuthError(StdbError):
    """An identity token was missing, forged, expired or not allowed to do this."""

    code = "auth_error"


class StorageError(StdbError):
    """The commit log, a snapshot or the data directory is damaged or unwritable."""

    code = "storage_error"


class ConnectionLost(StdbError):
    """A client's connection to the server ended or could not be opened (the detail says why:
    the server's close reason, or the network error)."""

    code = "connection_lost"


class InternalError(StdbError):
    """A bug in stdb: an invariant did not hold.  Please report it."""

    code = "internal_error"


def error_from_dict(d: dict) -> StdbError:
    """Rebuild an error sent as :meth:`StdbError.to_dict` (the client side of ``Error``): the
    class its code names, or StdbError keeping an unknown code."""
    code = str(d.get("code") or StdbError.code)
    detail = str(d.get("detail") or "")
    hint = d.get("hint")
    hint = str(hint) if hint is not None else None
    if code == RateLimited.code:
        after = d.get("retry_after")
        wait = float(after) if isinstance(after, (int, float)) else 0.0
        return RateLimited(detail, hint=hint, retry_after=wait)
    if code == NotLeader.code:
        leader = d.get("leader")
        return NotLeader(detail, hint=hint, leader=str(leader) if leader is not None else None)
    classes: list[type[StdbError]] = [StdbError, *_subclasses(StdbError)]
    for cls in classes:
        if cls.code == code:
            return cls(detail, hint=hint)
    return StdbError(detail, hint=hint, code=code)


def _subclasses(cls: type[StdbError]) -> list[type[StdbError]]:
    out: list[type[StdbError]] = []
    for c in cls.__subclasses__():
        out.append(c)
        out.extend(_subclasses(c))
    return out
