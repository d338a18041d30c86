"""The "stdb" imports, driven directly: every import, every error code, iterator batching and
snapshot semantics (docs/abi.md) — of the native host (stdb/module/_host.pyx, what modules run
on) and of its pure-Python twin (stdb/module/host.py), the same answers from both."""

from __future__ import annotations

import logging
import struct

import pytest

from stdb import Column, Datastore, IndexDef, RowCodec, TableSchema
from stdb.module._host import NativeHost
from stdb.module.describe import ModuleSchema
from stdb.module.host import ERR, Limits, ModuleHost

ITEM = TableSchema("item",
                   [Column("id", "u64", auto_inc=True), Column("kind", "u8"), Column("name", "string")],
                   primary_key="id", indexes=[IndexDef("by_kind", ("kind", "name")),
                                              IndexDef("by_name", "name", "hash", unique=True)])
CODEC = RowCodec("item", ["id", "kind", "name"], ["u64", "u8", "string"])
U8 = RowCodec("k", ["kind"], ["u8"])
U8S = RowCodec("k", ["kind", "name"], ["u8", "string"])
U64 = RowCodec("k", ["id"], ["u64"])
STR = RowCodec("k", ["name"], ["string"])


HOSTS = {"native": NativeHost, "python": ModuleHost}


@pytest.fixture(params=sorted(HOSTS))
def host(request):
    ds = Datastore()
    ds.create_table(ITEM)
    h = HOSTS[request.param](ModuleSchema((ITEM,), (), {}), Limits(max_rows_per_batch=3, max_row_bytes=100),
                             logging.getLogger("test"))
    tx = ds.begin()
    h.begin_call(tx, "r", b"\x01" * 32, b"\x02" * 16, 1234, 99)
    yield h
    if tx.is_open:
        tx.rollback()


def frames(buf: bytes) -> list[tuple]:
    out, pos = [], 0
    while pos < len(buf):
        (n,) = struct.unpack_from("<I", buf, pos)
        out.append(CODEC.decode(buf[pos + 4:pos + 4 + n]))
        pos += 4 + n
    return out


def drain(h: ModuleHost, it: int, cap: int = 1 << 16) -> list[tuple]:
    got = []
    while True:
        n, data = h.iter_next(it, cap)
        assert n >= 0, n
        if n == 0:
            return got
        assert n == len(data)
        got += frames(data)


def fill(h: ModuleHost, names=("a", "b", "c", "d", "e")) -> None:
    for i, name in enumerate(names):
        r, out = h.insert(0, CODEC.encode((0, i % 2, name)))
        assert r == 0 and CODEC.decode(out)[0] == i + 1           # auto_inc written back


def test_names(host):
    assert host.table_id(b"item") == 0
    assert host.table_id(b"nope") == ERR["NO_SUCH_TABLE"] and b"nope" in host.last_error
    assert [host.index_id(0, n) for n in (b"pk", b"by_kind", b"by_name")] == [0, 1, 2]
    assert host.index_id(0, b"zz") == ERR["NO_SUCH_INDEX"]
    assert host.index_id(5, b"pk") == ERR["NO_SUCH_TABLE"]


def test_insert_errors_change_nothing(host):
    fill(host, ["a"])
    assert host.insert(0, b"\x00\x01") == (ERR["BAD_ROW"], None)
    assert b"truncated" in host.last_error
    assert host.insert(0, CODEC.encode((0, 1, "a")))[0] == ERR["UNIQUE_VIOLATION"]
    assert b"by_name" in host.last_error
    assert host.insert(0, CODEC.encode((0, 1, "x" * 200)))[0] == ERR["ROW_TOO_LARGE"]
    assert host.insert(3, CODEC.encode((0, 1, "q")))[0] == ERR["NO_SUCH_TABLE"]
    assert drain(host, host.scan(0)) == [(1, 0, "a")]


