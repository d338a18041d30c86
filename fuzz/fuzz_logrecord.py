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
* replayed as recovery replays a log value into native tables — ``logrec.apply_value``, the C
  replay (``table.tbl_apply_change``: the one-pass insert of an integer-key table, updates
  paired with their deletes, the one-row-at-a-time path), with a record it hands back (not a TX
  record, or one it cannot parse) decoded and applied by ``recovery.apply_record`` — it ends
  where the reference replay does: every piece decoded by ``logformat`` and applied with
  ``apply_record`` to the pure-Python tables (``stdb._core.reference``), and to the Cython
  tables (their ``apply_encoded``).  Each starts from the same three tables holding the same rows
  (the documented vectors' ``acct``, one-pass insert shape; ``named``, a string key, pairable;
  ``uniq``, a second unique index, neither).  All three succeed with the same row operations
  and the same tables, rows and sequences, or all three refuse; a refusal is a ``StdbError``
  (recovery reports those as StorageError), nothing else.

    python -m fuzz.fuzz_logrecord fuzz/corpus/logrecord -max_total_time=60
"""

from __future__ import annotations

import struct

from fuzz._harness import fuzz, instrument_module, instrumented

with instrumented(__name__ == "__main__"):
    import crc32c

    from stdb._core import reference
    from stdb._core.logrec import apply_value, check_value, decode_value, tx_body
    from stdb._core.schema import Column, IndexDef, TableSchema
    from stdb.errors import StdbError, StorageError
    from stdb.storage import logformat as lf
    from stdb.storage.commitlog import split_value
    from stdb.storage.datastore import Datastore
    from stdb.storage.recovery import apply_record

ACCT = TableSchema("acct", [Column("id", "u64", auto_inc=True), Column("balance", "i64"),
                            Column("name", "string")], primary_key="id")
# a string primary key and a non-unique index: replay pairs updates, not the one-pass insert
NAMED = TableSchema("named", [Column("name", "string"), Column("n", "i32"), Column("tags", "array<u8>")],
                    primary_key="name", indexes=[IndexDef("by_n", "n")])
# a second unique index: replay neither pairs updates nor inserts in one pass
UNIQ = TableSchema("uniq", [Column("k", "i16"), Column("code", "string"), Column("note", "option<string>")],
                   primary_key="k", indexes=[IndexDef("by_code", "code", "hash", unique=True)])
TABLES = (ACCT, NAMED, UNIQ)
# the rows every replay starts from (no floats: the reference finds a row to delete by value,
# where 0.0 == -0.0, the C replay by its bytes)
BASE: dict[str, list[tuple]] = {
    "acct": [(i, i * 10 - 5, f"n{i}") for i in range(3)],
    "named": [(f"k{i}", i % 2, list(range(i))) for i in range(3)],
    "uniq": [(i - 1, f"c{i}", None if i else "z") for i in range(3)],
}
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
    _replays_agree(offset, value, pieces)
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


def base_datastore(factory: object = None) -> Datastore:
    """A datastore (native tables, or ``factory``'s) with TABLES holding the BASE rows."""
    ds = Datastore(factory)  # type: ignore[arg-type]
    for schema in TABLES:
        ds.create_table(schema)
        t = ds.table(schema.name)
        t.apply_encoded([], [t.codec.encode(r) for r in BASE[schema.name]])
    return ds


def _state(ds: Datastore) -> dict[str, tuple[list[str], tuple[int, ...]]]:
    """Each table's rows (as a sorted multiset) and sequences."""
    return {name: (sorted(repr(r) for _, r in ds.table(name).scan()), tuple(ds.table(name).sequence_state()))
            for name in sorted(ds.table_names)}


def _c_replay(ds: Datastore, first: int, value: bytes, pieces: list) -> tuple[bool, int]:
    """``recovery._replay`` of one log value stored under ``first`` (every record of it) into
    native tables: the C replay, and the records it hands back applied the step-by-step way.
    (whether it applied all, the row operations)."""
    stop = first + len(pieces) - 1
    frm, ops = first, 0
    try:
        while frm <= stop:
            _applied, n, status, detail = apply_value(first, value, frm, stop, ds._tables)
            ops += n
            if status == 0:
                break
            if status == 2:
                return False, ops
            assert status in (1, 3), status
            assert first <= detail <= stop and detail >= frm, (frm, stop, status, detail)
            frm = detail
            raw = [r for o, r in pieces if o == frm]
            ops += apply_record(ds, lf.decode_record(frm, raw[0]))
            frm += 1
    except StdbError:
        return False, ops
    return True, ops


def _py_replay(ds: Datastore, pieces: list) -> tuple[bool, int]:
    """Every piece decoded by ``logformat`` and applied by ``apply_record``."""
    ops = 0
    try:
        for off, raw in pieces:
            ops += apply_record(ds, lf.decode_record(off, raw))
    except StdbError:
        return False, ops
    return True, ops


def _replays_agree(offset: int, value: bytes, pieces: list) -> None:
    if not value or offset + len(pieces) > 1 << 64:
        return                  # the log's offsets are u64: recovery never reads past the last
    native, cython, ref = base_datastore(), base_datastore(), base_datastore(reference.Table)
    c_ok, c_ops = _c_replay(native, offset, value, pieces)
    n_ok, n_ops = _py_replay(cython, pieces)
    r_ok, r_ops = _py_replay(ref, pieces)
    assert c_ok == n_ok == r_ok, f"replays differ: C {c_ok}, Cython apply_encoded {n_ok}, reference {r_ok}"
    if not r_ok:
        return                  # recovery stops with a StorageError: the tables are not used
    assert c_ops == n_ops == r_ops, (c_ops, n_ops, r_ops)
    want = _state(ref)
    assert _state(native) == want, (_state(native), want)
    assert _state(cython) == want, (_state(cython), want)
    for name in native.table_names:
        native.table(name).check_invariants()


instrument_module(globals(), __name__ == "__main__")


def main() -> None:
    fuzz(TestOneInput)


if __name__ == "__main__":
    main()
