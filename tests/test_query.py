"""The SQL layer: parse errors, binding and typing errors, planning, subscriptions, DML and
visibility (the random oracles are in tests/test_query_oracle.py)."""

from __future__ import annotations

import pytest

import stdb
from stdb import Column, Datastore, IndexDef, TableSchema
from stdb._core.matcher import Matcher
from stdb.query.parser import parse
from stdb.query.render import render
from stdb.query.service import QueryService
from stdb.query.visibility import by_table, parse_filter

OWNER = b"\x07" * 32
OTHER = b"\x08" * 32

PLAYER = TableSchema("player", [Column("id", "u64"), Column("zone", "i64"), Column("name", "string"),
                                Column("nick", "option<string>"), Column("owner", "identity")],
                     primary_key="id", indexes=[IndexDef("by_zone", "zone")])
ZONE = TableSchema("zone", [Column("zid", "i64"), Column("pvp", "bool")], primary_key="zid")
SECRET = TableSchema("secret", [Column("id", "u64"), Column("v", "string")], primary_key="id", public=False)


@pytest.fixture
def svc():
    ds = Datastore()
    for s in (PLAYER, ZONE, SECRET):
        ds.create_table(s)
    with ds.begin() as tx:
        for i in range(12):
            tx.insert("player", (i, i % 4, f"p{i}", None if i % 3 else f"n{i}", OWNER if i < 6 else OTHER))
        for z in range(4):
            tx.insert("zone", (z, z % 2 == 1))
        tx.insert("secret", (1, "s"))
    return ds, QueryService(ds, lambda: OWNER)


@pytest.mark.parametrize("sql, where, msg", [
    ("SELECT * FRM player", "column 10", "expected FROM, found 'FRM'"),
    ("SELECT * FROM player WHERE id = 1 AND", "column 38", "found the end of the query"),
    ("SELECT * FROM player WHERE id = 'x", "column 33", "this quote is never closed"),
    ("SELECT * FROM player WHERE id = 1 # 2", "column 35", "unexpected character '#'"),
    ("SELECT * FROM player WHERE id IN ()", "column 35", "expected a column, a value or '('"),
    ("SELECT * FROM player WHERE x = X'abc'", "column 32", "even number of digits"),
    ("SELECT * FROM player\nWHERE id = = 1", "line 2, column 12", "expected a column"),
    ("SELECT * FROM player LIMIT 1.5", "column 28", "a whole number after LIMIT"),
    ("SELECT * FROM select", "column 15", "a keyword"),
])
def test_parse_errors_name_the_position(sql, where, msg):
    with pytest.raises(stdb.QueryError) as e:
        parse(sql)
    assert where in e.value.detail and msg in e.value.detail
    assert "^" in e.value.hint


def test_deep_nesting_is_refused_not_a_crash():
    with pytest.raises(stdb.QueryError, match="nested too deeply"):
        parse("SELECT * FROM t WHERE " + "NOT " * 500 + "x = 1")
    with pytest.raises(stdb.QueryError, match="nested too deeply"):
        parse("SELECT * FROM t WHERE " + "(" * 500 + "x = 1" + ")" * 500)


def test_normalized_text_ignores_case_spacing_and_parentheses():
    a = render(parse("select *   from player where (zone=1) and name = 'it''s'"))
    b = render(parse("SELECT * FROM player WHERE zone = 1 AND (name = 'it''s')"))
    assert a == b == "SELECT * FROM player WHERE (zone = 1) AND (name = 'it''s')"


