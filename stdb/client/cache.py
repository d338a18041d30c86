"""The client cache: the rows of a connection's subscribed queries, per table.

Two queries may select the same row, so the cache counts each row once per query that holds it
and a row is present while any query holds it.  A transaction's diffs are applied as a net
change per row (a row moving from one of the client's queries to another is no change); an
update — a row deleted and a row inserted with the same primary key in one transaction — is
reported as one update, not a delete and an insert.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("stdb.client")

__all__ = ["ClientCache", "TableCache", "Event", "as_row"]


@dataclass(frozen=True)
class Event:
    """What caused a change: a transaction (``reducer`` is empty for SQL DML) or, when
    ``offset`` and ``reducer`` are None, the initial rows of a subscription."""

    reducer: str | None = None
    caller: bytes | None = None
    status: str = "committed"
    offset: int | None = None
    timestamp: int | None = None
    request_id: int | None = None


def as_row(v: Any) -> Any:
    """A row as the cache keeps it: arrays (CBOR lists) become tuples, all the way down."""
    if type(v) is list:
        return tuple(as_row(x) for x in v)
    return v


Callback = Callable[..., None]


class TableCache:
    """The cached rows of one table; iterate it, ``len()`` it, ``get(key)`` by primary key."""

    def __init__(self, name: str, key_columns: Sequence[int] = ()) -> None:
        self.name = name
        self.key_columns = tuple(key_columns)      # primary-key positions (from Describe), maybe none
        self._count: Counter[tuple] = Counter()   # row -> number of subscribed queries holding it
        self._by_key: dict[Any, tuple] = {}

    def key(self, row: tuple) -> Any:
        if not self.key_columns:
            return row
        if len(self.key_columns) == 1:
            return row[self.key_columns[0]]
        return tuple(row[i] for i in self.key_columns)

    def __iter__(self) -> Iterator[tuple]:
        return iter(list(self._count))

    def __len__(self) -> int:
        return len(self._count)

    def __contains__(self, row: object) -> bool:
        return row in self._count

    def get(self, key: Any) -> tuple | None:
        """The row whose primary key is ``key`` (a tuple for a composite key), or None."""
        return self._by_key.get(key) if self.key_columns else None

    def rows(self) -> list[tuple]:
        return list(self._count)

    def _apply(self, net: Counter[tuple]) -> tuple[list[tuple], list[tuple]]:
        """Apply per-row count changes; return (rows that appeared, rows that disappeared)."""
        added: list[tuple] = []
        removed: list[tuple] = []
        for row, n in net.items():
            if not n:
                continue
            before = self._count.get(row, 0)
            after = before + n
            if after <= 0:
                if before:
                    del self._count[row]
                    if self.key_columns:
                        self._by_key.pop(self.key(row), None)
                    removed.append(row)
            else:
                self._count[row] = after
                if not before:
                    if self.key_columns:
                        self._by_key[self.key(row)] = row
                    added.append(row)
        return added, removed


class ClientCache:
    """Every table's cache, the rows each query holds, and the change callbacks."""

    def __init__(self) -> None:
        self.tables: dict[str, TableCache] = {}
        self.keys: dict[str, tuple[int, ...]] = {}                 # table -> primary-key positions
        self._query_rows: dict[int, tuple[str, Counter[tuple]]] = {}
        self._holds: Counter[int] = Counter()       # query id -> client Subscriptions holding it
        self._on: dict[tuple[str, str], list[Callback]] = {}

    def table(self, name: str) -> TableCache:
        t = self.tables.get(name)
        if t is None:
            t = self.tables[name] = TableCache(name, self.keys.get(name, ()))
        return t

    def set_keys(self, keys: dict[str, tuple[int, ...]]) -> None:
        """Primary keys from the module's description.  Tables already cached keep theirs
        unless empty (a module update clears the cache first)."""
        self.keys = dict(keys)
        for name, t in self.tables.items():
            if not len(t):
                t.key_columns = self.keys.get(name, ())

    # ---- callbacks

    def on(self, kind: str, table: str, fn: Callback) -> Callback:
        self._on.setdefault((kind, table), []).append(fn)
        return fn

    def off(self, kind: str, table: str, fn: Callback) -> None:
        fns = self._on.get((kind, table), [])
        if fn in fns:
            fns.remove(fn)

    def _fire(self, kind: str, table: str, *args: Any) -> None:
        for fn in list(self._on.get((kind, table), ())):
            try:
                fn(*args)
            except Exception:
                # the cache is already right; a failing callback must not end the connection
                log.exception("stdb client: the %s callback of table %s failed", kind, table)

    # ---- changes

    def add_query(self, query_id: int, table: str, rows: list) -> None:
        """A query's initial rows.  The server keeps one subscription per query and client, so
        a query subscribed again (by another Subscription) is only counted as held once more."""
        self._holds[query_id] += 1
        if query_id in self._query_rows:
            return
        self._query_rows[query_id] = (table, Counter())
        self.apply([{"query_id": query_id, "table": table, "deletes": [], "inserts": rows}], Event())

    def release(self, query_id: int) -> bool:
        """One Subscription lets go of a query; True when none holds it any more (then the
        client unsubscribes it)."""
        if self._holds[query_id] <= 1:
            self._holds.pop(query_id, None)
            return query_id in self._query_rows
        self._holds[query_id] -= 1
        return False

    def remove_query(self, query_id: int) -> None:
        entry = self._query_rows.get(query_id)
        if entry is None:
            return
        table, held = entry
        self.apply([{"query_id": query_id, "table": table, "deletes": list(held.elements()), "inserts": []}],
                   Event(), raw=False)
        del self._query_rows[query_id]

    def query_ids(self) -> list[int]:
        return list(self._query_rows)

    def clear(self) -> None:
        """Forget every query and row (no callbacks: the subscriptions ended server-side)."""
        self._query_rows.clear()
        self._holds.clear()
        for t in self.tables.values():
            t._count.clear()
            t._by_key.clear()

    def apply(self, updates: list[dict], event: Event, *, raw: bool = True) -> None:
        """Apply a TransactionUpdate's ``updates`` (or a subscription's initial rows) and call
        the insert / delete / update callbacks once the whole transaction is applied."""
        per_table: dict[str, Counter[tuple]] = {}
        for u in updates:
            qid = u["query_id"]
            entry = self._query_rows.get(qid)
            if entry is None:           # a query we no longer hold (unsubscribe crossed the update)
                continue
            table, held = entry
            net = per_table.setdefault(table, Counter())
            for r in u["deletes"]:
                row = as_row(r) if raw else r
                if held.get(row, 0) > 0:
                    held[row] -= 1
                    if not held[row]:
                        del held[row]
                    net[row] -= 1
            for r in u["inserts"]:
                row = as_row(r) if raw else r
                held[row] += 1
                net[row] += 1
        changes = []
        for table, net in per_table.items():
            t = self.table(table)
            added, removed = t._apply(net)
            changes.append((t, added, removed))
        for t, added, removed in changes:
            self._announce(t, added, removed, event)

    def adopt(self, fresh: ClientCache, event: Event | None = None) -> None:
        """Take over ``fresh``'s queries and rows (a cache filled by subscribing again after a
        reconnect or a module update) and call the callbacks for exactly the rows that differ
        from what this cache held: a row in both is no change.  The ``TableCache`` objects stay
        the same (references to them stay valid); ``event`` is a subscription's (no reducer,
        no offset)."""
        event = event or Event()
        self.keys = dict(fresh.keys)
        changes = []
        for name in list(self.tables) + [n for n in fresh.tables if n not in self.tables]:
            t = self.table(name)
            new = fresh.tables.get(name)
            rows: Counter[tuple] = Counter(new._count) if new is not None else Counter()
            removed = [r for r in t._count if r not in rows]
            added = [r for r in rows if r not in t._count]
            t._count = rows
            t.key_columns = new.key_columns if new is not None else self.keys.get(name, ())
            t._by_key = {t.key(r): r for r in rows} if t.key_columns else {}
            changes.append((t, added, removed))
        self._query_rows = fresh._query_rows
        self._holds = fresh._holds
        for t, added, removed in changes:
            self._announce(t, added, removed, event)

    def _announce(self, t: TableCache, added: list[tuple], removed: list[tuple], event: Event) -> None:
        """The callbacks for one table's change: deletes, then updates (a row removed and one
        added with the same primary key), then inserts."""
        updated: list[tuple[tuple, tuple]] = []
        if t.key_columns and added and removed:
            old_by_key = {t.key(r): r for r in removed}
            still_added = []
            for r in added:
                old = old_by_key.pop(t.key(r), None)
                if old is None:
                    still_added.append(r)
                else:
                    updated.append((old, r))
            added, removed = still_added, list(old_by_key.values())
        for r in removed:
            self._fire("delete", t.name, r, event)
        for old, new in updated:
            self._fire("update", t.name, old, new, event)
        for r in added:
            self._fire("insert", t.name, r, event)
