"""The native host (stdb/module/_host.pyx) against its pure-Python twin (stdb/module/host.py):
random sequences of imports — good and bad rows, keys, ids, flags and buffer sizes — give the
same results, the same bytes, the same error_detail text and the same tables.  The twin runs
over the reference tables (stdb/_core/reference.py), the native host over the native ones."""

from __future__ import annotations

import logging
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from stdb import Column, Datastore, IndexDef, RowCodec, TableSchema
from stdb._core import reference
from stdb.module._host import NativeHost
from stdb.module.describe import ModuleSchema
from stdb.module.host import Limits, ModuleHost

ITEM = TableSchema("item",
                   [Column("id", "u64", auto_inc=True), Column("kind", "u8"), Column("name", "string"),
                    Column("score", "option<f64>")],
                   primary_key="id", indexes=[IndexDef("by_kind", ("kind", "name")),
                                              IndexDef("by_name", "name", "hash", unique=True)])
TAG = TableSchema("tag", [Column("k", "i32"), Column("v", "array<u8>")],
                  indexes=[IndexDef("by_k", "k", "hash")])
SCHEMA = ModuleSchema((ITEM, TAG), (), {})
ITEM_CODEC = RowCodec("item", ["id", "kind", "name", "score"], ["u64", "u8", "string", "option<f64>"])
TAG_CODEC = RowCodec("tag", ["k", "v"], ["i32", "array<u8>"])
KEYS = {(0, 0): RowCodec("k", ["id"], ["u64"]), (0, 1): RowCodec("k", ["kind", "name"], ["u8", "string"]),
        (0, 2): RowCodec("k", ["name"], ["string"]), (1, 0): RowCodec("k", ["k"], ["i32"])}
NAMES = st.sampled_from(["a", "b", "c", "", "é", "a\x00"])


def hosts():
    out = []
    for factory, cls in ((None, NativeHost), (reference.Table, ModuleHost)):
        ds = Datastore(table_factory=factory)
        ds.create_table(ITEM)
        ds.create_table(TAG)
        h = cls(SCHEMA, Limits(max_rows_per_batch=4, max_row_bytes=200), logging.getLogger("test"))
        tx = ds.begin()
        h.begin_call(tx, "r", b"\x01" * 32, b"\x02" * 16, 5, 7)
        out.append((h, ds, tx))
    return out


@st.composite
def item_rows(draw):
    return ITEM_CODEC.encode((draw(st.sampled_from([0, 0, 1, 2, 3, 50])), draw(st.integers(0, 3)),
                              draw(NAMES), draw(st.none() | st.sampled_from([0.0, -0.0, 1.5]))))


@st.composite
def tag_rows(draw):
    return TAG_CODEC.encode((draw(st.integers(-2, 2)), draw(st.lists(st.integers(0, 255), max_size=3))))


def damaged(data: bytes, draw) -> bytes:
    how = draw(st.sampled_from(["keep", "keep", "keep", "cut", "flip", "grow"]))
    if how == "cut" and data:
        return data[:draw(st.integers(0, len(data) - 1))]
    if how == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1:]
    if how == "grow":
        return data + b"\xff" * 300
    return data


@st.composite
def keys(draw, tid, iid, k=None):
    codec = KEYS.get((tid, iid), KEYS[(0, 0)])
    vals = {"id": draw(st.sampled_from([0, 1, 2, 3, 50])), "kind": draw(st.integers(0, 3)),
            "name": draw(NAMES), "k": draw(st.integers(-2, 2))}
    names = list(codec.names)[:k] if k else list(codec.names)
    part = RowCodec("k", names, [str(t) for t in codec.types][:len(names)])
    return part.encode(tuple(vals[n] for n in names))


def drain(h, handle):
    """(the first non-positive answer, every row it returned) of iterator ``handle``."""
    rows = []
    while True:
        r, data = h.iter_next(handle, 1 << 16)
        if r <= 0:
            return r, rows
        pos = 0
        while pos < len(data):
            (n,) = struct.unpack_from("<I", data, pos)
            rows.append(data[pos + 4:pos + 4 + n])
            pos += 4 + n


def contents(ds):
    return {name: sorted(ds.table(name).codec.encode(r) for r in ds.scan(name))
            for name in ("item", "tag")} if not ds.in_transaction else None


