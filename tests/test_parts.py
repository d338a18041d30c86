"""Large results in parts (docs/protocol.md, "Large results: parts"): the cutting function
(stdb.protocol.split_message / join_parts) as a property, and on a real server (port 0) the
one-off results, subscriptions' initial rows and transaction updates a client with a small
``?max_message`` receives, raw and through the SDK."""

from __future__ import annotations

import pathlib
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from stdb import build_module
from stdb.client import connect
from stdb.client.connection import DbConnection
from stdb.errors import ProtocolError, QueryError
from stdb.protocol import (
    MAX_MESSAGE_BYTES,
    MIN_MAX_MESSAGE,
    SUBPROTOCOL,
    check_max_message,
    decode_server,
    encode,
    join_parts,
    split_message,
)
from tests.test_server import ROOT, TIMEOUT, Client, running

SMALL = MIN_MAX_MESSAGE          # 64 KiB
SQL = "SELECT * FROM blob"


# ---- the cutting function

def _without_type(msg: dict) -> dict:
    return {k: v for k, v in msg.items() if k != "type"}


def _one_row(type_: str, fields: dict, row: Any, where: tuple[int, str] | None) -> dict:
    """``fields`` with nothing but ``row`` (in entry ``where``'s list, or the rows)."""
    if where is None:
        return dict(fields, rows=[row] if row is not None else [])
    i, name = where
    field = "queries" if type_ == "SubscribeApplied" else "updates"
    entry = {k: ([] if isinstance(v, list) else v) for k, v in fields[field][i].items()}
    if row is not None:
        entry[name] = [row]
    return dict(fields, **{field: [entry]})


def _justified(type_: str, fields: dict, limit: int, e: QueryError) -> bool:
    """Whether refusing to cut is right: some row (or an entry's own fields, or the message
    without rows), alone in a part, is over the limit; or two neighbouring entries have the
    same query id (which the cutter may not separate)."""
    def over(f: dict) -> bool:
        return len(encode(type_, **f, more=True)) > limit
    if over(_one_row(type_, fields, None, None) if type_ == "OneOffQueryResult"
            else dict(fields, **{"queries" if type_ == "SubscribeApplied" else "updates": []})):
        return True
    if type_ == "OneOffQueryResult":
        return any(over(_one_row(type_, fields, r, None)) for r in fields["rows"])
    field, lists = ("queries", ("rows",)) if type_ == "SubscribeApplied" else \
        ("updates", ("deletes", "inserts"))
    entries = fields[field]
    for i, entry in enumerate(entries):
        if over(_one_row(type_, fields, None, (i, lists[0]))):
            return True
        if any(over(_one_row(type_, fields, r, (i, name))) for name in lists for r in entry[name]):
            return True
    return "same query_id" in e.detail and any(
        a["query_id"] == b["query_id"] for a, b in zip(entries, entries[1:], strict=False))


def check_split(type_: str, fields: dict, limit: int) -> list[bytes] | None:
    """Cut ``fields`` at ``limit`` and check the parts: each within the limit, each exactly what
    ``encode`` writes for it, ``more`` on all but the last, together the whole message."""
    whole = encode(type_, **fields, more=False)
    try:
        parts = split_message(type_, fields, limit)
    except QueryError as e:
        assert _justified(type_, fields, limit, e), e.detail
        return None
    assert all(len(p) <= limit for p in parts)
    msgs = [decode_server(p) for p in parts]
    assert [m["more"] for m in msgs] == [True] * (len(parts) - 1) + [False]
    for m, p in zip(msgs, parts, strict=True):
        assert encode(type_, **_without_type(m)) == p
    assert join_parts(msgs) == decode_server(whole)
    if len(whole) <= limit:
        assert parts == [whole]
    return parts


VALUES = st.integers(-(1 << 63), (1 << 64) - 1) | st.text(max_size=80) | st.binary(max_size=80) | st.none()
ROWS = st.lists(st.lists(VALUES, min_size=1, max_size=4), max_size=12)
LIMITS = st.integers(20, 1500)


