"""Commit-log record format: round trips, damage detection, and the documented vectors."""

import json
import pathlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stdb
from stdb.storage import logformat as lf

VECTORS = pathlib.Path(__file__).parent / "vectors" / "log_records.json"


def _records():
    names = st.text(min_size=0, max_size=12)
    rows = st.lists(st.binary(max_size=30), max_size=4)
    change = st.builds(lf.TableChange, st.text(min_size=1, max_size=10), rows, rows)
    return st.builds(
        lf.LogRecord,
        offset=st.integers(0, 2**64 - 1),
        timestamp=st.integers(-(2**63), 2**63 - 1),
        caller=st.none() | st.binary(min_size=32, max_size=32),
        reducer=names,
        args=st.binary(max_size=40),
        changes=st.lists(change, max_size=3),
    )


@given(_records())
@settings(max_examples=300)
def test_round_trip(rec):
    data = lf.encode_record(rec)
    assert lf.decode_record(rec.offset, data) == rec


@given(_records(), st.data())
@settings(max_examples=300)
def test_any_single_byte_flip_or_truncation_is_detected(rec, data):
    raw = lf.encode_record(rec)
    pos = data.draw(st.integers(0, len(raw) - 1))
    bit = data.draw(st.integers(0, 7))
    flipped = bytearray(raw)
    flipped[pos] ^= 1 << bit
    with pytest.raises(stdb.StorageError):
        lf.decode_record(rec.offset, bytes(flipped))
    cut = data.draw(st.integers(0, len(raw) - 1))
    with pytest.raises(stdb.StorageError):
        lf.decode_record(rec.offset, raw[:cut])


def test_record_under_the_wrong_key_is_refused():
    raw = lf.encode_record(lf.LogRecord(7, 0))
    with pytest.raises(stdb.StorageError, match="offset 8 says it is offset 7"):
        lf.decode_record(8, raw)


def test_schema_records_round_trip():
    schema = stdb.TableSchema("t", [("id", "u64", True), ("tags", "array<string>")], primary_key="id",
                              indexes=[stdb.IndexDef("by_tags", "tags")])
    rec = lf.LogRecord(3, 99, kind=lf.KIND_CREATE_TABLE, schema=schema)
    assert lf.decode_record(3, lf.encode_record(rec)).schema == schema
    drop = lf.LogRecord(4, 100, kind=lf.KIND_DROP_TABLE, table="t")
    assert lf.decode_record(4, lf.encode_record(drop)).table == "t"


def test_offset_keys_sort_by_offset():
    offs = [0, 1, 255, 256, 2**32, 2**64 - 1]
    assert sorted(lf.offset_key(o) for o in offs) == [lf.offset_key(o) for o in offs]
    assert [lf.key_offset(lf.offset_key(o)) for o in offs] == offs


def test_documented_vectors():
    vectors = json.loads(VECTORS.read_text())
    doc = (pathlib.Path(__file__).parent.parent / "docs" / "log-format.md").read_text()
    assert vectors
    for v in vectors:
        rec = _from_json(v["record"])
        assert lf.encode_record(rec).hex() == v["hex"], v["name"]
        assert lf.decode_record(rec.offset, bytes.fromhex(v["hex"])) == rec
        assert v["hex"] in doc.replace("\n", "").replace(" ", ""), f"vector {v['name']} missing from the doc"


def _from_json(d):
    if d["kind"] == "create_table":
        from stdb._core.schema import schema_from_dict
        return lf.LogRecord(d["offset"], d["timestamp"], kind=lf.KIND_CREATE_TABLE,
                            schema=schema_from_dict(d["schema"]))
    return lf.LogRecord(
        d["offset"], d["timestamp"],
        caller=bytes.fromhex(d["caller"]) if d["caller"] else None,
        reducer=d["reducer"], args=bytes.fromhex(d["args"]),
        changes=[lf.TableChange(c["table"], [bytes.fromhex(r) for r in c["deletes"]],
                                [bytes.fromhex(r) for r in c["inserts"]]) for c in d["changes"]])