@pytest.mark.parametrize("sql", [
    "SELECT * FROM player WHERE zone BETWEEN 0 AND 3 OR N >= (id > 4)",
    "SELECT * FROM zone WHERE (pvp = TRUE) = (zid > 2)",
    "SELECT * FROM zone WHERE (zid IN (1, 2)) IS NULL AND zid BETWEEN (zid = 1) AND 3",
    "SELECT (zid > 1) AS big, COUNT((pvp = TRUE)) FROM zone GROUP BY (zid > 1) ORDER BY (zid > 1)",
    "UPDATE zone SET pvp = (zid = 1)",
    "INSERT INTO zone VALUES ((1 = 1), 2)",
    'SELECT "select".* FROM "UPDATE" AS "select" WHERE "Order" = -1 ORDER BY "limit"',
])
def test_canonical_text_parses_back_to_itself(sql):
    """Found by fuzz/fuzz_sql.py: the canonical text (the subscription dedup key, sent back
    in SubscribeApplied) did not always parse: a parenthesised condition used as an operand
    lost its parentheses (``N >= (id > 4)`` became ``N >= id > 4``; the binder refuses such
    operands anyway), and a name that is a keyword lost its quotes (``"UPDATE"`` became
    ``UPDATE``; tables and columns may be named so)."""
    canon = render(parse(sql))
    assert render(parse(canon)) == canon
    assert any(s in canon for s in ("(id > 4)", "(zid", "(1 = 1)", '"UPDATE" AS "select"'))


@pytest.mark.parametrize("sql, msg", [
    ("SELECT * FROM nosuch", "no table named 'nosuch'"),
    ("SELECT * FROM player WHERE zone = 'x'", "column player.zone is i64; 'x' is a string"),
    ("SELECT * FROM player WHERE nosuch = 1", "no column 'nosuch'"),
    ("SELECT * FROM player WHERE nick = NULL", "comparing with NULL is never true"),
    ("SELECT * FROM player WHERE owner = X'00'", "column player.owner is identity; X'00' is 1 bytes"),
    ("SELECT * FROM player JOIN zone ON zone = zid WHERE id = 1 AND zid = zone", None),
    ("SELECT * FROM player p JOIN player q ON p.id = q.id WHERE id = 1", "ambiguous"),
    ("SELECT * FROM player WHERE name", "is string, not a condition"),
    ("SELECT * FROM player WHERE zone = :nope", "unknown parameter ':nope'"),
    ("SELECT name, COUNT(*) FROM player", "must be in GROUP BY"),
    ("SELECT SUM(name) FROM player", "SUM needs a number column"),
    ("SELECT * FROM secret", "table 'secret' is private: only the database's owner can read it"),
])
def test_binding_errors(svc, sql, msg):
    _, qs = svc
    if msg is None:
        assert qs.query(sql, OTHER).rows                      # valid: a sanity case
        return
    with pytest.raises(stdb.QueryError, match=msg.replace("(", r"\(").replace("*", r"\*")):
        qs.query(sql, OTHER)


def test_the_planner_uses_indexes(svc):
    _, qs = svc
    assert qs.query("SELECT * FROM player WHERE id = 3", OWNER).plan == ["player: index pk seek (1 key)"]
    assert qs.query("SELECT * FROM player WHERE zone IN (1, 2)", OWNER).plan == \
        ["player: index by_zone seek (2 keys)"]
    r = qs.query("SELECT id FROM player WHERE zone >= 2 AND zone < 3", OWNER)
    assert r.plan == ["player: index by_zone range"] and sorted(r.rows) == [(2,), (6,), (10,)]
    r = qs.query("SELECT id FROM player WHERE zone > 2.5", OWNER)     # not a key of an i64: filtered
    assert r.plan == ["player: full scan"] and sorted(r.rows) == [(3,), (7,), (11,)]
    r = qs.query("SELECT p.id FROM zone z JOIN player p ON p.zone = z.zid WHERE z.pvp = TRUE", OWNER)
    assert r.plan[1].startswith("p: index by_zone join") and len(r.rows) == 6


def test_sender_parameter_and_private_tables(svc):
    _, qs = svc
    assert len(qs.query("SELECT * FROM player WHERE owner = :sender", OTHER).rows) == 6
    assert qs.query("SELECT * FROM secret", OWNER).rows == [(1, "s")]      # the owner sees it
    with pytest.raises(stdb.QueryError, match="table 'secret' is private"):
        qs.subscribe(["SELECT * FROM secret"], "c", OTHER)