def test_update_and_delete(host):
    fill(host)
    assert host.update(0, CODEC.encode((2, 7, "B"))) == (1, None)
    assert host.update(0, CODEC.encode((99, 7, "Z"))) == (0, None)          # no such key: nothing
    assert host.update(0, CODEC.encode((3, 7, "B")))[0] == ERR["UNIQUE_VIOLATION"]
    assert host.delete(0, 0, U64.encode((1,))) == 1
    assert host.delete(0, 0, U64.encode((1,))) == 0
    assert host.delete(0, 1, U8S.encode((0, "c"))) == 1                     # by a btree key
    assert host.delete(0, 1, U8.encode((0,))) == ERR["BAD_ROW"]             # delete needs the whole key
    assert host.delete(0, 9, U64.encode((1,))) == ERR["NO_SUCH_INDEX"]
    assert drain(host, host.scan(0)) == [(2, 7, "B"), (4, 1, "d"), (5, 0, "e")]


def test_seek_range_and_flags(host):
    fill(host)
    assert drain(host, host.seek(0, 2, STR.encode(("c",)))) == [(3, 0, "c")]
    assert drain(host, host.seek(0, 0, U64.encode((42,)))) == []
    lo, hi = U8.encode((0,)), U8S.encode((1, "b"))
    every = drain(host, host.range(0, 1, b"", b"", 0))
    assert [r[2] for r in every] == ["a", "c", "e", "b", "d"]                # (kind, name) order
    flags = 1 | 2 | (1 << 8) | 4 | 8 | (2 << 16)                             # kind >= 0 .. (1, "b") incl.
    assert [r[2] for r in drain(host, host.range(0, 1, lo, hi, flags))] == ["a", "c", "e", "b"]
    flags = 1 | (1 << 8)                                                     # kind > 0
    assert [r[2] for r in drain(host, host.range(0, 1, lo, b"", flags))] == ["b", "d"]
    assert host.range(0, 2, b"", b"", 0) == ERR["WRONG_INDEX_KIND"]
    assert host.range(0, 1, lo, b"", 1 | (3 << 8)) == ERR["BAD_ARGUMENT"]    # 3 columns of 2
    assert host.range(0, 1, lo, b"", 1 | (1 << 4)) == ERR["BAD_ARGUMENT"]    # unknown flag bit
    assert host.range(0, 1, b"\x00", b"", 1 | (2 << 8)) == ERR["BAD_ROW"]


def test_find_is_seek_next_and_close_in_one(host):
    fill(host)
    row = CODEC.encode((3, 0, "c"))
    assert host.find(0, 0, U64.encode((3,)), 100) == (len(row), row)          # primary key
    assert host.find(0, 2, STR.encode(("d",)), 100) == (len(CODEC.encode((4, 1, "d"))),
                                                         CODEC.encode((4, 1, "d")))   # unique index
    assert host.find(0, 0, U64.encode((42,)), 100) == (0, None)               # none
    # a non-unique index: the first row seek would give
    first = drain(host, host.seek(0, 1, U8S.encode((0, "e"))))[0]
    assert CODEC.decode(host.find(0, 1, U8S.encode((0, "e")), 100)[1]) == first
    assert host.find(0, 0, U64.encode((3,)), len(row) - 1) == (ERR["BUFFER_TOO_SMALL"],
                                                               struct.pack("<I", len(row)))
    assert host.find(0, 0, U64.encode((3,)), 2) == (ERR["BUFFER_TOO_SMALL"], None)
    assert b"needs" in host.last_error
    assert host.find(0, 0, U64.encode((3,)), len(row)) == (len(row), row)      # exactly fits
    assert host.find(7, 0, U64.encode((3,)), 100) == (ERR["NO_SUCH_TABLE"], None)
    assert host.find(0, 9, U64.encode((3,)), 100) == (ERR["NO_SUCH_INDEX"], None)
    assert host.find(0, 0, b"\x01", 100) == (ERR["BAD_ROW"], None)             # not a u64 key
    # the reducer's own writes are seen (find reads now; an iterator keeps its creation's rows)
    assert host.update(0, CODEC.encode((3, 1, "c2")))[0] == 1
    assert CODEC.decode(host.find(0, 0, U64.encode((3,)), 100)[1]) == (3, 1, "c2")
    host.end_call()
    assert host.find(0, 0, U64.encode((3,)), 100)[0] == ERR["NO_TRANSACTION"]


