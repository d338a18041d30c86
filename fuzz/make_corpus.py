"""Write the seed corpora (fuzz/corpus/<target>/) and dictionaries (fuzz/dicts/) from the code.

    python -m fuzz seed          # rewrites fuzz/corpus/* and fuzz/dicts/*

Every seed is a valid input produced by stdb itself (encoded rows, client messages, the
documented log-record vectors, a real snapshot, the descriptions of the example modules) plus
a few near misses, so each fuzzer starts deep inside its format.  Files are named after what
they hold; the corpus is small on purpose (the fuzzers' own finds go to a scratch directory).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import cbor2

from fuzz import fuzz_host, fuzz_lane, fuzz_logrecord, fuzz_rowcodec, fuzz_snapshot, fuzz_txn
from stdb._core.codec import RowCodec
from stdb._core.schema import Column, IndexDef, TableSchema
from stdb.protocol import CLIENT_MESSAGES, encode
from stdb.storage import logformat as lf
from stdb.storage.datastore import Datastore
from stdb.storage.lmdbenv import SNAP_DB, SNAPMETA_DB, Env
from stdb.storage.snapshot import write_snapshot

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
DICTS = ROOT / "fuzz" / "dicts"
ID = bytes(range(32))

_SAMPLES: dict[str, list[Any]] = {
    "bool": [False, True], "i8": [-128, 127], "i16": [-32768, 7], "i32": [-1, 2**31 - 1],
    "i64": [-(2**63), 42], "u8": [0, 255], "u16": [258, 65535], "u32": [0, 2**32 - 1],
    "u64": [0, 2**64 - 1], "f32": [1.5, float("nan")], "f64": [-0.0, float("inf")],
    "string": ["", "é€😀"], "bytes": [b"", b"\x00\xff"], "identity": [ID, bytes(32)],
    "timestamp": [0, 1_700_000_000_000_000],
}


def _value(t: str, k: int) -> Any:
    if t.startswith("option<"):
        return None if k == 0 else _value(t[7:-1], k)
    if t.startswith("array<"):
        return [_value(t[6:-1], j) for j in range(k + 1)] if k else []
    return _SAMPLES[t][k % 2]


def rowcodec() -> dict[str, bytes]:
    out = {}
    for sel, (types, codec) in enumerate(zip(fuzz_rowcodec.SCHEMAS, fuzz_rowcodec.CODECS, strict=True)):
        for k in range(2):
            row = codec.encode(tuple(_value(t, k) for t in types))
            out[f"schema{sel}-row{k}"] = bytes([sel]) + row
        if row:
            out[f"schema{sel}-truncated"] = bytes([sel]) + row[:-1]
    # signalling f32 NaNs (kept bit for bit)
    out["f32-signalling-nan"] = bytes([7]) + bytes.fromhex("0100807f" "01000000" "0100807f" "01" "0100807f")
    # framed rows, as in the log and snapshots (read_framed: position byte, count byte)
    out["framed"] = bytes([2, 2]) + b"\x03\x00\x00\x00abc\x00\x00\x00\x00"
    return out


def _chat_messages() -> list[tuple[str, bytes]]:
    m = [
        ("call-send", encode("CallReducer", request_id=1, reducer="send_message", args=["hello"])),
        ("call-set-name", encode("CallReducer", request_id=2, reducer="set_name", args=["ann"])),
        ("call-wrong-type", encode("CallReducer", request_id=3, reducer="set_name", args=[7])),
        ("call-nested", encode("CallReducer", request_id=4, reducer="send_message",
                               args=[[1, [2.5, None, True, b"x"]]])),
        ("call-lifecycle", encode("CallReducer", request_id=5, reducer="on_connect", args=[])),
        ("call-unknown", encode("CallReducer", request_id=6, reducer="nope", args=[])),
        ("subscribe", encode("Subscribe", request_id=7, queries=["SELECT * FROM message",
                                                                  "SELECT * FROM user WHERE online"])),
        ("subscribe-join", encode("Subscribe", request_id=8, queries=[
            "SELECT m.* FROM message m JOIN user u ON m.sender = u.id WHERE u.online"])),
        ("unsubscribe", encode("Unsubscribe", request_id=9, query_ids=[1, 2])),
        ("query", encode("OneOffQuery", request_id=10,
                         sql="SELECT sender, COUNT(*) FROM message GROUP BY sender ORDER BY sender LIMIT 3")),
        ("dml", encode("OneOffQuery", request_id=11, sql="DELETE FROM message WHERE id < 3")),
        ("describe", encode("Describe", request_id=12)),
        ("logs", encode("Logs", request_id=13, limit=5, follow=True)),
        ("publish-empty-module", encode("Publish", request_id=14, wasm=b"\x00asm\x01\x00\x00\x00")),
        ("delete", encode("DeleteDatabase", request_id=15)),
        ("settings", encode("Settings", request_id=17, set={
            "clients.rows_examined": 50, "clients.calls_per_s": 2, "owner.seconds": None})),
        ("unknown-field", cbor2.dumps({"type": "Describe", "request_id": 1, "extra": 1})),
        ("not-a-map", cbor2.dumps([1, 2])),
        ("truncated", encode("Describe", request_id=16)[:-1]),
    ]
    return m


def protocol() -> dict[str, bytes]:
    out = {}
    for name, frame in _chat_messages():
        out[f"owner-{name}"] = b"\x01" + frame
        if name.startswith(("call", "subscribe", "query", "dml", "logs", "publish")):
            out[f"other-{name}"] = b"\x00" + frame
    return out


def lane() -> dict[str, bytes]:
    """CallReducer messages for fuzz_lane's reducers: ones the lane reads, ones it leaves."""
    def call(reducer: str, args: list, rid: int = 1) -> bytes:
        return encode("CallReducer", request_id=rid, reducer=reducer, args=args)
    every = [True, -128, -32768, -(1 << 31), -(1 << 63), 255, 65535, (1 << 32) - 1, (1 << 64) - 1, 1.5, "abc",
             b"\x00\xff", bytes(32), -1]
    return {
        "transfer": call("transfer", [1, 2, 3]),
        "transfer-big-id": call("transfer", [1, 2, 3], (1 << 64) - 1),
        "everything": call("everything", every),
        "everything-out-of-range": call("everything", [*every[:1], 128, *every[2:]]),
        "wrapped": call("wrapped", [None, "x", [1, -1], ["a", ""], [0.5, float("inf")], bytes(32), [True]]),
        "wrapped-nones": call("wrapped", [7, None, [], [], [], None, []]),
        "floats32": call("floats32", [1.5, [2.5]]),
        "none": call("none", []),
        "keys-reordered": cbor2.dumps({"args": [1, 2, 3], "reducer": "transfer", "type": "CallReducer",
                                       "request_id": 9}),
        "not-a-call": encode("Describe", request_id=3),
    }