@settings(max_examples=300, deadline=None)
@given(ROWS, st.lists(st.text(max_size=12), max_size=3), LIMITS)
def test_one_off_results_cut_into_parts(rows, columns, limit):
    fields = {"request_id": 3, "columns": columns, "rows": rows, "plan": ["scan t"]}
    parts = check_split("OneOffQueryResult", fields, limit)
    if parts is None:
        return
    # greedy: no part but the last could have taken the next row
    taken = 0
    for p in parts[:-1]:
        n = len(decode_server(p)["rows"])
        taken += n
        bigger = dict(fields, rows=rows[taken - n:taken + 1])
        assert len(encode("OneOffQueryResult", **bigger, more=True)) > limit
    assert taken + len(decode_server(parts[-1])["rows"]) == len(rows)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.text(max_size=40), ROWS), max_size=5), LIMITS)
def test_subscriptions_initial_rows_cut_into_parts(queries, limit):
    # query ids may repeat (the same query twice in one Subscribe), also side by side
    fields = {"request_id": 4, "queries": [{"query_id": q, "sql": sql, "table": "t", "rows": rows}
                                           for q, sql, rows in queries]}
    check_split("SubscribeApplied", fields, limit)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(ROWS, ROWS), max_size=4), LIMITS, st.none() | st.integers(0, 1 << 40))
def test_transaction_updates_cut_into_parts(updates, limit, offset):
    fields = {"offset": offset, "timestamp": 1_700_000_000_000_000, "reducer": "fill", "caller": bytes(32),
              "status": "committed", "message": None, "request_id": None,
              "updates": [{"query_id": i, "table": "t", "deletes": d, "inserts": ins}
                          for i, (d, ins) in enumerate(updates)]}
    check_split("TransactionUpdate", fields, limit)


def test_the_same_query_twice_is_never_read_as_one_continued():
    """Two entries with the same query id side by side (a Subscribe naming a query twice): the
    cutter never cuts between them, which a reader would take for one entry continued (the part
    after the first begins with a row of it: below twice the fields and a row, it refuses)."""
    rows = [[i, "r" * 20] for i in range(6)]
    entry = {"query_id": 5, "sql": "SELECT * FROM t", "table": "t", "rows": rows}
    fields = {"request_id": 1, "queries": [entry, dict(entry)]}
    whole = len(encode("SubscribeApplied", **fields, more=False))
    continued = 0
    for limit in range(100, whole):
        parts = check_split("SubscribeApplied", fields, limit)
        if parts is None:
            assert limit < 220
            continue
        msgs = [decode_server(p) for p in parts]
        assert len(join_parts(msgs)["queries"]) == 2
        continued += sum(a["queries"][-1]["query_id"] == b["queries"][0]["query_id"] == 5
                         for a, b in zip(msgs, msgs[1:], strict=False))
    assert continued       # some cuts fell inside an entry (and were read back as such)


def test_a_row_over_the_limit_is_refused_with_its_size():
    fields = {"request_id": 1, "columns": ["a"], "rows": [["x" * 10], ["y" * 5000]], "plan": []}
    with pytest.raises(QueryError) as e:
        split_message("OneOffQueryResult", fields, 1000)
    assert "a row of 5,004 bytes" in e.value.detail and "1,000 bytes" in e.value.detail


@pytest.mark.parametrize("v, ok", [("65536", True), (str(MAX_MESSAGE_BYTES), True), (1 << 20, True),
                                   ("65535", False), (str(MAX_MESSAGE_BYTES + 1), False), ("", False),
                                   ("abc", False), ("-1", False), ("1e6", False), ("６５５３６", False),
                                   (True, False), (65536.0, False)])
def test_max_message_values(v, ok):
    if ok:
        assert check_max_message(v) == int(v)
        return
    with pytest.raises(ProtocolError) as e:
        check_max_message(v)
    assert "max_message" in e.value.detail and "65,536 to 16,777,216" in e.value.detail