def _slow_tx(body):
    """The Python parse of a TX body, under the offset the body claims (None: refused)."""
    try:
        return lf._decode_body(int.from_bytes(body[:8], "little"), lf.KIND_TX, memoryview(body))
    except stdb.StorageError:
        return None


def _as_record(fast):
    off, ts, caller, reducer, args, changes = fast
    return lf.LogRecord(offset=off, timestamp=ts, caller=caller, reducer=reducer, args=args,
                        changes=[lf.TableChange(*ch) for ch in changes])


@given(_records(), st.data())
@settings(max_examples=400)
def test_the_c_parse_of_a_tx_body_agrees_with_the_step_by_step_one(rec, data):
    """decode_record parses TX bodies in C (logrec.tx_body) and falls back to the Python parse
    to name a problem: on intact and on damaged bodies (no CRC in the way), the C parse must
    return what the Python one returns, and refuse exactly what it refuses."""
    from stdb._core.logrec import tx_body
    body = bytearray(lf.encode_record(rec)[lf.HEADER_SIZE:])
    fast = tx_body(bytes(body))
    assert fast is not None and _as_record(fast) == rec == _slow_tx(bytes(body))
    for _ in range(data.draw(st.integers(1, 3))):
        how = data.draw(st.sampled_from(["flip", "cut", "grow", "byte"]))
        if how == "cut" and body:
            del body[data.draw(st.integers(0, len(body) - 1)):]
        elif how == "grow":
            body += data.draw(st.binary(min_size=1, max_size=8))
        elif body:
            pos = data.draw(st.integers(0, len(body) - 1))
            if how == "flip":
                body[pos] ^= 1 << data.draw(st.integers(0, 7))
            else:     # a length or count field set to something near a boundary
                body[pos] = data.draw(st.sampled_from([0, 1, 2, 0x7F, 0x80, 0xFE, 0xFF]))
    fast = tx_body(bytes(body))
    slow = _slow_tx(bytes(body))
    assert (fast is None) == (slow is None)
    if fast is not None:
        assert _as_record(fast) == slow


def test_the_c_parse_agrees_on_every_single_byte_change_of_a_body():
    """Every byte of two TX bodies set to each of a few telling values (flags, lengths and
    counts at their edges), and every truncation: both parses accept or refuse alike."""
    from stdb._core.logrec import tx_body
    recs = [lf.LogRecord(3, -5, caller=bytes(range(32)), reducer="move", args=b"\x01\x02",
                         changes=[lf.TableChange("pos", [b"\x00" * 9], [b"\x01" * 9, b""]),
                                  lf.TableChange("é", [], [b"x"])]),
            lf.LogRecord(2**40, 7, changes=[lf.TableChange("t", [b"ab"], [])])]
    checked = 0
    for rec in recs:
        body = lf.encode_record(rec)[lf.HEADER_SIZE:]
        variants = [body[:cut] for cut in range(len(body))]
        for pos in range(len(body)):
            for v in (0, 1, 2, 3, 0x7F, 0x80, 0xC3, 0xFE, 0xFF):
                b = bytearray(body)
                b[pos] = v
                variants.append(bytes(b))
        for b in variants:
            fast, slow = tx_body(b), _slow_tx(b)
            assert (fast is None) == (slow is None), b
            if fast is not None:
                assert _as_record(fast) == slow
                checked += 1
    assert checked > 100       # some changes leave a valid body (e.g. a row byte)