def test_subscriptions_dedup_and_diffs(svc):
    ds, qs = svc
    a = qs.subscribe(["SELECT * FROM player WHERE zone = 1"], "c1", OTHER)
    b = qs.subscribe(["select * from player where (zone = 1)"], "c2", OTHER)
    assert a[0].query_id == b[0].query_id and len(qs.subs) == 1
    assert sorted(r[0] for r in a[0].rows) == [1, 5, 9]
    tx = ds.begin()
    tx.update("player", (1, 2, "p1", None, OWNER))          # leaves zone 1
    tx.insert("player", (20, 1, "new", None, OWNER))
    upd = qs.on_commit(tx.commit())[a[0].query_id]
    assert [r[0] for r in upd.deletes] == [1] and [r[0] for r in upd.inserts] == [20]
    assert qs.unsubscribe(a[0].query_id, "c1") and len(qs.subs) == 1
    assert qs.unsubscribe(a[0].query_id, "c2") and len(qs.subs) == 0
    assert not qs.unsubscribe(a[0].query_id, "c2")


def test_one_bad_query_registers_nothing(svc):
    _, qs = svc
    with pytest.raises(stdb.QueryError, match="query 2 of 2"):
        qs.subscribe(["SELECT * FROM player", "SELECT * FROM nosuch"], "c", OWNER)
    assert len(qs.subs) == 0


@pytest.mark.parametrize("sql, msg", [
    ("SELECT id FROM player", "selects whole rows"),
    ("SELECT * FROM player ORDER BY id", "cannot use GROUP BY, ORDER BY or LIMIT"),
    ("SELECT * FROM player JOIN zone ON player.zone = zone.zid", "must say whose rows"),
    ("SELECT player.* FROM player JOIN zone ON player.zone < zone.zid", "one equality"),
    ("SELECT zone.* FROM zone JOIN player ON zone.pvp = player.id", "has no index"),
    ("DELETE FROM player", "must be a SELECT"),
])
def test_subscription_shape_errors(svc, sql, msg):
    _, qs = svc
    with pytest.raises(stdb.QueryError, match=msg):
        qs.subscribe([sql], "c", OWNER)


def test_join_subscription_sees_changes_on_both_sides(svc):
    ds, qs = svc
    [s] = qs.subscribe(["SELECT player.* FROM player JOIN zone ON player.zone = zone.zid "
                        "WHERE zone.pvp = TRUE"], "c", OWNER)
    assert sorted(r[0] for r in s.rows) == [1, 3, 5, 7, 9, 11]
    tx = ds.begin()
    tx.update("zone", (1, False))                            # zone 1 leaves: 1, 5, 9 go
    tx.update("zone", (2, True))                             # zone 2 joins: 2, 6, 10 come
    tx.update("player", (3, 2, "p3", None, OWNER))           # moved, still in (both sides changed)
    d = qs.on_commit(tx.commit())[s.query_id]
    assert sorted(r[0] for r in d.deletes) == [1, 3, 5, 9]
    assert sorted(r[0] for r in d.inserts) == [2, 3, 6, 10]