def test_the_sdk_puts_interleaved_parts_back_by_request():
    hello = {"identity": bytes(32), "token": "t", "connection_id": bytes(16), "database": "d"}
    conn = DbConnection(hello, None)  # type: ignore[arg-type]
    a = {"request_id": 1, "columns": ["x"], "rows": [[i] for i in range(5)], "plan": []}
    b = {"request_id": 2, "columns": ["y"], "rows": [[-i] for i in range(7)], "plan": []}
    pa = [decode_server(p) for p in split_message("OneOffQueryResult", a, 68)]
    pb = [decode_server(p) for p in split_message("OneOffQueryResult", b, 68)]
    assert len(pa) > 1 and len(pb) > 1
    got = []
    for m in [x for pair in zip(pa, pb, strict=False) for x in pair] + pa[len(pb):] + pb[len(pa):]:
        whole = conn._whole(m)
        if whole is not None:
            got.append(whole)
    want = [decode_server(encode("OneOffQueryResult", **x, more=False)) for x in (a, b)]
    assert sorted(got, key=lambda m: m["request_id"]) == want
    assert not conn._parts


# ---- on a real server

@pytest.fixture(scope="module")
def bulk_wasm(tmp_path_factory):
    out = tmp_path_factory.mktemp("wasm") / "bulk.wasm"
    return pathlib.Path(build_module(str(ROOT / "tests/modules/bulk.c"), str(out))).read_bytes()


@asynccontextmanager
async def raw(port, *, max_message=None, token=None):
    q = [f"{k}={v}" for k, v in (("max_message", max_message), ("token", token)) if v is not None]
    url = f"ws://127.0.0.1:{port}/v1/database/bulk" + ("?" + "&".join(q) if q else "")
    size = max_message if isinstance(max_message, int) else 64 << 20
    async with open_websocket_url(url, subprotocols=[SUBPROTOCOL], max_message_size=size) as ws:
        yield Client(ws, decode_server(await ws.get_message()))


async def answer(c: Client, rid: int) -> list[bytes]:
    """The raw messages answering request ``rid``: its parts, up to the one with ``more`` false,
    back to back (nothing else between them)."""
    out: list[bytes] = []
    while True:
        data = await c.ws.get_message()
        m = decode_server(data)
        if m.get("request_id") != rid:
            assert not out, m["type"]
            continue
        out.append(data)
        if m["type"] == "Error" or not m["more"]:
            return out


async def update_at(c: Client, offset: int) -> list[bytes]:
    """The raw TransactionUpdate messages of commit ``offset``, up to the one with ``more`` false,
    back to back."""
    out: list[bytes] = []
    while True:
        data = await c.ws.get_message()
        m = decode_server(data)
        if m["type"] != "TransactionUpdate" or m["offset"] != offset:
            assert not out, m["type"]
            continue
        out.append(data)
        if not m["more"]:
            return out


def in_parts(raws: list[bytes], type_: str) -> list[dict]:
    """``raws`` decoded, checked to be several parts of one ``type_`` message within SMALL."""
    msgs = [decode_server(r) for r in raws]
    assert len(msgs) > 1 and all(len(r) <= SMALL for r in raws)
    assert all(m["type"] == type_ for m in msgs)
    assert [m["more"] for m in msgs] == [True] * (len(msgs) - 1) + [False]
    return msgs


async def test_max_message_out_of_range_is_refused(tmp_path, bulk_wasm):
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (server, port):
            for bad in ("1000", "abc", str(MAX_MESSAGE_BYTES + 1), ""):
                with pytest.raises(ConnectionRejected) as e:
                    async with raw(port, max_message=bad):
                        pass
                assert e.value.status_code == 400
                body = (e.value.body or b"").decode()
                assert "max_message" in body and "65,536 to 16,777,216" in body
            async with raw(port, max_message=SMALL) as c:
                assert [x.max_message for x in server.connections if x.identity == c.identity] == [SMALL]
                assert (await c.request("Publish", wasm=bulk_wasm))["type"] == "PublishResult"
            async with raw(port) as c:
                assert [x.max_message for x in server.connections if x.identity == c.identity] == \
                    [MAX_MESSAGE_BYTES]
            with pytest.raises(ProtocolError, match="65,536 to 16,777,216"):
                async with connect(f"ws://127.0.0.1:{port}", "bulk", max_message=1000):
                    pass


