"""Fuzz target: SQL parse, bind, plan and execute (stdb/query) against a small datastore.

Input: bytes read as UTF-8 (undecodable bytes become U+FFFD).  The tables are those of
tests/test_query.py (``player`` with an index and an option column, ``zone``, the private
``secret``) with a few rows, and the module's visibility filters apply to the non-owner.

* ``parse`` returns a statement or raises ``QueryError``; its canonical text (``render``, the
  subscription dedup key) parses again to the same canonical text;
* a SELECT (or EXPLAIN SELECT) runs as a one-off query for the owner and for another
  identity, unbounded and under tiny limits (the estimates, the index counts and the budget's
  refusals run); a SELECT is subscribed for both, unbounded and under tiny limits; a
  subscription sees a commit that changes both tables and one that undoes it (the matcher and
  the join delta rule run), then is dropped;
* DML runs for the owner and the other identity inside a transaction that is rolled back;
* only ``StdbError`` subclasses (QueryError, AuthError, ConstraintError …) may be raised.

    python -m fuzz.fuzz_sql fuzz/corpus/sql -dict=fuzz/dicts/sql.dict -max_total_time=60
"""

from __future__ import annotations

from fuzz._harness import fuzz, instrument_module, instrumented

with instrumented(__name__ == "__main__"):
    from stdb._core.schema import Column, IndexDef, TableSchema
    from stdb.errors import QueryError, StdbError
    from stdb.query import ast as A
    from stdb.query.budget import QueryLimits
    from stdb.query.parser import parse
    from stdb.query.render import render
    from stdb.query.service import QueryService
    from stdb.query.visibility import by_table, parse_filter
    from stdb.storage.datastore import Datastore

OWNER = b"\x07" * 32
OTHER = b"\x08" * 32
PLAYER = TableSchema("player", [Column("id", "u64"), Column("zone", "i64"), Column("name", "string"),
                                Column("nick", "option<string>"), Column("owner", "identity"),
                                Column("score", "f32"), Column("tags", "array<string>")],
                     primary_key="id", indexes=[IndexDef("by_zone", "zone"),
                                                IndexDef("by_name", "name", "hash")])
ZONE = TableSchema("zone", [Column("zid", "i64"), Column("pvp", "bool"), Column("label", "bytes")],
                   primary_key="zid")
SECRET = TableSchema("secret", [Column("id", "u64", auto_inc=True), Column("v", "string")],
                     primary_key="id", public=False)
SCHEMAS = (PLAYER, ZONE, SECRET)
TINY = QueryLimits(rows_examined=7, rows_returned=3, result_bytes=1 << 10, seconds=5.0)
FILTERS = ("SELECT * FROM player WHERE owner = :sender", "SELECT * FROM player WHERE zone = 0",
           "SELECT * FROM zone z WHERE z.pvp = TRUE")


def _player(i: int, zone: int | None = None) -> tuple:
    return (i, i % 4 if zone is None else zone, f"p{i}", None if i % 3 else f"n{i}",
            OWNER if i < 6 else OTHER, i / 2, [f"t{i}"] * (i % 3))


def _setup() -> tuple[Datastore, QueryService]:
    ds = Datastore()
    for s in SCHEMAS:
        ds.create_table(s)
    with ds.begin() as tx:
        for i in range(12):
            tx.insert("player", _player(i))
        for z in range(4):
            tx.insert("zone", (z, z % 2 == 1, bytes([z])))
        tx.insert("secret", (0, "s"))
    lookup = {s.name: s for s in SCHEMAS}.get
    filters = by_table([parse_filter(f, lookup) for f in FILTERS])
    return ds, QueryService(ds, lambda: OWNER, lambda: filters)


DS, SVC = _setup()


def _commit_and_undo() -> None:
    """A commit touching both tables (a move, a new player, a zone flag) and its reversal."""
    for forward in (True, False):
        tx = DS.begin()
        if forward:
            tx.update("player", _player(1, zone=2))
            tx.insert("player", _player(20))
            tx.update("zone", (1, False, b"\x01"))
        else:
            tx.update("player", _player(1))
            tx.delete("player", 20)
            tx.update("zone", (1, True, b"\x01"))
        SVC.on_commit(tx.commit())


def _subscribe(sql: str) -> None:
    subscribed = False
    for who in (OWNER, OTHER):
        for limits, max_rows in ((None, None), (TINY, 3)):
            try:
                SVC.subscribe([sql], (who, max_rows), who, limits, max_rows)
                subscribed = True
            except QueryError:
                pass
    if subscribed:
        try:
            _commit_and_undo()
        finally:
            for who in (OWNER, OTHER):
                for max_rows in (None, 3):
                    SVC.unsubscribe_all((who, max_rows))


def TestOneInput(data: bytes) -> None:
    sql = data.decode("utf-8", "replace")
    try:
        st = parse(sql)
    except QueryError:
        return
    canon = render(st)
    try:
        again = render(parse(canon))
    except QueryError as e:
        raise AssertionError(f"the canonical text {canon!r} does not parse: {e}") from None
    assert again == canon, (canon, again)
    if isinstance(st, (A.Select, A.Explain)):
        for who in (OWNER, OTHER):
            for limits in (None, TINY):
                try:
                    SVC.query(sql, who, limits=limits)
                except StdbError:
                    pass
        if isinstance(st, A.Select):
            _subscribe(sql)
        return
    for who in (OWNER, OTHER):
        tx = DS.begin()
        try:
            SVC.dml(sql, who, tx)
        except StdbError:
            pass
        finally:
            tx.rollback()


instrument_module(globals(), __name__ == "__main__")


def main() -> None:
    fuzz(TestOneInput)


if __name__ == "__main__":
    main()