def test_join_subscription_over_rows_holding_arrays_and_nans():
    """Found by fuzz/fuzz_sql.py: the join delta rule counted rows in dicts, and a row with an
    array column (a list) is unhashable — every commit touching such a join subscription raised
    TypeError.  Rows are now keyed by their encoding, which also matches NaN rows exactly."""
    ds = Datastore()
    ds.create_table(TableSchema("item", [Column("id", "u64"), Column("bag", "u64"),
                                         Column("tags", "array<string>"), Column("w", "f64")],
                                primary_key="id", indexes=[IndexDef("by_bag", "bag")]))
    ds.create_table(TableSchema("bag", [Column("bid", "u64"), Column("open", "bool"),
                                        Column("labels", "array<u8>")], primary_key="bid"))
    with ds.begin() as tx:
        tx.insert("item", (1, 10, ["a"], float("nan")))
        tx.insert("item", (2, 11, [], 1.0))
        tx.insert("bag", (10, True, [1, 2]))
        tx.insert("bag", (11, False, []))
    qs = QueryService(ds, lambda: OWNER)
    [s] = qs.subscribe(["SELECT item.* FROM item JOIN bag ON item.bag = bag.bid WHERE bag.open"], "c", OWNER)
    assert [r[0] for r in s.rows] == [1]
    tx = ds.begin()
    tx.update("bag", (10, False, [1]))                       # item 1 leaves
    tx.update("bag", (11, True, [3]))                        # item 2 enters
    tx.insert("item", (3, 11, ["x", "y"], float("nan")))     # and so does a new one
    d = qs.on_commit(tx.commit())[s.query_id]
    assert [r[0] for r in d.deletes] == [1]
    assert sorted(r[0] for r in d.inserts) == [2, 3]
    tx = ds.begin()
    tx.update("item", (3, 11, ["x", "y"], 2.0))               # a NaN row updated in place
    d = qs.on_commit(tx.commit())[s.query_id]
    assert [r[3] for r in d.deletes] != [2.0] and [r[3] for r in d.inserts] == [2.0]

THIRD = b"\x09" * 32


@pytest.fixture
def filtered(svc):
    """The same data, with the module's visibility filters: a player is visible to whoever owns
    it and, in zone 0, to everyone; only pvp zones are visible."""
    ds, _ = svc
    lookup = {s.name: s for s in (PLAYER, ZONE, SECRET)}.get
    fs = by_table([parse_filter("SELECT * FROM player WHERE owner = :sender", lookup),
                   parse_filter("SELECT * FROM player WHERE zone = 0", lookup),
                   parse_filter("SELECT * FROM zone z WHERE z.pvp = TRUE", lookup)])
    return ds, QueryService(ds, lambda: OWNER, lambda: fs)


def test_visibility_filters_narrow_queries_for_everyone_but_the_owner(filtered):
    _, qs = filtered
    ids = lambda sql, who: sorted(r[0] for r in qs.query(sql, who).rows)      # noqa: E731
    assert ids("SELECT id FROM player", OWNER) == list(range(12))
    assert ids("SELECT id FROM player", OTHER) == [0, 4, 6, 7, 8, 9, 10, 11]
    assert ids("SELECT id FROM player", THIRD) == [0, 4, 8]
    assert qs.query("SELECT COUNT(*) FROM player WHERE id > 2", THIRD).rows == [(2,)]
    # both tables of a join are filtered, each under its alias; the player filters' columns
    # do not clash with the zone's
    assert ids("SELECT p.id FROM player p JOIN zone ON p.zone = zone.zid", OTHER) == [7, 9, 11]
    assert ids("SELECT zid FROM zone", OTHER) == [1, 3]
    r = qs.query("SELECT id FROM player WHERE zone = 1", OTHER)
    assert r.plan == ["player: index by_zone seek (1 key)"] and r.rows == [(9,)]


def test_visibility_filters_apply_to_subscriptions_and_their_diffs(filtered):
    ds, qs = filtered
    [a] = qs.subscribe(["SELECT * FROM player"], "c1", OTHER)
    [b] = qs.subscribe(["SELECT * FROM player"], "c2", THIRD)
    [o] = qs.subscribe(["SELECT * FROM player"], "c3", OWNER)
    assert len({a.query_id, b.query_id, o.query_id}) == 3      # the filter binds the sender
    assert sorted(r[0] for r in b.rows) == [0, 4, 8] and len(o.rows) == 12
    [j] = qs.subscribe(["SELECT player.* FROM player JOIN zone ON player.zone = zone.zid"], "c2", THIRD)
    assert j.rows == []                                       # THIRD's only players are in zone 0
    tx = ds.begin()
    tx.insert("player", (20, 2, "mine", None, THIRD))         # THIRD's own, in a hidden zone
    tx.update("player", (7, 0, "p7", None, OTHER))            # OTHER's, now in zone 0: everyone's
    tx.update("zone", (2, True))                              # zone 2 becomes visible
    d = qs.on_commit(tx.commit())
    assert [r[0] for r in d[a.query_id].inserts] == [7]       # changed, not the hidden 20
    assert sorted(r[0] for r in d[b.query_id].inserts) == [7, 20]
    assert sorted(r[0] for r in d[j.query_id].inserts) == [20]
    assert sorted(r[0] for r in d[o.query_id].inserts) == [7, 20]