async def test_a_large_one_off_result_arrives_in_parts(tmp_path, bulk_wasm):
    with trio.fail_after(TIMEOUT * 2):
        async with running(tmp_path) as (_, port):
            async with raw(port) as owner:
                await owner.request("Publish", wasm=bulk_wasm)
                r = await owner.request("CallReducer", reducer="fill", args=[1, 2500, 2000])     # 5 MB
                assert r["status"] == "committed"
                [whole_raw] = await answer(owner, await owner.send("OneOffQuery", sql=SQL))
                whole = decode_server(whole_raw)
                assert len(whole_raw) > 4 << 20 and len(whole["rows"]) == 2500 and whole["more"] is False
                async with raw(port, max_message=SMALL, token=owner.token) as small:
                    msgs = in_parts(await answer(small, await small.send("OneOffQuery", sql=SQL)),
                                    "OneOffQueryResult")
                    assert len(msgs) >= len(whole_raw) // SMALL
                    assert all(m["columns"] == whole["columns"] and m["plan"] == whole["plan"] for m in msgs)
                    assert join_parts(msgs)["rows"] == whole["rows"]
            url = f"ws://127.0.0.1:{port}"
            async with connect(url, "bulk", token=owner.token, max_message=SMALL) as c, \
                    connect(url, "bulk", token=owner.token) as big:
                got = await c.query(SQL)
                assert got == await big.query(SQL) and len(got.rows) == 2500
                assert (await c.query("SELECT id FROM blob WHERE id = 7")).rows == [(7,)]   # after the parts


async def test_a_subscriptions_initial_rows_arrive_in_parts(tmp_path, bulk_wasm):
    with trio.fail_after(TIMEOUT * 2):
        async with running(tmp_path) as (_, port):
            async with raw(port) as owner:
                await owner.request("Publish", wasm=bulk_wasm)
                await owner.request("CallReducer", reducer="fill", args=[1, 1500, 2000])
                await owner.request("CallReducer", reducer="fill", args=[2, 10, 30])
                queries = [SQL, "SELECT * FROM blob WHERE batch = 2"]
                [whole_raw] = await answer(owner, await owner.send("Subscribe", queries=queries))
                whole = decode_server(whole_raw)
                async with raw(port, max_message=SMALL) as small:
                    msgs = in_parts(await answer(small, await small.send("Subscribe", queries=queries)),
                                    "SubscribeApplied")
                    assert _without_type(join_parts(msgs)) == dict(_without_type(whole), request_id=1)
            url = f"ws://127.0.0.1:{port}"
            async with connect(url, "bulk", max_message=SMALL) as c, connect(url, "bulk") as big:
                seen: list[int] = []
                c.on_insert("blob", lambda row, ev: seen.append(row[0]))
                sub = await c.subscribe(*queries)
                await big.subscribe(*queries)
                assert sorted(c.table("blob")) == sorted(big.table("blob")) and len(c.table("blob")) == 1510
                assert sorted(seen) == sorted(r[0] for r in big.table("blob"))
                assert len(sub.query_ids) == 2
                await sub.unsubscribe()
                assert len(c.table("blob")) == 0


async def test_a_large_commit_arrives_in_parts_and_is_one_transaction(tmp_path, bulk_wasm):
    with trio.fail_after(TIMEOUT * 2):
        async with running(tmp_path) as (_, port):
            async with raw(port) as owner:
                await owner.request("Publish", wasm=bulk_wasm)
            url = f"ws://127.0.0.1:{port}"
            async with raw(port, max_message=SMALL) as small, raw(port) as big, \
                    connect(url, "bulk", max_message=SMALL) as c:
                for r in (small, big):
                    assert (await r.request("Subscribe", queries=[SQL]))["type"] == "SubscribeApplied"
                await c.subscribe(SQL)
                events: list[tuple] = []
                blob = c.table("blob")
                c.on_insert("blob", lambda row, ev: events.append(("insert", ev.offset, row[1], len(blob))))
                c.on_delete("blob", lambda row, ev: events.append(("delete", ev.offset, row[1], len(blob))))
                out = await c.call("fill", 7, 300, 2000)       # ~600 KB of inserts
                assert out.ok
                # every callback ran once the whole transaction (all its parts) was applied
                assert sorted(set(events)) == [("insert", out.offset, 7, 300)] and len(events) == 300
                msgs = in_parts(await update_at(small, out.offset), "TransactionUpdate")
                [whole] = [decode_server(r) for r in await update_at(big, out.offset)]
                assert join_parts(msgs) == whole and len(whole["updates"][0]["inserts"]) == 300
                # one update's deletes and inserts, cut across parts
                ids = sorted(r[0] for r in blob)
                assert ids == list(range(ids[0], ids[0] + 300))
                events.clear()
                out = await c.call("replace", ids[0], ids[-1], 8, 300, 2000)
                assert out.ok
                assert sorted(set(events)) == [("delete", out.offset, 7, 300), ("insert", out.offset, 8, 300)]
                assert len(events) == 600 and {r[1] for r in blob} == {8} and len(blob) == 300
                msgs = in_parts(await update_at(small, out.offset), "TransactionUpdate")
                [whole] = [decode_server(r) for r in await update_at(big, out.offset)]
                assert join_parts(msgs) == whole
                assert all(len(m["updates"]) == 1 for m in msgs)        # the one update, cut


