"""One database's query side: one-off queries, owner-only DML and subscriptions.

``QueryService`` reads the committed tables of a Datastore.  ``Database`` owns one and calls
``on_commit`` after every commit; the diffs it returns go to the subscribers (the server sends
them to clients; in-process users read them from ``CallResult.updates``).

Visibility: a table whose schema is not public is invisible to everyone but the database's
owner — to subscriptions, one-off queries and DML alike (it is reported as missing, so its
existence does not leak).  A module's visibility filters (``stdb.query.visibility``) narrow
its public tables, for everyone but the owner, in every subscription and one-off query.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stdb._core.schema import TableSchema
from stdb.errors import AuthError, ConstraintError, QueryError, StdbError
from stdb.query import ast as A
from stdb.query.bind import Scope, compile_predicate, typed_literal
from stdb.query.budget import Budget, QueryLimits, over, whose
from stdb.query.execute import QueryResult, explain_select, run_select
from stdb.query.parser import parse
from stdb.query.subscription import QueryDiff, Subscriptions, compile_subscription
from stdb.query.visibility import VisibilityFilter, restrict

Filters = Mapping[str, tuple[VisibilityFilter, ...]]

__all__ = ["QueryService", "Subscribed", "QueryResult", "QueryDiff"]


@dataclass
class Subscribed:
    """One query of a subscribe request: its id (shared by every client with the same
    normalized query), its normalized text and its current rows."""

    query_id: int
    sql: str
    rows: list[tuple] = field(default_factory=list)


class QueryService:
    def __init__(self, datastore: Any, owner: Callable[[], bytes | None],
                 filters: Callable[[], Filters] = lambda: {}) -> None:
        self._ds = datastore
        self._owner = owner
        self._filters = filters
        self.subs = Subscriptions(self._table)

    def _is_owner(self, sender: bytes) -> bool:
        return self._owner() is not None and sender == self._owner()

    def _visible(self, st: A.Statement, sender: bytes) -> A.Statement:
        """``st`` as ``sender`` may see it: a SELECT is restricted by the visibility filters
        unless the sender owns the database."""
        if not isinstance(st, A.Select) or self._is_owner(sender):
            return st
        return restrict(st, self._filters())

    def _table(self, name: str) -> Any:
        return self._ds.table(name)

    def _schemas_for(self, sender: bytes) -> Callable[[str], TableSchema | str | None]:
        is_owner = self._is_owner(sender)

        def lookup(name: str) -> TableSchema | str | None:
            if name not in self._ds.table_names:
                return None
            s = self._ds.schema(name)
            if s.public or is_owner:
                return s
            return f"table '{name}' is private: only the database's owner can read it"
        return lookup

    # ---- subscriptions

    def subscribe(self, sqls: Sequence[str], subscriber: Any, sender: bytes,
                  limits: QueryLimits | None = None, max_rows: int | None = None, held: int = 0,
                  cancelled: Callable[[], bool] | None = None) -> list[Subscribed]:
        """Compile every query and read its initial rows first (one bad query refuses the whole
        request, registering nothing), then register ``subscriber`` and return each query's
        initial rows.  ``limits``: rows_examined and seconds bound reading the initial rows
        (stdb/query/budget.py); ``max_rows``: how many rows the subscriber's queries may
        hold in all (its ``subscribed_rows``), ``held`` of them held already."""
        if isinstance(sqls, str) or not isinstance(sqls, (list, tuple)):
            raise QueryError("subscribe takes a list of query strings")
        lookup = self._schemas_for(sender)
        plans = []
        for i, sql in enumerate(sqls):
            try:
                st = self._visible(parse(sql), sender)
                plans.append(compile_subscription(sql, lookup, {"sender": sender}, st))
            except QueryError as e:
                raise QueryError(f"query {i + 1} of {len(sqls)}: {e.detail}", hint=e.hint) from None
        budget = None if limits is None else Budget(limits, whose(self._is_owner(sender)),
                                                    cancelled=cancelled)
        initial = []
        total = 0
        for plan in plans:
            try:
                rows = self.subs.initial_rows(plan, budget)
            except QueryError as e:
                if e.limit in ("rows_examined", "seconds"):
                    e.hint = ("subscribe with a WHERE on an indexed column (an equality, IN or a range), or "
                              "join on indexed columns; the database's owner sets the limits (stdb settings)")
                raise
            total += len(rows)
            if max_rows is not None and held + total > max_rows:
                already = f"its subscriptions hold {held:,} rows and " if held else ""
                raise over("subscribed_rows", max_rows, f"{already}these queries would add {total:,} or more",
                           whose(self._is_owner(sender)))
            initial.append(rows)
        out = []
        for plan, rows in zip(plans, initial, strict=True):
            qid, _ = self.subs.add(plan, subscriber)
            out.append(Subscribed(qid, plan.key, rows))
        return out

    def unsubscribe(self, query_id: int, subscriber: Any) -> bool:
        """Drop one query of one subscriber; False if it was not subscribed to it."""
        if query_id not in self.subs.queries_of(subscriber):
            return False
        self.subs.remove(query_id, subscriber)
        return True

    def unsubscribe_all(self, subscriber: Any) -> int:
        ids = self.subs.queries_of(subscriber)
        for qid in ids:
            self.subs.remove(qid, subscriber)
        return len(ids)

    def reset(self) -> set[Any]:
        """End every subscription (after a module update); returns who was subscribed."""
        return self.subs.clear()

    def on_commit(self, delta: Any) -> dict[int, QueryDiff]:
        """The diff of every query whose result the committed ``delta`` changed."""
        if not delta or not len(self.subs):
            return {}
        return self.subs.diff(delta)

    # ---- one-off queries

    def query(self, sql: str, sender: bytes, st: A.Statement | None = None,
              limits: QueryLimits | None = None, cancelled: Callable[[], bool] | None = None) -> QueryResult:
        """A one-off SELECT (anyone; private tables for the owner only), or ``EXPLAIN SELECT``
        (its plan and estimated rows, not run; under ``limits`` it says whether the SELECT
        would be refused).  ``st``: ``sql`` already parsed; ``limits``: what it may cost
        (stdb/query/budget.py; None: no bound); ``cancelled``: true once the answer is no
        longer wanted (looked at with the clock)."""
        st = parse(sql) if st is None else st
        explain = isinstance(st, A.Explain)
        if isinstance(st, A.Explain):
            st = st.statement
            if not isinstance(st, A.Select):
                raise QueryError(f"EXPLAIN takes a SELECT; this is {type(st).__name__.upper()}",
                                 hint="only a SELECT has a plan to show; DML changes the rows WHERE selects")
        st = self._visible(st, sender)
        if not isinstance(st, A.Select):
            raise QueryError("this is DML; run it through Database.sql (owner only)")
        refs = [st.table] + [j.table for j in st.joins]
        scope = Scope(sql, refs, self._schemas_for(sender), {"sender": sender})
        budget = None if limits is None else Budget(limits, whose(self._is_owner(sender)),
                                                    cancelled=cancelled)
        if explain:
            return explain_select(st, scope, self._table, budget)
        return run_select(st, scope, self._table, budget)

    def dml(self, sql: str, sender: bytes, tx: Any, st: A.Statement | None = None) -> int:
        """Apply INSERT / UPDATE / DELETE in ``tx`` (the caller commits); returns the number of
        rows written.  Only the database owner may.  ``st``: ``sql`` already parsed."""
        st = parse(sql) if st is None else st
        if isinstance(st, (A.Select, A.Explain)):
            raise QueryError(f"{'EXPLAIN' if isinstance(st, A.Explain) else 'a SELECT'} is not DML")
        if not self._is_owner(sender):
            raise AuthError("only the database's owner may change rows with SQL",
                            hint="clients change state by calling reducers")
        scope = Scope(sql, [st.table], self._schemas_for(sender), {"sender": sender})
        schema = scope.schemas[0]
        name = st.table.name
        try:
            if isinstance(st, A.Insert):
                return self._insert(scope, st, schema, tx)
            pred = compile_predicate(scope, st.where)
            t = tx.table(name)
            victims = [(rid, row) for rid, row in list(t.scan()) if pred(row)]
            if isinstance(st, A.Delete):
                for rid, _ in victims:
                    tx.delete_rowid(name, rid)
                return len(victims)
            sets = []
            for col, e in st.assignments:
                c = scope.column(A.ColumnRef(None, col, getattr(e, "pos", 0)))
                sets.append((c.c, _value(scope, c, e)))
            new_rows = []
            for _rid, row in victims:
                vals = list(row)
                for ci, v in sets:
                    vals[ci] = v
                new_rows.append(tuple(vals))
            for rid, _ in victims:
                tx.delete_rowid(name, rid)
            for r in new_rows:
                tx.insert(name, r)
            return len(victims)
        except ConstraintError:
            raise
        except StdbError as e:
            if isinstance(e, QueryError):
                raise
            raise QueryError(f"{type(st).__name__.upper()} on '{name}': {e.detail}", hint=e.hint) from None

    def _insert(self, scope: Scope, st: A.Insert, schema: TableSchema, tx: Any) -> int:
        names = list(schema.column_names) if st.columns is None else list(st.columns)
        for n in names:
            if n not in schema.column_names:
                raise scope.error(st.table.pos, f"table '{schema.name}' has no column '{n}'")
        if len(set(names)) != len(names):
            raise scope.error(st.table.pos, "a column is named twice")
        missing = [c.name for c in schema.columns if c.name not in names and not c.auto_inc
                   and not c.type.name.startswith("option<")]
        if missing:
            raise scope.error(st.table.pos, f"INSERT must give column(s) {', '.join(missing)}")
        for row in st.rows:
            if len(row) != len(names):
                raise scope.error(getattr(row[0], "pos", 0) if row else st.table.pos,
                                  f"{len(row)} values for {len(names)} columns")
            vals: list[Any] = [0 if c.auto_inc else None for c in schema.columns]
            for n, e in zip(names, row, strict=True):
                c = scope.column(A.ColumnRef(None, n, getattr(e, "pos", 0)))
                vals[c.c] = _value(scope, c, e)
            tx.insert(schema.name, tuple(vals))
        return len(st.rows)


def _value(scope: Scope, col: Any, e: A.Expr) -> Any:
    """A literal to store in ``col`` (NULL allowed for options)."""
    if isinstance(e, A.Literal) and e.value is None:
        if not col.nullable:
            raise scope.error(e.pos, f"column {col.name} is {col.type.name}; it cannot be NULL")
        return None
    v = typed_literal(scope, col, e)
    if col.base.name in ("i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "timestamp") \
            and isinstance(v, float):
        raise scope.error(getattr(e, "pos", 0), f"column {col.name} is {col.type.name}; {v!r} is not whole")
    return v