def test_a_module_update_ends_every_subscription(filtered):
    _, qs = filtered
    [a] = qs.subscribe(["SELECT * FROM player"], "c1", OTHER)
    assert qs.reset() == {"c1"} and len(qs.subs) == 0
    [b] = qs.subscribe(["SELECT * FROM player"], "c1", OTHER)
    assert b.query_id != a.query_id                           # ids are never reused


def test_dml_is_owner_only_and_goes_through_the_transaction(svc):
    ds, qs = svc
    tx = ds.begin()
    with pytest.raises(stdb.AuthError):
        qs.dml("DELETE FROM player WHERE id = 1", OTHER, tx)
    tx.rollback()
    tx = ds.begin()
    qs.dml("INSERT INTO zone (zid, pvp) VALUES (10, TRUE), (11, FALSE)", OWNER, tx)
    qs.dml("UPDATE player SET nick = 'x', zone = 10 WHERE id < 2", OWNER, tx)
    qs.dml("DELETE FROM player WHERE id >= 10", OWNER, tx)
    delta = tx.commit()
    assert len(delta.tables["zone"].inserts) == 2
    r = qs.query("SELECT id, nick FROM player WHERE zone = 10 ORDER BY id", OWNER)
    assert r.rows == [(0, "x"), (1, "x")]
    assert ds.count("player") == 10
    tx = ds.begin()
    with pytest.raises(stdb.QueryError, match="cannot be NULL"):
        qs.dml("INSERT INTO zone VALUES (12, NULL)", OWNER, tx)
    with pytest.raises(stdb.QueryError, match="must give column"):
        qs.dml("INSERT INTO zone (zid) VALUES (12)", OWNER, tx)
    with pytest.raises(stdb.ConstraintError):
        qs.dml("INSERT INTO zone VALUES (1, TRUE)", OWNER, tx)
    tx.rollback()


def test_matcher_ranges_empty_intervals_and_removal():
    m = Matcher()
    m.add_range(1, "t", 0, 3, False, 1, False, None)        # x > 3 AND x < 1: nothing, ever
    m.add_range(2, "t", 0, 1, True, 3, False, None)         # 1 <= x < 3
    m.add_range(3, "t", 0, None, False, 2, True, None)      # x <= 2
    m.add_eq(4, "t", 1, ["a", "b"], None)
    m.add_every(5, "t", lambda r: r[0] is None)
    rows = [(0, "a"), (1, "z"), (2, "b"), (3, "q"), (None, "a")]
    assert m.match("t", rows) == {2: [(1, "z"), (2, "b")], 3: [(0, "a"), (1, "z"), (2, "b")],
                                  4: [(0, "a"), (2, "b"), (None, "a")], 5: [(None, "a")]}
    for sid in (1, 2, 3, 4, 5):
        m.remove(sid)
    assert len(m) == 0 and m.match("t", rows) == {}
    with pytest.raises(stdb.InternalError):
        m.remove(1)


def test_a_result_names_each_columns_type(svc):
    _, qs = svc
    r = qs.query("SELECT * FROM player WHERE id = 1", OWNER)
    assert r.columns == ["id", "zone", "name", "nick", "owner"]
    assert r.types == ["u64", "i64", "string", "option<string>", "identity"]
    r = qs.query("SELECT p.name AS who, z.* FROM player p JOIN zone z ON p.zone = z.zid WHERE p.id = 1",
                 OWNER)
    assert r.columns == ["who", "zid", "pvp"] and r.types == ["string", "i64", "bool"]
    r = qs.query("SELECT zone, COUNT(*), SUM(id), AVG(id), MAX(name) FROM player GROUP BY zone", OWNER)
    assert r.types == ["i64", "u64", "u64", "f64", "string"]