def _masked(op: int, payload: bytes, fin: bool = True, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    n = len(payload)
    b0 = (0x80 if fin else 0) | op
    head = bytes([b0, 0x80 | n]) if n < 126 else bytes([b0, 0x80 | 126]) + n.to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i & 3] for i, b in enumerate(payload))


def websocket() -> dict[str, bytes]:
    """Client frames (mode byte 0: frames, 16 MiB messages) and handshakes (mode byte 1)."""
    call = encode("CallReducer", request_id=1, reducer="transfer", args=[1, 2, 3])
    hs = (b"GET /v1/database/bank HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
          b"Sec-WebSocket-Protocol: v1.cbor.stdb")
    return {
        "frames-binary": b"\x06" + _masked(2, call),
        "frames-pipelined": b"\x06" + _masked(2, call) * 3,
        "frames-fragmented": b"\x06" + _masked(2, call[:5], fin=False) + _masked(9, b"hi")
        + _masked(0, call[5:]),
        "frames-text": b"\x06" + _masked(1, "héllo".encode()),
        "frames-long": b"\x06" + _masked(2, bytes(300)),
        "frames-close": b"\x06" + _masked(8, b"\x03\xe8bye"),
        "frames-small-limit": b"\x00" + _masked(2, bytes(40)),
        "frames-continuing": b"\x0e" + _masked(0, b"end"),
        "handshake": b"\x01" + hs,
        "handshake-post": b"\x01" + hs.replace(b"GET", b"POST"),
    }


