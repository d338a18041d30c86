"""A database's settings: what its clients and its owner may cost it (issue 23).

Two roles, the same keys each: ``clients.*`` for every identity but the database's owner,
``owner.*`` for the owner.  A setting is a number; the owner changes them (``stdb settings``,
the protocol's ``Settings`` message, ``Database.set_settings``) and they are stored in the
database's LMDB environment next to its module, so they outlive restarts.  Only the values that
differ from the defaults are stored: a default changed by a later version of stdb applies to
every database that did not set its own.

| key | meaning |
|---|---|
| ``rows_examined``, ``rows_returned``, ``result_bytes``, ``seconds`` | one query's limits (query/budget.py) |
| ``subscribed_rows`` | rows one connection's subscriptions may hold, counted when they subscribe |
| ``calls_per_s``, ``calls_burst`` | reducer calls per identity: a token bucket (0 per second: no limit) |
| ``queries_per_s``, ``queries_burst`` | one-off queries and subscribes per identity, likewise |
| ``queries_in_flight`` | one connection's queries waiting in line together, at most (more are refused) |
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from stdb.errors import DataError, QueryError
from stdb.query.budget import DEFAULT_LIMITS, OWNER_LIMITS, QueryLimits

__all__ = ["RoleSettings", "Settings", "DEFAULT_SETTINGS", "KEYS"]

ROLES = ("clients", "owner")


@dataclass(frozen=True)
class RoleSettings:
    """What one role's requests may cost."""

    query: QueryLimits
    subscribed_rows: int
    calls_per_s: float
    calls_burst: int
    queries_per_s: float
    queries_burst: int
    queries_in_flight: int


# name -> (kind, lo, hi): "int" a whole number in [lo, hi], "num" a number in [lo, hi] (seconds: (lo, hi])
_KINDS: dict[str, tuple[str, float, float]] = {
    "rows_examined": ("int", 1, 1 << 62),
    "rows_returned": ("int", 1, 1 << 62),
    "result_bytes": ("int", 1, 1 << 40),
    "seconds": ("num", 0, 3600),                 # (0, 3600]
    "subscribed_rows": ("int", 1, 1 << 62),
    "calls_per_s": ("num", 0, 1e9),              # [0, 1e9]; 0: no limit
    "calls_burst": ("int", 1, 1 << 62),
    "queries_per_s": ("num", 0, 1e9),
    "queries_burst": ("int", 1, 1 << 62),
    "queries_in_flight": ("int", 1, 1 << 20),
}


_DEFAULT_ROLES = {
    # a game client calls a few reducers a second; 10,000 leaves room for any honest client
    # (the 64 × 40 benchmark makes ~1,000 calls/s per connection) and stops a runaway loop
    "clients": RoleSettings(DEFAULT_LIMITS, subscribed_rows=100_000, calls_per_s=10_000.0, calls_burst=20_000,
                            queries_per_s=100.0, queries_burst=200, queries_in_flight=4),
    "owner": RoleSettings(OWNER_LIMITS, subscribed_rows=10_000_000, calls_per_s=0.0, calls_burst=1,
                          queries_per_s=0.0, queries_burst=1, queries_in_flight=64),
}
KEYS = tuple(f"{role}.{k}" for role in ROLES for k in _KINDS)


def _get(rs: RoleSettings, key: str) -> int | float:
    if key in ("rows_examined", "rows_returned", "result_bytes", "seconds"):
        return getattr(rs.query, key)               # type: ignore[no-any-return]
    return getattr(rs, key)                         # type: ignore[no-any-return]


_DEFAULT_VALUES = {k: _get(_DEFAULT_ROLES[k.split(".")[0]], k.split(".", 1)[1]) for k in KEYS}


def _check(key: str, v: Any) -> int | float:
    kind, lo, hi = _KINDS[key.split(".", 1)[1]]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DataError(f"setting {key} is a number, not {type(v).__name__}")
    if kind == "int" and (isinstance(v, float) and not v.is_integer()):
        raise DataError(f"setting {key} is a whole number, not {v!r}")
    v = int(v) if kind == "int" else float(v)
    open_lo = key.endswith(".seconds")
    if v < lo or v > hi or (open_lo and v <= lo):
        low = f"more than {lo:g}" if open_lo else f"at least {lo:g}"
        raise DataError(f"setting {key} = {v!r} is out of range: {low} and at most {hi:g}")
    return v


@dataclass(frozen=True)
class Settings:
    """Both roles' settings; ``changed`` holds the keys that differ from the defaults."""

    clients: RoleSettings
    owner: RoleSettings
    changed: Mapping[str, int | float]

    def role(self, owner: bool) -> RoleSettings:
        return self.owner if owner else self.clients

    def as_dict(self) -> dict[str, int | float]:
        """Every key with its value now."""
        return {k: _get(getattr(self, k.split(".")[0]), k.split(".", 1)[1]) for k in KEYS}

    def with_changes(self, changes: Mapping[str, Any]) -> Settings:
        """These settings with ``changes`` (key → value, None: back to the default), all
        checked first; DataError naming the first bad key or value, and nothing changes."""
        if not isinstance(changes, Mapping):
            raise DataError("settings are changed with a map of key → value")
        merged = dict(self.changed)
        for key, v in changes.items():
            if key not in KEYS:
                raise DataError(f"no setting named {str(key)[:60]!r}",
                                hint="settings: " + ", ".join(KEYS))
            if v is None:
                merged.pop(key, None)
            else:
                merged[key] = _check(key, v)
        return Settings.from_changed(merged)

    @staticmethod
    def from_changed(changed: Mapping[str, int | float]) -> Settings:
        roles = {}
        for role in ROLES:
            rs = _DEFAULT_ROLES[role]
            mine = {k.split(".", 1)[1]: v for k, v in changed.items() if k.startswith(role + ".")}
            q = {k: mine.pop(k) for k in ("rows_examined", "rows_returned", "result_bytes", "seconds")
                 if k in mine}
            try:
                roles[role] = replace(rs, query=replace(rs.query, **q), **mine)    # type: ignore[arg-type]
            except QueryError as e:
                raise DataError(e.detail) from None
        kept = {k: v for k, v in changed.items() if _DEFAULT_VALUES[k] != v}
        return Settings(roles["clients"], roles["owner"], kept)

    def to_json(self) -> bytes:
        return json.dumps(dict(sorted(self.changed.items()))).encode()

    @staticmethod
    def from_json(raw: bytes) -> Settings:
        """Stored settings; DataError when they are not a map of known keys to valid values."""
        try:
            d = json.loads(raw)
        except ValueError as e:
            raise DataError(f"the stored settings are not JSON: {e}") from None
        return DEFAULT_SETTINGS.with_changes(d)


DEFAULT_SETTINGS = Settings.from_changed({})