async def test_a_row_over_a_clients_limit(tmp_path, bulk_wasm):
    with trio.fail_after(TIMEOUT):
        async with running(tmp_path) as (_, port):
            async with raw(port) as owner, raw(port, max_message=SMALL) as small:
                await owner.request("Publish", wasm=bulk_wasm)
                await owner.request("CallReducer", reducer="fill", args=[1, 1, 100_000])
                for req in ({"type_": "OneOffQuery", "sql": SQL}, {"type_": "Subscribe", "queries": [SQL]}):
                    e = await small.request(**req)
                    assert e["type"] == "Error" and e["code"] == "query_error", e
                    assert "a row of 100,0" in e["detail"] and "65,536" in e["detail"]
                # the refused Subscribe subscribed nothing: this call's answer lists no update
                r = await small.request("CallReducer", reducer="fill", args=[2, 1, 10])
                assert r["status"] == "committed" and r["updates"] == []
                # an update the client must have, with a row over its limit: it is disconnected
                a = await small.request("Subscribe", queries=["SELECT * FROM blob WHERE batch = 3"])
                assert a["type"] == "SubscribeApplied" and a["queries"][0]["rows"] == []
                await owner.request("CallReducer", reducer="fill", args=[3, 1, 100_000])
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await small.recv()
                assert closed.value.reason.code == 4009 and "65,536" in closed.value.reason.reason


async def test_long_log_lines_and_a_long_error_message_stay_within_a_clients_limit(tmp_path, bulk_wasm):
    with trio.fail_after(TIMEOUT * 2):
        async with running(tmp_path) as (_, port):
            async with raw(port) as owner:
                await owner.request("Publish", wasm=bulk_wasm)
                async with raw(port, max_message=SMALL, token=owner.token) as small:
                    follow = await small.send("Logs", limit=0, follow=True)
                    assert (await small.recv())["entries"] == []
                    # 3 lines of 100,000 bytes a call, 4 calls; each fails with a 100,000-byte message;
                    # the followed lines come as they are written, each cut to fit
                    lines = []
                    for _ in range(4):
                        rid = await small.send("CallReducer", reducer="shout", args=[3, 100_000])
                        while True:
                            raw_msg = await small.ws.get_message()
                            assert len(raw_msg) <= SMALL
                            m = decode_server(raw_msg)
                            if m["request_id"] == follow:
                                assert len(m["entries"]) == 1
                                lines.append(m["entries"][0]["message"])
                            elif m["request_id"] == rid:
                                break
                        assert m["status"] == "failed" and m["message"].startswith("abcdefghij")
                        assert m["message"].endswith("… (cut: the message is 100,000 bytes, at most 8,192 "
                                                     "are kept)")
                    while len(lines) < 12:
                        m = decode_server(await small.ws.get_message())
                        if m["request_id"] == follow:
                            lines.append(m["entries"][0]["message"])
                    assert all(s.endswith("… (cut: the line is 100,000 bytes)") for s in lines)
                    assert all(len(s.encode()) <= SMALL // 4 + 40 for s in lines)
                    rid = await small.send("Logs", limit=1000, follow=False)
                    while True:
                        got = await small.ws.get_message()
                        m = decode_server(got)
                        if m["request_id"] == rid:
                            break
                    assert len(got) <= SMALL and 1 <= len(m["entries"]) < 12      # the newest that fit
                # a client with a large limit gets all twelve whole
                r = await owner.request("Logs", limit=1000, follow=False)
                assert [len(e["message"]) for e in r["entries"]] == [100_000] * 12