SQL = [
    "SELECT * FROM player",
    "SELECT * FROM player WHERE zone = 1",
    "SELECT * FROM player WHERE zone IN (1, 2) AND nick IS NOT NULL",
    "SELECT * FROM player WHERE zone BETWEEN 1 AND 3 OR NOT (id > 4)",
    "SELECT * FROM player WHERE name = 'it''s' AND score >= 1.5",
    "SELECT * FROM player WHERE owner = :sender",
    "SELECT * FROM player WHERE owner = X'0707070707070707070707070707070707070707070707070707070707070707'",
    "select id, name as n from player p where p.zone <> 2 order by name desc, id limit 5",
    "SELECT zone, COUNT(*), SUM(score), MIN(name), MAX(id), AVG(zone) FROM player GROUP BY zone "
    "ORDER BY zone",
    "SELECT COUNT(nick) FROM player WHERE id > 2",
    "SELECT p.* FROM player p JOIN zone ON p.zone = zone.zid WHERE zone.pvp",
    "SELECT p.id, z.label FROM player p JOIN zone z ON p.zone = z.zid JOIN player q ON q.id = p.id",
    "SELECT * FROM zone WHERE label = X'01' AND pvp = TRUE",
    'SELECT * FROM "player" -- a comment\nWHERE "zone" = -1;',
    "SELECT * FROM secret",
    "SELECT * FROM player WHERE tags IS NULL",
    "SELECT * FROM player WHERE zone < 2 AND zone > 0 AND zone <= 1 AND zone >= 1",
    "SELECT * FROM player WHERE x = 1",
    "SELECT * FROM player WHERE zone = 'x'",
    "SELECT * FROM player WHERE nick = NULL",
    "INSERT INTO secret (v) VALUES ('a'), ('b')",
    "INSERT INTO zone VALUES (9, FALSE, X'00ff')",
    "INSERT INTO player (id, zone, name, owner, score, tags) VALUES (1, 1, 'dup', X'00', 1, NULL)",
    "UPDATE player SET zone = 0, nick = NULL WHERE id = 7",
    "UPDATE zone z SET pvp = TRUE WHERE z.zid BETWEEN 0 AND 2",
    "DELETE FROM player WHERE zone = 3 OR name = 'p1'",
    "DELETE FROM zone",
    "SELECT * FROM player WHERE " + "(" * 70 + "id = 1" + ")" * 70,
    "SELECT * FRM player",
    "EXPLAIN SELECT p.* FROM player p JOIN zone z ON p.zone = z.zid WHERE p.zone = 2",
    "EXPLAIN SELECT * FROM player a JOIN player b ON a.name = b.name LIMIT 2",
]


def sql() -> dict[str, bytes]:
    return {f"q{i:02d}": q.encode() for i, q in enumerate(SQL)}


