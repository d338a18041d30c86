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
