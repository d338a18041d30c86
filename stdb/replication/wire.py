"""The replicated stream's messages (docs/replication.md, "The stream").

One JetStream stream per database, ``STDB_<name>``, subject ``stdb.log.<name>``.  Every
message has the header ``Stdb-Kind``:

* ``log``: consecutive commit-log records back to back, exactly the bytes of
  docs/log-format.md; ``Stdb-First`` is the first one's offset, ``Stdb-Count`` how many.
  ``Nats-Msg-Id`` is ``<first offset>.<leader term>`` (a retried publish is not stored twice).
* ``module``: the published module's wasm (payload; empty: the leader undid a failed first
  publish) and its info JSON (``Stdb-Info``), after the log records that created its tables.
* ``settings``: the database's settings JSON.

``Stdb-After`` on every message is the log offset that comes next after it (for a log
message, the offset after its last record).  A payload bigger than the NATS servers take
(``max_payload``) goes as consecutive parts: ``Stdb-Part: i/n`` on each, the same headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stdb.errors import ReplicationError
from stdb.storage.commitlog import split_value

__all__ = ["stream_name", "subject", "Message", "split_parts", "Parts", "records",
           "CATALOG_BUCKET", "LEASE_BUCKET", "NODES_BUCKET", "CLUSTER_BUCKET", "LEASE_KEY", "TOKEN_KEY"]

CATALOG_BUCKET = "stdb_catalog"     # database name -> {"stream", "incarnation"}
LEASE_BUCKET = "stdb_lease"         # "leader" -> {"node", "url", "since"}; entries expire (the TTL)
NODES_BUCKET = "stdb_nodes"         # node name -> its status (stdb status); entries expire
CLUSTER_BUCKET = "stdb_cluster"     # "token_key": the identity-token signing key every node shares
LEASE_KEY = "leader"
TOKEN_KEY = "token_key"

KIND = "Stdb-Kind"
FIRST = "Stdb-First"
COUNT = "Stdb-Count"
AFTER = "Stdb-After"
INFO = "Stdb-Info"
PART = "Stdb-Part"
MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_SEQ = "Nats-Expected-Last-Sequence"


def stream_name(database: str) -> str:
    return "STDB_" + database


def subject(database: str) -> str:
    return "stdb.log." + database


@dataclass
class Message:
    kind: str                                   # "log", "module" or "settings"
    payload: bytes
    after: int                                  # the log offset that comes next after it
    first: int = -1                             # log: the first record's offset
    count: int = 0                              # log: how many records
    info: bytes | None = None                   # module: its info JSON
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def log(cls, first: int, count: int, payload: bytes) -> Message:
        return cls("log", payload, first + count, first, count)

    def header_map(self, term: int) -> dict[str, str]:
        h = {KIND: self.kind, AFTER: str(self.after)}
        if self.kind == "log":
            h[FIRST] = str(self.first)
            h[COUNT] = str(self.count)
            h[MSG_ID] = f"{self.first}.{term}"
        if self.info is not None:
            h[INFO] = self.info.decode("ascii")
        return h

    @classmethod
    def parse(cls, headers: dict[str, str] | None, payload: bytes) -> Message:
        """A whole message (its parts joined) as received; ReplicationError if malformed."""
        h = headers or {}
        try:
            kind = h[KIND]
            after = int(h[AFTER])
            if kind == "log":
                return cls(kind, payload, after, int(h[FIRST]), int(h[COUNT]), headers=h)
            if kind == "module":
                info = h.get(INFO)
                return cls(kind, payload, after, info=info.encode("ascii") if info is not None else None,
                           headers=h)
            if kind == "settings":
                return cls(kind, payload, after, headers=h)
        except (KeyError, ValueError) as e:
            raise ReplicationError(f"a replicated message with bad headers ({e!r}): {sorted(h)}") from None
        raise ReplicationError(f"a replicated message of unknown kind {kind!r}")


def records(msg: Message) -> list[tuple[int, bytes]]:
    """A log message's (offset, record bytes), split by the records' own lengths."""
    out = [(off, bytes(r)) for off, r in split_value(msg.first, msg.payload)]
    if len(out) != msg.count:
        raise ReplicationError(f"a replicated log message from offset {msg.first} holds {len(out)} "
                               f"records; its header says {msg.count}")
    return out


def split_parts(payload: bytes, limit: int) -> list[bytes]:
    """``payload`` in pieces of at most ``limit`` bytes (one piece, maybe empty, if it fits)."""
    if len(payload) <= limit:
        return [payload]
    return [payload[i:i + limit] for i in range(0, len(payload), limit)]


class Parts:
    """Joins a message's parts as they arrive in stream order."""

    def __init__(self) -> None:
        self._got: list[bytes] = []
        self._n = 0

    def add(self, headers: dict[str, str] | None, data: bytes) -> bytes | None:
        """The whole payload once its last part arrived; None while parts are missing."""
        part = (headers or {}).get(PART)
        if part is None:
            if self._got:
                raise ReplicationError("a replicated message ended before all its parts arrived")
            return data
        try:
            i, n = (int(x) for x in part.split("/"))
        except ValueError:
            raise ReplicationError(f"a replicated message part named {part!r}") from None
        if i != len(self._got) + 1 or (self._n and n != self._n):
            raise ReplicationError(f"replicated message part {part} out of order "
                                   f"(had {len(self._got)} of {self._n or n})")
        self._n = n
        self._got.append(data)
        if i < n:
            return None
        whole = b"".join(self._got)
        self._got, self._n = [], 0
        return whole