def logrecord() -> dict[str, bytes]:
    out = {}
    vectors = json.loads((ROOT / "tests" / "vectors" / "log_records.json").read_text())
    for v in vectors:
        name = re.sub(r"[^a-z0-9]+", "-", v["name"].lower()).strip("-")
        out[f"vector-{name}"] = b"\x00" + bytes.fromhex(v["hex"])
    acct = fuzz_logrecord.ACCT
    codec = RowCodec("acct", acct.column_names, acct.column_types)
    rows = [codec.encode((i, i * 10 - 5, f"n{i}")) for i in range(3)]
    recs = {
        "tx-two-tables": lf.LogRecord(3, 5, caller=ID, reducer="move", args=b"\x01\x02",
                                      changes=[lf.TableChange("acct", rows[:1], rows[1:]),
                                               lf.TableChange("other", [], [b"\x00"])]),
        "tx-duplicate-insert": lf.LogRecord(4, 6, changes=[lf.TableChange("acct", [], [rows[0], rows[0]])]),
        "tx-bad-row": lf.LogRecord(5, 7, changes=[lf.TableChange("acct", [], [rows[0][:-1]])]),
        "drop-table": lf.LogRecord(6, 8, kind=lf.KIND_DROP_TABLE, table="acct"),
        "alter-table": lf.LogRecord(7, 9, kind=lf.KIND_ALTER_TABLE, schema=TableSchema(
            "acct", [*acct.columns, Column("note", "option<string>")], primary_key="id",
            indexes=[IndexDef("by_balance", "balance")])),
        "create-player": lf.LogRecord(8, 10, kind=lf.KIND_CREATE_TABLE, schema=TableSchema(
            "player", [Column("id", "u64"), Column("tags", "array<string>")], primary_key="id")),
    }
    # changes to the rows every replay starts from (fuzz_logrecord.BASE), for each of replay's
    # paths: the one-pass insert (acct), updates paired in step and out of step (named), one row
    # at a time (uniq); and a row deleted twice with an insert of its key between
    enc = {s.name: RowCodec(s.name, s.column_names, s.column_types).encode for s in fuzz_logrecord.TABLES}
    base = {name: [enc[name](r) for r in rows] for name, rows in fuzz_logrecord.BASE.items()}
    recs.update({
        "tx-update-every-table": lf.LogRecord(9, 11, reducer="touch", changes=[
            lf.TableChange("acct", base["acct"][:1], [enc["acct"]((0, 99, "moved"))]),
            lf.TableChange("named", base["named"][1:], [enc["named"](("k1", 7, [3])),
                                                         enc["named"](("k2", -1, []))]),
            lf.TableChange("uniq", base["uniq"][2:], [enc["uniq"]((1, "c9", "n"))])]),
        "tx-updates-out-of-step": lf.LogRecord(10, 12, changes=[
            lf.TableChange("named", base["named"], [enc["named"](("k2", 0, [])), enc["named"](("k9", 2, [1])),
                                                    enc["named"](("k0", 1, [2]))])]),
        "tx-insert-delete": lf.LogRecord(11, 13, changes=[
            lf.TableChange("acct", base["acct"][1:2], [enc["acct"]((7, 1, "")), enc["acct"]((1, 2, "back"))]),
            lf.TableChange("uniq", base["uniq"][:1], [enc["uniq"]((5, "c1", None))])]),
        "tx-delete-twice-paired": lf.LogRecord(12, 14, changes=[
            lf.TableChange("named", [base["named"][0]] * 2, [enc["named"](("k0", 5, [1]))])]),
    })
    for name, rec in recs.items():
        out[name] = b"\x00" + lf.encode_record(rec)
    out["tx-crc-fixed-by-harness"] = b"\x01" + lf.encode_record(recs["tx-two-tables"])[:-3] + b"xyz"
    return out


def _program(*ops: tuple[int, ...]) -> bytes:
    """A fuzz_txn input: each op is (opcode, table, argument bytes ...)."""
    return b"".join(bytes(op) for op in ops)


def txn() -> dict[str, bytes]:
    t = fuzz_txn
    ins, dele, upd, drow, uid = t.INSERT, t.DELETE, t.UPDATE, t.DELETE_ROW, t.UPDATE_ROWID
    get, seek, scan, pend, commit, back = t.GET, t.SEEK, t.SCAN, t.PENDING, t.COMMIT, t.ROLLBACK

    def main(key: int, name: int, n: int = 3, f: int = 0, opt: int = 1, arr: int = 6) -> tuple[int, ...]:
        return (key, name, n, f, opt, arr)       # _main_row's bytes

    out = {
        "insert-commit": _program((ins, 0, *main(1, 1)), (ins, 0, *main(0, 2)), (ins, 1, 0, 3),
                                  (commit, 0), (get, 0, 1)),
        "update-delete-rollback": _program((ins, 0, *main(1, 1)), (commit, 0), (upd, 0, *main(1, 1, 5, 2)),
                                           (dele, 0, 1), (ins, 0, *main(1, 3)), (pend, 0), (back, 0),
                                           (scan, 0)),
        "unique-conflict": _program((ins, 0, *main(1, 1)), (ins, 0, *main(2, 1)), (upd, 0, *main(1, 2)),
                                    (ins, 0, *main(2, 1)), (commit, 0)),
        # an update that changes nothing, a row deleted and put back: no change in the delta
        "cancelled-pairs": _program((ins, 1, 0, 1), (ins, 1, 1, 2), (commit, 0), (upd, 1, 0, 1),
                                    (drow, 1, 1, 2), (ins, 1, 1, 2), (pend, 0), (commit, 0)),
        # -0.0 for 0.0 and NaN for NaN: the first is a change, the second is not
        "float-bits": _program((ins, 0, *main(1, 1, 3, 0)), (ins, 0, *main(2, 2, 3, 2)), (commit, 0),
                               (upd, 0, *main(1, 1, 3, 1)), (upd, 0, *main(2, 2, 3, 2)), (commit, 0)),
        # the key changed through update_rowid, then the old key inserted again
        "rekey": _program((ins, 0, *main(1, 1)), (commit, 0), (uid, 0, 1, *main(5, 1)), (ins, 0, *main(1, 2)),
                          (seek, 0, 1), (seek, 0, 4), (commit, 0), (get, 0, 5)),
        # the auto-increment sequence at the top of u32, and restored by rollback
        "sequence-end": _program((ins, 0, *main(254, 1)), (ins, 0, *main(0, 2)), (ins, 0, *main(0, 3)),
                                 (back, 0), (ins, 0, *main(255, 1)), (ins, 0, *main(0, 2)), (commit, 0)),
        # more row ids than the write set searches in order (its map), then rollback
        "many-rows": _program(*[(ins, 0, *main(k, k % 8, k % 7, k % 8, k, k)) for k in range(1, 12)],
                              (commit, 0), *[(upd, 0, *main(k, k % 8, 6 - k % 7)) for k in range(1, 12)],
                              *[(dele, 0, k) for k in range(1, 12, 3)], (pend, 0), (back, 0),
                              *[(upd, 0, *main(k, k % 8, 1)) for k in range(11, 0, -1)], (commit, 0)),
        # every table in one transaction: more write sets than the first allocation holds
        "five-tables": _program(*[(ins, tb, 0, 1) for tb in range(1, 5)], (ins, 0, *main(1, 1)),
                                (commit, 0), *[(upd, tb, 0, 3) for tb in range(4, 0, -1)], (dele, 0, 1),
                                (back, 0), *[(dele, tb, 0) for tb in range(1, 5)], (commit, 0)),
        "bad-values": _program((ins, 0, *main(253, 1)), (ins, 0, *main(1, 1, 255)), (ins, 1, 0, 255),
                               (ins, 1, 0, 4), (upd, 1, 0, 255), (commit, 0)),
    }
    return out