@given(st.lists(_records(), min_size=1, max_size=4), st.data())
@settings(max_examples=300)
def test_a_log_value_checked_and_decoded_in_c_agrees_with_record_by_record(recs, data):
    """Recovery checks (check_value) and decodes (decode_value) whole log values in C and falls
    back to split_value + check_header / decode_record when they refuse: on intact and damaged
    values both ways must agree."""
    from stdb._core.logrec import check_value, decode_value
    from stdb.storage.commitlog import split_value
    first = data.draw(st.integers(0, 2**40))
    if data.draw(st.booleans()):           # a record that is not a transaction, somewhere
        i = data.draw(st.integers(0, len(recs) - 1))
        recs[i] = lf.LogRecord(0, 1, kind=lf.KIND_DROP_TABLE, table="t")
    for i, rec in enumerate(recs):
        rec.offset = first + i
    value = bytearray(b"".join(lf.encode_record(r) for r in recs))
    if data.draw(st.booleans()):
        pos = data.draw(st.integers(0, len(value) - 1))
        value[pos] ^= 1 << data.draw(st.integers(0, 7))
    if data.draw(st.booleans()):
        del value[data.draw(st.integers(0, len(value))):]
    value = bytes(value)

    pieces = split_value(first, value)
    def header_ok(off, piece):
        try:
            lf.check_header(off, piece)
            return True
        except stdb.StorageError:
            return False
    n = check_value(value)
    if all(header_ok(off, p) for off, p in pieces) and value:
        assert n == len(pieces)
    else:
        assert n == -1

    def decoded(off, piece):
        try:
            return lf.decode_record(off, piece)
        except stdb.StorageError:
            return None
    slow = [decoded(off, p) for off, p in pieces]
    fast = decode_value(first, value)
    if value and all(r is not None and r.kind == lf.KIND_TX for r in slow):
        assert fast is not None and [_as_record(f) for f in fast] == slow
        assert decode_value(first + 1, value) is None       # records under the wrong offsets
    else:
        assert fast is None


def test_the_c_check_knows_every_record_kind():
    """logrec keeps its own copy of the version and the kinds: each kind's record passes it."""
    from stdb._core.logrec import record_kind
    schema = stdb.TableSchema("t", [("id", "u64")], primary_key="id")
    recs = [lf.LogRecord(1, 0), lf.LogRecord(2, 0, kind=lf.KIND_CREATE_TABLE, schema=schema),
            lf.LogRecord(3, 0, kind=lf.KIND_DROP_TABLE, table="t"),
            lf.LogRecord(4, 0, kind=lf.KIND_ALTER_TABLE, schema=schema)]
    assert {r.kind for r in recs} == set(lf.KIND_NAMES)
    for r in recs:
        assert record_kind(lf.encode_record(r)) == r.kind


def test_the_c_record_builder_writes_the_documented_vectors():
    """The TX vectors again, built the way a commit builds them over native tables: the write
    set's delta framed into a record in C (stdb/_core/txn.pyx), and by the pure-Python twin."""
    from stdb._core import reference
    from stdb._core.schema import schema_from_dict
    from stdb.storage.datastore import Datastore

    vectors = json.loads(VECTORS.read_text())
    schema = schema_from_dict(vectors[0]["record"]["schema"])
    txs = [v for v in vectors if v["record"]["kind"] == "tx"]
    assert len(txs) == 2
    for factory in (None, reference.Table):
        ds = Datastore(factory)
        ds.create_table(schema)
        assert ds.native == (factory is None)
        for v in txs:
            d = v["record"]
            tx = ds.begin()
            (ch,) = d["changes"]
            codec = ds.table("acct").codec
            for r in ch["inserts"]:              # an update is logged as a delete and an insert
                row = codec.decode(bytes.fromhex(r))
                if ch["deletes"]:
                    assert tx.update("acct", row) == codec.decode(bytes.fromhex(ch["deletes"][0]))
                else:
                    tx.insert("acct", row)
            got = tx.encode_record(d["offset"], d["timestamp"],
                                   bytes.fromhex(d["caller"]) if d["caller"] else None,
                                   d["reducer"], bytes.fromhex(d["args"]))
            assert got.hex() == v["hex"], (v["name"], factory)
            tx.commit()
