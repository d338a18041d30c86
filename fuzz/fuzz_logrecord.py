"""Fuzz target: the commit-log record reader (stdb/storage/logformat.py, docs/log-format.md).

Input: one flags byte, then a stored record (header + body).  Random bytes never pass the
CRC32C, so with flag bit 0 set the harness first rewrites the header's length and CRC to match
the body — the fuzzer then explores the body parser and the row framing (``read_framed``, in
Cython).  The record is read under the offset its body claims (flag bit 1: one more, which
must be refused).

* ``decode_record`` returns a record or raises ``StorageError`` — nothing else;
* read as a log value (layout 2), ``split_value`` cuts it into pieces that cover it exactly
  (one piece when it is a whole record), and ``find_record_inside`` returns an offset or None;
* a decoded record encodes back to the same bytes (a create/alter-table record, whose schema
  JSON may be spelled differently, to a record that decodes equal);
* the C fast paths agree with the Python reader: ``logrec.tx_body`` parses a TX body exactly
  when ``_decode_body`` does, into the same fields; ``logrec.check_value`` and
  ``decode_value`` (recovery's whole-value check and decode) accept the value exactly when
  every piece passes ``check_header`` / decodes as a TX record;
* applying it to a datastore holding the table of the documented vectors (what recovery does,
  ``recovery.apply_record``) succeeds or raises a ``StdbError`` (recovery reports those as
  StorageError) — rows reach the Cython table's ``apply_encoded``.

    python -m fuzz.fuzz_logrecord fuzz/corpus/logrecord -max_total_time=60
"""

from __future__ import annotations

import struct

from fuzz._harness import fuzz, instrument_module, instrumented

with instrumented(__name__ == "__main__"):
    import crc32c

    from stdb._core.logrec import check_value, decode_value, tx_body
    from stdb._core.schema import Column, TableSchema
    from stdb.errors import StdbError, StorageError
    from stdb.storage import logformat as lf
    from stdb.storage.commitlog import split_value
    from stdb.storage.datastore import Datastore
    from stdb.storage.recovery import apply_record

ACCT = TableSchema("acct", [Column("id", "u64", auto_inc=True), Column("balance", "i64"),
                            Column("name", "string")], primary_key="id")
FIX_CRC = 1
WRONG_OFFSET = 2


def fix_header(value: bytes) -> bytes:
    """``value`` with the header's body length and CRC32C made to match its body."""
    if len(value) < lf.HEADER_SIZE:
        return value
    head8 = value[:4] + struct.pack("<I", len(value) - lf.HEADER_SIZE)
    body = value[lf.HEADER_SIZE:]
    return head8 + struct.pack("<I", crc32c.crc32c(body, crc32c.crc32c(head8))) + body


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    flags, value = data[0], data[1:]
    if flags & FIX_CRC:
        value = fix_header(value)
    offset = 0
    if len(value) >= lf.HEADER_SIZE + 8:
        (offset,) = struct.unpack_from("<Q", value, lf.HEADER_SIZE)
    if flags & WRONG_OFFSET:
        offset = (offset + 1) % (1 << 64)
    # the value as a log value of layout 2: its pieces cover it exactly, in order
    pieces = split_value(offset, value)
    assert b"".join(bytes(p) for _, p in pieces) == value
    assert [o for o, _ in pieces] == list(range(offset, offset + len(pieces)))
    hidden = lf.find_record_inside(value)
    assert hidden is None or 0 <= hidden < 1 << 64
    try:
        lf.check_header(offset, value)
        header_ok = True
    except StorageError:
        header_ok = False
    if header_ok:
        assert len(pieces) == 1        # a whole record is one piece
    _c_paths_agree(offset, value, pieces)
    try:
        rec = lf.decode_record(offset, value)
    except StorageError:
        return
    assert header_ok and not flags & WRONG_OFFSET
    again = lf.encode_record(rec)
    if rec.kind in (lf.KIND_CREATE_TABLE, lf.KIND_ALTER_TABLE):
        assert lf.decode_record(offset, again) == rec
    else:
        assert again == value, "a decoded record does not encode back to its bytes"
    ds = Datastore()
    ds.create_table(ACCT)
    try:
        apply_record(ds, rec)
    except StdbError:
        pass


def _c_paths_agree(offset: int, value: bytes, pieces: list) -> None:
    body = value[lf.HEADER_SIZE:]
    fast = tx_body(body)
    try:
        slow = lf._decode_body(int.from_bytes(body[:8], "little"), lf.KIND_TX, memoryview(body))
    except StorageError:
        slow = None
    assert (fast is None) == (slow is None)
    if fast is not None and slow is not None:
        assert (fast[:5], [lf.TableChange(*c) for c in fast[5]]) == (
            (slow.offset, slow.timestamp, slow.caller, slow.reducer, slow.args), slow.changes)
    oks, recs = [], []
    for off, piece in pieces:
        try:
            lf.check_header(off, piece)
            oks.append(True)
        except StorageError:
            oks.append(False)
        try:
            recs.append(lf.decode_record(off, piece))
        except StorageError:
            recs.append(None)
    assert check_value(value) == (len(pieces) if value and all(oks) else -1)
    decoded = decode_value(offset, value)
    if value and all(r is not None and r.kind == lf.KIND_TX for r in recs):
        assert decoded is not None and len(decoded) == len(recs)
    else:
        assert decoded is None


instrument_module(globals(), __name__ == "__main__")


def main() -> None:
    fuzz(TestOneInput)


if __name__ == "__main__":
    main()