def host() -> dict[str, bytes]:
    """fuzz_host inputs: a limits byte, the first call's byte, then imports (opcode, argument
    bytes ...; see fuzz_host._op for the order of the argument bytes)."""
    h = fuzz_host
    tid = {t: h.TIDS.index(t) for t in (0, 1, 2, 3, -1)}
    iid = {i: h.IIDS.index(i) for i in (0, 1, 2, 3, -1)}
    name = {n: h.NAMES.index(n) for n in h.NAMES}
    flt = {repr(x): h.FLOATS.index(x) for x in h.FLOATS if x == x}
    ints = {x: h.INTS.index(x) for x in h.INTS}
    cap = {c: h.CAPS.index(c) for c in h.CAPS}
    keep = 0                                             # damaged(): the bytes as they are

    def item(id_: int, kind: int, nm: str, score: int = 0, dmg: tuple[int, ...] = (keep,)) -> tuple[int, ...]:
        # id (IDS index), kind, name, score (0: None), then how to damage the row
        return (tid[0], h.IDS.index(id_), kind, name[nm], score, *dmg)

    def tag(k: int, v: int, dmg: tuple[int, ...] = (keep,)) -> tuple[int, ...]:
        return (tid[1], ints[k], v, *dmg)

    def pt(x: int, f: str, s: int, dmg: tuple[int, ...] = (keep,)) -> tuple[int, ...]:
        return (tid[2], ints[x], flt[f], s, *dmg)

    def ins(*row: int) -> tuple[int, ...]:
        return (h.INSERT, *row)

    def upd(*row: int) -> tuple[int, ...]:
        return (h.UPDATE, *row)

    def keyed(op: int, t: int, i: int, *key: int, dmg: tuple[int, ...] = (keep,),
              c: int | None = None) -> tuple[int, ...]:
        return (op, tid[t], iid[i], *key, *dmg, *(() if c is None else (cap[c],)))

    def nxt(handle_byte: int, drain_cap: int | None = None) -> tuple[int, ...]:
        # mode byte: odd = one batch with room for everything, even = drained from a buffer of CAPS[b >> 1]
        return (h.NEXT, handle_byte, 1 if drain_cap is None else cap[drain_cap] << 1)

    def end(commit: bool, next_call: int | None) -> tuple[int, ...]:
        return (h.END, (1 if commit else 0) | (0 if next_call is not None else 2),
                *(() if next_call is None else (next_call,)))

    def prog(limits: int, call: int, *ops: tuple[int, ...]) -> bytes:
        return bytes([limits, call]) + _program(*ops)

    items = [ins(*item(0, 1, "a", 2)), ins(*item(0, 0, "b")), ins(*item(0, 1, "c", 4)), ins(*item(3, 2, "é"))]
    out = {
        "insert-scan-commit": prog(0, 2, *items, (h.SCAN, tid[0]), nxt(0, 64), (h.SCAN, tid[0]), nxt(0),
                                   nxt(0), end(True, 4), (h.SCAN, tid[0]), nxt(0, 4)),
        "bad-rows": prog(0, 2, *items[:2], ins(*item(0, 1, "a")), ins(*item(0, 1, "b")),
                         ins(*item(0, 1, "c", 0, (170, 5))), ins(*item(0, 1, "c", 0, (190, 9, 0xff))),
                         ins(*item(0, 1, "c", 0, (230,))), ins(*item(0, 1, "c", 0, (215, 0x80, 3))),
                         ins(*item(0, 1, "c", 0, (245, 7, 1, 0, 0, 0, 0, 0, 0))),
                         ins(*tag(1, 3, (200, 0, 9))), ins(tid[3], 0, 0, 0, 0, keep),
                         ins(tid[-1], 0, 0, 0, 0, keep), (h.CONTEXT,)),
        "update-delete-find": prog(0, 3, *items, upd(*item(1, 3, "x" * 150, 1)), upd(*item(1, 3, "é", 1)),
                                   upd(*item(50, 1, "\U0001f642")), upd(*item(2, 1, "a")), upd(*tag(1, 1)),
                                   keyed(h.FIND, 0, 0, h.IDS.index(1), c=64),
                                   keyed(h.FIND, 0, 0, h.IDS.index(1), c=4),
                                   keyed(h.FIND, 0, 0, h.IDS.index(2), c=3),
                                   keyed(h.FIND, 0, 2, name["c"], c=0),
                                   keyed(h.FIND, 0, 2, name["c"], c=1 << 16),
                                   keyed(h.DELETE, 0, 2, name["b"]), keyed(h.DELETE, 0, 1, 1, name["a"]),
                                   keyed(h.DELETE, 0, 0, h.IDS.index(3), dmg=(170, 3)),
                                   keyed(h.DELETE, 0, 3, 0),
                                   end(True, None)),
        "range-flags": prog(0, 5, ins(*pt(0, "0.0", 1)), ins(*pt(1, "-0.0", 2)), ins(*pt(2, "1.5", 0)),
                            ins(*pt(-1, "inf", 4)), ins(*pt(3, "-2.25", 5)), ins(*pt(50, "1e+300", 1)),
                            (h.RANGE, 2, 0x0F, 0x05, flt["0.0"], flt["inf"]), nxt(0, 8),
                            (h.RANGE, 2, 0x03, 0x01, flt["-0.0"], flt["0.0"]), nxt(0),
                            (h.RANGE, 4, 0x0D, 0x0A, 1, ints[0], 2, ints[50]), nxt(0, 20),
                            (h.RANGE, 0, 0x05, 0x0A, 0, name["a"], 2, name["c"]), nxt(0, 0),
                            (h.RANGE, 0, 0x31, 0x03, 1, 0, 0, 0), (h.RANGE, 6, 0, 0, 0, 0),
                            (h.RANGE, 8, 0, 0, 0, 0), (h.RANGE, 0, 0x41, 0x02, 1, name["a"], 0, 175, 1),
                            end(False, None)),
        # limits 1: one row a batch, so the writes come between an iterator's batches
        "iterators-copy-on-write": prog(1, 6, *items, (h.SCAN, tid[0]),
                                        (h.SEEK, tid[0], iid[1], 1, name["a"], keep), nxt(0),
                                        keyed(h.DELETE, 0, 0, h.IDS.index(2)), upd(*item(1, 4, "")),
                                        ins(*item(0, 4, "a\x00")), nxt(0, 12), nxt(0, 3), (h.SCAN, tid[0]),
                                        (h.CLOSE, 0), (h.CLOSE, 0), nxt(203), nxt(207), (h.SCAN, tid[0]),
                                        end(True, None)),
        "small-limits": prog(4, 7, ins(*item(0, 1, "a")), ins(*item(0, 1, "x" * 150)), ins(*tag(0, 2)),
                             ins(*tag(0, 3)), ins(*tag(0, 0)), ins(*tag(1, 1)), (h.SCAN, tid[1]), nxt(0),
                             nxt(0), nxt(0, 4), end(True, 8)),
        "names-log-context": prog(0, 1, *[(h.TABLE_ID, i) for i in range(len(h.TABLE_NAMES))],
                                  *[(h.INDEX_ID, tid[t], i) for t in (0, 1, 2, 3) for i in range(3)],
                                  (h.INDEX_ID, tid[2], 5), (h.LOG, 2, 5, *b"hello"),
                                  (h.LOG, 6, 2, 0xff, 0x21),
                                  (h.LOG, 5, 0), (h.CONTEXT,), end(True, 3), (h.CONTEXT,)),
        "calls-rollback": prog(0, 9, *items[:2], end(False, 10), *items[2:], (h.SCAN, tid[0]),
                               end(True, None), ins(*item(0, 1, "é")), (h.SCAN, tid[0]), nxt(1),
                               keyed(h.FIND, 0, 0, 0, c=64), (h.END, 0, 11), (h.SCAN, tid[0]), nxt(0),
                               end(True, 12)),
        # the u64 sequence past 2**63, rolled back, then used up (and its saved state compared)
        "sequence-top": prog(0, 13, ins(*item(2**63, 1, "a")), ins(*item(0, 1, "b")), ins(*item(0, 1, "c")),
                             end(False, 14), ins(*item(2**64 - 1, 1, "a")), end(True, 15),
                             ins(*item(0, 2, "b")), ins(*item(1, 2, "c")), end(False, 16),
                             ins(*item(0, 2, "é"))),
        "non-unique-find": prog(0, 17, ins(*tag(0, 1)), ins(*tag(0, 6)), ins(*tag(0, 2)), ins(*tag(1, 0)),
                                keyed(h.FIND, 1, 0, ints[0], c=64), keyed(h.FIND, 1, 0, ints[0], c=8),
                                keyed(h.FIND, 1, 0, ints[0], c=4), keyed(h.FIND, 1, 0, ints[0], c=3),
                                keyed(h.FIND, 1, 0, ints[2], c=64), (h.SEEK, tid[1], iid[0], ints[0], keep),
                                nxt(0, 8), keyed(h.DELETE, 1, 0, ints[0]), (h.SCAN, tid[1]), nxt(0)),
    }
    return out