@settings(max_examples=300)
@given(st.data())
def test_the_native_host_answers_as_its_twin(data):
    draw = data.draw
    pair = hosts()
    open_iters = []
    try:
        for _ in range(draw(st.integers(1, 30))):
            op = draw(st.sampled_from(["insert", "insert", "update", "delete", "seek", "find", "range",
                                       "scan", "next", "next", "close", "table_id", "index_id"]))
            tid = draw(st.sampled_from([0, 0, 0, 1, 1, 2, -1]))
            iid = draw(st.sampled_from([0, 0, 1, 2, 3]))
            if op in ("insert", "update"):
                row = draw(item_rows()) if tid == 0 else draw(tag_rows())
                args = (tid, damaged(row, draw))
            elif op in ("delete", "seek"):
                args = (tid, iid, damaged(draw(keys(tid, iid)), draw))
            elif op == "find":
                cap = draw(st.sampled_from([0, 3, 4, 12, 64]))
                args = (tid, iid, damaged(draw(keys(tid, iid)), draw), cap)
            elif op == "range":
                tid, iid = draw(st.sampled_from([(0, 1), (0, 1), (0, 1), (0, 0), (1, 0), (0, 2)]))
                flags = draw(st.sampled_from([0, 1 | 2 | (1 << 8), 1 | (1 << 8), 4 | 8 | (1 << 16),
                                              1 | 2 | (2 << 8) | 4 | (2 << 16), 4 | (1 << 16), 1 | (3 << 8),
                                              1 << 4, 1 | 2 | (1 << 8) | 4 | 8 | (1 << 16)]))
                args = (tid, iid, draw(keys(tid, iid, 1)) + draw(st.sampled_from([b"", b"\x00"])),
                        draw(keys(tid, iid, 2 if iid == 1 else 1)), flags)
            elif op == "scan":
                args = (tid,)
            elif op in ("next", "close"):
                h = draw(st.sampled_from(open_iters + [0, 99] if open_iters else [0, 1]))
                args = (h,)
            elif op == "table_id":
                args = (draw(st.sampled_from([b"item", b"tag", b"nope", b"item\xff"])),)
            else:
                args = (tid, draw(st.sampled_from([b"pk", b"by_kind", b"by_name", b"by_k", b"zz"])))
            if op == "next":
                # the two tables keep rows in different storage orders, so an iterator's rows
                # are compared as a whole (drained): the same rows, as of its creation
                got = [drain(h, args[0]) for h, _, _ in pair]
                got = [(g[0], sorted(g[1])) for g in got]
                assert got[0] == got[1], (op, args, got)
                continue
            name = {"close": "iter_close"}.get(op, op)
            got = [getattr(h, name)(*args) for h, _, _ in pair]
            errs = [h.last_error for h, _, _ in pair]
            if op == "find" and (tid, iid) == (1, 0) and got[0][0] > 0 and got[1][0] > 0:
                # a non-unique index: "the first row" with the key is in storage order
                assert TAG_CODEC.decode(got[0][1])[0] == TAG_CODEC.decode(got[1][1])[0]
                continue
            assert got[0] == got[1], (op, args, got, errs)
            if got[0] != got[1] or (not isinstance(got[0], tuple) and got[0] is not None and got[0] < 0) or \
                    (isinstance(got[0], tuple) and got[0][0] < 0):
                assert errs[0] == errs[1], (op, args, errs)
            if op in ("seek", "range", "scan") and got[0] > 0:
                open_iters.append(got[0])
        for _, _, tx in pair:
            tx.commit()
        assert contents(pair[0][1]) == contents(pair[1][1])
    finally:
        for _, _, tx in pair:
            if tx.is_open:
                tx.rollback()


def test_error_detail_text_is_the_twins():
    pair = hosts()
    out = []
    for h, _, _ in pair:
        h.insert(0, ITEM_CODEC.encode((0, 1, "a", None)))
        r = [h.insert(0, ITEM_CODEC.encode((0, 1, "a", None)))[0], h.last_error,
             h.insert(0, b"\x00\x01")[0], h.last_error,
             h.index_id(0, b"zz"), h.last_error,
             h.range(0, 2, b"", b"", 0), h.last_error,
             h.find(0, 0, struct.pack("<Q", 1), 3), h.last_error]
        out.append(r)
    assert out[0] == out[1]
    assert b"unique index 'by_name' (name) already has a row with key ('a')" in out[0][1]


def test_an_exhausted_u64_sequence_stays_exhausted_through_its_saved_state():
    """Found by the host fuzz target (fuzz/fuzz_host.py): a row inserted with id 2**64 - 1 used up
    item's u64 sequence; the native table reported its state as (0,) (max + 1 wrapped in C),
    the reference as (2**64,).  That state is what snapshots store and alter_table copies: restored,
    the native sequence started again at 0 and handed out ids 0, 1, ... instead of refusing."""
    pair = hosts()
    for h, _, _ in pair:
        assert h.insert(0, ITEM_CODEC.encode((2**64 - 1, 1, "a", None)))[0] == 0
    for _, _, tx in pair:
        tx.commit()
    states = [ds.table("item").sequence_state() for _, ds, _ in pair]
    assert states[0] == states[1] == (2**64,)
    for (h, ds, _), state in zip(pair, states, strict=True):
        ds.table("item").restore_sequences(state)          # as a snapshot's recovery does
        tx = ds.begin()
        h.begin_call(tx, "r", b"\x01" * 32, b"\x02" * 16, 6, 7)
        assert h.insert(0, ITEM_CODEC.encode((0, 1, "b", None)))[0] == -3          # BAD_ROW
        assert b"auto-increment sequence is exhausted" in h.last_error
        tx.rollback()
        assert ds.table("item").sequence_state() == (2**64,)