def test_iterator_batches_and_buffer_too_small(host):
    fill(host)
    it = host.scan(0)
    n, data = host.iter_next(it, 1 << 16)
    assert len(frames(data)) == 3                                            # max_rows_per_batch
    one = 4 + len(CODEC.encode((4, 1, "d")))
    assert host.iter_next(it, one - 1) == (ERR["BUFFER_TOO_SMALL"], struct.pack("<I", one))
    assert host.iter_next(it, 2) == (ERR["BUFFER_TOO_SMALL"], None)
    n, data = host.iter_next(it, one)                                        # exactly one fits
    assert frames(data) == [(4, 1, "d")]
    assert drain(host, it) == [(5, 0, "e")]
    assert host.iter_next(it, 100)[0] == ERR["NO_SUCH_ITER"]                 # closed when exhausted
    it2 = host.scan(0)
    assert host.iter_close(it2) == 0 and host.iter_close(it2) == ERR["NO_SUCH_ITER"]


def test_iterators_see_the_rows_of_their_creation(host):
    fill(host, ["a", "b", "c"])
    it = host.scan(0)
    n, data = host.iter_next(it, 4 + len(CODEC.encode((1, 0, "a"))))
    assert frames(data) == [(1, 0, "a")]
    host.delete(0, 0, U64.encode((2,)))                                      # writes after creation
    host.update(0, CODEC.encode((3, 9, "C")))
    host.insert(0, CODEC.encode((0, 1, "z")))
    assert drain(host, it) == [(2, 1, "b"), (3, 0, "c")]
    assert sorted(drain(host, host.scan(0))) == [(1, 0, "a"), (3, 9, "C"), (4, 1, "z")]   # storage order


def test_random_seed_is_derived_from_the_call_when_not_given(host):
    from stdb.module.host import call_seed
    host.begin_call(host.tx, "r", b"\x01" * 32, b"\x02" * 16, 1234)     # no seed given
    seed = host.random_seed
    assert seed == call_seed(1234, b"\x01" * 32, "r") and host.random_seed == seed
    assert call_seed(1235, b"\x01" * 32, "r") != seed and call_seed(1234, b"\x03" * 32, "r") != seed
    assert call_seed(1234, b"\x01" * 32, "s") != seed


def test_a_log_level_outside_a_byte_is_255_on_both_hosts(host):
    """The native host keeps a line's level in one byte; found by the host fuzz target: the
    twin labelled level -1 "-1" where the native host said "255"."""
    for level, label in ((4, "trace"), (5, "5"), (255, "255"), (-1, "255"), (1000, "255")):
        host.log(level, b"x")
        assert host.recent_logs[-1]["level"] == label, level


def test_context_and_end_of_call(host):
    assert (host.sender, host.connection_id, host.timestamp, host.random_seed) == \
        (b"\x01" * 32, b"\x02" * 16, 1234, 99)
    host.log(2, b"hello \xff")
    assert host.recent_logs[-1] == {"ts": 1234, "level": "info", "reducer": "r", "message": "hello \ufffd"}
    it = host.scan(0)
    host.end_call()
    assert host.iter_next(it, 100)[0] == ERR["NO_SUCH_ITER"]                 # iterators end with the call
    assert host.insert(0, CODEC.encode((0, 1, "q")))[0] == ERR["NO_TRANSACTION"]
    assert host.scan(0) == ERR["NO_TRANSACTION"]