def snapshot() -> dict[str, bytes]:
    out = {}
    d = tempfile.mkdtemp(prefix="stdb-fuzz-seed-")
    try:
        env = Env(d, durable=False)
        ds = Datastore()
        ds.create_table(fuzz_logrecord.ACCT)
        ds.create_table(TableSchema("player", [Column("id", "u64"), Column("nick", "option<string>"),
                                               Column("tags", "array<u8>"), Column("who", "identity")],
                                    primary_key="id", indexes=[IndexDef("by_nick", "nick")]))
        with ds.begin() as tx:
            for i in range(3):
                tx.insert("acct", (0, i - 1, f"a{i}"))
                tx.insert("player", (i, None if i else "z", list(range(i)), ID))
        tables = [ds.table(n) for n in ("acct", "player")]
        for offset, ts in ((5, tables), (6, tables[:1]), (7, [])):
            write_snapshot(env, offset, ts)
        with env.read() as txn:
            metas = {bytes(k): bytes(v) for k, v in txn.cursor(db=env.db(SNAPMETA_DB))}
            chunks = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=env.db(SNAP_DB))]
        env.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    for key, manifest in sorted(metas.items()):
        off = int.from_bytes(key, "big")
        mine = [(int.from_bytes(k[8:10], "big"), int.from_bytes(k[10:14], "big"), v)
                for k, v in chunks if k[:8] == key]
        out[f"offset{off}-hash-fixed"] = fuzz_snapshot.join(fuzz_snapshot.FIX_HASH, manifest, mine)
        out[f"offset{off}-as-written"] = fuzz_snapshot.join(0, manifest, mine)
    return out


