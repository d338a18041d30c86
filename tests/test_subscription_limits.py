"""A subscription's initial rows are read under the subscriber's query limits, through an index
when one serves its WHERE, and a connection's subscriptions may hold at most ``subscribed_rows``
rows (issue 23)."""

from __future__ import annotations

import pytest
import trio

import stdb
from stdb import Column, Datastore, IndexDef, TableSchema
from stdb.query.budget import QueryLimits
from stdb.query.service import QueryService
from tests.test_server import TIMEOUT, chat_wasm, connect, publish_with_messages, running  # noqa: F401

OWNER = b"\x07" * 32
OTHER = b"\x08" * 32
T = TableSchema("t", [Column("id", "u64", auto_inc=True), Column("v", "i64"), Column("w", "i64"),
                      Column("s", "string")],
                primary_key="id", indexes=[IndexDef("t_v", "v"), IndexDef("t_s", "s", kind="btree")],
                public=True)
U = TableSchema("u", [Column("id", "u64", auto_inc=True), Column("v", "i64")], primary_key="id",
                indexes=[IndexDef("u_v", "v")], public=True)


@pytest.fixture()
def qs():
    ds = Datastore()
    ds.create_table(T)
    ds.create_table(U)
    with ds.begin() as tx:
        for i in range(5000):
            tx.insert("t", (0, i % 100, i % 7, f"k{i % 50:02d}"))
        for i in range(30):
            tx.insert("u", (0, i))
    return ds, QueryService(ds, lambda: OWNER)


def _budget_seen(qs_, sqls, limits, max_rows=None, who="c"):
    return qs_.subscribe(sqls, who, OTHER, limits, max_rows)


def test_an_indexed_where_reads_only_its_rows_and_an_unindexed_one_is_refused_up_front(qs):
    ds, q = qs
    small = QueryLimits(rows_examined=400)         # for the whole request: 50 + 100 + 200 read
    got = _budget_seen(q, ["SELECT * FROM t WHERE v = 3", "SELECT * FROM t WHERE v IN (4, 4, 5)",
                           "SELECT * FROM t WHERE s >= 'k48' AND w = 1"], small)
    assert [len(s.rows) for s in got[:2]] == [50, 100] and got[2].rows
    assert sorted(got[1].rows) == sorted(r for _, r in ds.table("t").scan() if r[1] in (4, 5))
    assert sorted(got[2].rows) == sorted(r for _, r in ds.table("t").scan() if r[3] >= "k48" and r[2] == 1)
    with pytest.raises(stdb.QueryError) as ei:
        q.subscribe(["SELECT * FROM u", "SELECT * FROM t WHERE w = 3"], "d", OTHER, small)
    e = ei.value
    assert e.limit == "rows_examined" and "rows_examined = 400" in e.detail
    assert "a scan of 't'" in e.detail and "5,000 rows" in e.detail
    assert "indexed column" in e.hint
    assert q.subs.count_of("d") == 0            # nothing of the request was registered
    # the owner's limits, or none: the same query is answered
    assert len(q.subscribe(["SELECT * FROM t WHERE w = 3"], "e", OTHER)[0].rows) == 714


def test_a_join_subscription_counts_its_seeks(qs):
    _, q = qs
    sql = "SELECT t.* FROM t JOIN u ON t.v = u.v WHERE t.id < 100000"
    rows = q.subscribe([sql], "a", OTHER, QueryLimits(rows_examined=20_000))[0].rows
    assert len(rows) == 30 * 50                    # t's rows whose v (0..99) meets one of u's 30
    with pytest.raises(stdb.QueryError, match="rows_examined = 5,000"):
        q.subscribe([sql], "b", OTHER, QueryLimits(rows_examined=5_000))   # the scan fits, its seeks do not


def test_rows_held_over_the_cap_are_refused_naming_subscribed_rows(qs):
    _, q = qs
    with pytest.raises(stdb.QueryError) as ei:
        q.subscribe(["SELECT * FROM t WHERE v = 1", "SELECT * FROM t WHERE v = 2"], "c", OTHER,
                    QueryLimits(), max_rows=99)
    assert ei.value.limit == "subscribed_rows" and "subscribed_rows = 99" in ei.value.detail
    assert "would add 100 or more" in ei.value.detail and "unsubscribe" in ei.value.hint
    assert q.subs.count_of("c") == 0
    got = q.subscribe(["SELECT * FROM t WHERE v = 1"], "c", OTHER, QueryLimits(), max_rows=50)
    assert len(got[0].rows) == 50


async def test_a_connections_subscriptions_are_capped_by_the_owners_setting(tmp_path, chat_wasm):  # noqa: F811
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (server, port):
            async with connect(port) as owner, connect(port) as c:
                await publish_with_messages(owner, chat_wasm, 12)
                r = await owner.request("Settings", set={"clients.subscribed_rows": 10})
                assert r["settings"]["clients.subscribed_rows"] == 10
                a = await c.request("Subscribe", queries=["SELECT * FROM message WHERE id <= 8"])
                assert a["type"] == "SubscribeApplied" and len(a["queries"][0]["rows"]) == 8
                e = await c.request("Subscribe", queries=["SELECT * FROM message WHERE id > 8"])
                assert e["type"] == "Error" and e["code"] == "query_error", e
                assert "subscribed_rows = 10" in e["detail"]
                assert "hold 8 rows and these queries would add 4" in e["detail"]
                r = await c.request("Unsubscribe", query_ids=[a["queries"][0]["query_id"]])
                assert r["type"] == "UnsubscribeApplied"
                b = await c.request("Subscribe", queries=["SELECT * FROM message WHERE id > 8"])
                assert b["type"] == "SubscribeApplied" and len(b["queries"][0]["rows"]) == 4
                # the owner's own cap is the owner's setting (10,000,000 by default)
                o = await owner.request("Subscribe", queries=["SELECT * FROM message"])
                assert len(o["queries"][0]["rows"]) == 12