def describe() -> dict[str, bytes]:
    from stdb.module.build import build_module
    from stdb.module.database import Database

    out = {}
    d = tempfile.mkdtemp(prefix="stdb-fuzz-seed-")
    try:
        db = Database(str(Path(d) / "db"))
        for src in ("examples/chat/chat.c", "examples/transfer/transfer.c", "tests/modules/notes.c",
                    "tests/modules/scheduled.c"):
            wasm = Path(d) / "m.wasm"
            build_module(str(ROOT / src), str(wasm))
            _, raw = db._describe(db._compile(wasm.read_bytes()))
            out[f"module-{Path(src).stem}"] = bytes(raw)
        db.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    doc = (ROOT / "docs" / "abi.md").read_text()
    example = re.search(r"## Module description.*?```json\n(.*?)```", doc, re.S)
    assert example is not None
    out["abi-md-example"] = example.group(1).encode()
    out["minimal"] = b'{"abi": 1, "tables": [], "reducers": []}'
    out["wrong-abi"] = b'{"abi": 2, "tables": [], "reducers": []}'
    return out


DICT_WORDS = {
    "sql": ["SELECT", "FROM", "WHERE", "JOIN", "ON", "AND", "OR", "NOT", "IN", "BETWEEN", "IS", "NULL",
            "TRUE", "FALSE", "GROUP BY", "ORDER BY", "ASC", "DESC", "LIMIT", "AS", "COUNT", "SUM", "MIN",
            "MAX", "AVG", "EXPLAIN", "INSERT INTO", "VALUES", "UPDATE", "SET", "DELETE", ":sender", "X'",
            "--", "player", "zone", "secret", "id", "zid", "pvp", "label", "name", "nick", "owner", "score",
            "tags", "v", "*", ".*", "(", ")", ",", ";", "=", "!=", "<>", "<=", ">=", "''", '"'],
    "describe": ['"abi"', '"tables"', '"reducers"', '"visibility"', '"name"', '"columns"', '"type"',
                 '"auto_inc"', '"primary_key"', '"indexes"', '"kind"', '"unique"', '"public"',
                 '"scheduled"', '"params"', '"lifecycle"', '"init"', '"client_connected"',
                 '"client_disconnected"', '"btree"', '"hash"', '"scheduled_id"', '"scheduled_at"',
                 '"repeat_us"', '"option<', '"array<', *(f'"{t}"' for t in _SAMPLES), "true", "false",
                 "null", "[]", "{}"],
}


def _dict_line(word: str | bytes) -> str:
    raw = word.encode() if isinstance(word, str) else word
    return '"' + "".join(chr(b) if 32 <= b < 127 and b not in (34, 92) else f"\\x{b:02x}" for b in raw) + '"'


def dictionaries() -> dict[str, list[bytes | str]]:
    d: dict[str, list[bytes | str]] = {k: list(v) for k, v in DICT_WORDS.items()}
    # CBOR text strings of every message type and field name, for the protocol target
    words: set[str] = {"type", *CLIENT_MESSAGES}
    for fields in CLIENT_MESSAGES.values():
        words.update(fields)
    d["protocol"] = [cbor2.dumps(w) for w in sorted(words)]
    d["lane"] = [cbor2.dumps(w) for w in ("type", "CallReducer", "request_id", "reducer", "args",
                                          *fuzz_lane.PARAMS)]
    d["snapshot"] = [fuzz_snapshot.SEP, '"format"', '"offset"', '"created_us"', '"hash"', '"tables"',
                     '"schema"', '"sequences"', '"rows"', '"chunks"', '"bytes"']
    return d


GENERATORS = {"rowcodec": rowcodec, "protocol": protocol, "sql": sql, "logrecord": logrecord,
              "snapshot": snapshot, "describe": describe, "txn": txn, "host": host, "lane": lane,
              "websocket": websocket}


def main() -> None:
    for target, gen in GENERATORS.items():
        seeds = gen()
        out = CORPUS / target
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for name, data in seeds.items():
            (out / name).write_bytes(data)
        print(f"{target}: {len(seeds)} seeds, {sum(map(len, seeds.values())):,} bytes")
    DICTS.mkdir(parents=True, exist_ok=True)
    for target, words in dictionaries().items():
        (DICTS / f"{target}.dict").write_text(
            f"# libFuzzer dictionary for fuzz_{target} (written by `python -m fuzz seed`)\n"
            + "".join(_dict_line(w) + "\n" for w in words))


if __name__ == "__main__":
    main()
