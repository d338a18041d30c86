"""A follower's copy of a database, without NATS: the leader's log records applied through
``stdb.module.replica`` (``DurableStore.replicate_record``), the stream's message format
(``stdb.replication.wire``) and rewinding a log (docs/replication.md)."""

from __future__ import annotations

import pathlib

import pytest

import stdb
from stdb.errors import ReplicationError, StorageError
from stdb.module import replica
from stdb.module.database import Database
from stdb.replication import wire
from stdb.storage.commitlog import iter_records
from stdb.storage.recovery import rewind_log

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wasm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("wasm") / "transfer.wasm"
    return pathlib.Path(stdb.build_module(str(ROOT / "examples/transfer/transfer.c"), str(out))).read_bytes()


def records(db: Database, start: int = 0) -> list[tuple[int, bytes]]:
    db.store.flush()
    return [(off, bytes(r)) for off, r in iter_records(db.store.env, start)]


def copy_published(leader: Database, follower: Database) -> None:
    """What the stream carries after a publish: the create-table records, then the module (the
    transfer module's init writes nothing)."""
    for off, raw in records(leader):
        res, _ = replica.apply_record(follower, off, raw)
        assert res is None                              # table records: no diffs
    replica.install_module(follower, *replica.stored_module(leader))


def test_a_copy_gets_the_leaders_state_and_diffs(tmp_path, wasm) -> None:
    with Database(str(tmp_path / "l")) as leader, Database(str(tmp_path / "f")) as follower:
        leader.publish(wasm)
        copy_published(leader, follower)
        assert follower.describe()["reducers"] == leader.describe()["reducers"]
        leader.subscribe(["SELECT * FROM account WHERE balance > 100"], "s")
        follower.subscribe(["SELECT * FROM account WHERE balance > 100"], "s")
        start = leader.store.log.next_offset
        on_leader = []
        for i in range(6):
            on_leader.append(leader.call("create_account", (i, 1000 * (i + 1))))
        for k in range(30):
            on_leader.append(leader.call("transfer", (k % 6, (k * 5 + 1) % 6, 7 * k + 1)))
        committed = [r for r in on_leader if r.offset is not None]
        on_follower = []
        for off, raw in records(leader, start):
            res, caller = replica.apply_record(follower, off, raw)
            assert res is not None and caller == bytes(32)
            on_follower.append(res)
        assert [(r.offset, r.reducer, r.timestamp) for r in on_follower] == \
            [(r.offset, r.reducer, r.timestamp) for r in committed]
        assert [{q: (d.deletes, d.inserts) for q, d in r.updates.items()} for r in on_follower] == \
            [{q: (d.deletes, d.inserts) for q, d in r.updates.items()} for r in committed]
        assert sorted(follower.query("SELECT * FROM account").rows) == \
            sorted(leader.query("SELECT * FROM account").rows)
        assert records(follower) == records(leader)          # the same bytes in its own log
    with Database(str(tmp_path / "f")) as again:               # and a restart recovers them
        assert again.schema is not None and len(again.query("SELECT * FROM account").rows) == 6


def test_a_damaged_or_misplaced_record_changes_nothing(tmp_path, wasm) -> None:
    with Database(str(tmp_path / "l")) as leader, Database(str(tmp_path / "f")) as follower:
        leader.publish(wasm)
        copy_published(leader, follower)
        leader.call("create_account", (1, 50))
        (off, raw), = records(leader, leader.store.log.next_offset - 1)
        before = follower.store.log.next_offset
        bad = bytearray(raw)
        bad[-3] ^= 0x40                                       # a row byte: the CRC no longer holds
        with pytest.raises(StorageError, match="CRC|crc|checksum"):
            replica.apply_record(follower, off, bytes(bad))
        with pytest.raises(StorageError, match="next offset"):
            replica.apply_record(follower, off + 1, raw)
        assert follower.store.log.next_offset == before
        assert follower.query("SELECT * FROM account").rows == []
        replica.apply_record(follower, off, raw)              # the intact one applies
        assert follower.query("SELECT * FROM account").rows == [(1, 50)]


def test_rewinding_a_log_drops_its_tail_and_later_snapshots(tmp_path, wasm) -> None:
    path = str(tmp_path / "db")
    with Database(path) as db:
        db.publish(wasm)
        db.call("create_account", (1, 100))
        keep = db.store.log.next_offset
        db.call("create_account", (2, 200))
        db.store.snapshot()
        db.call("transfer", (2, 1, 50))
    rewind_log(path, keep)
    with Database(path) as db:
        assert db.store.log.next_offset == keep
        assert db.query("SELECT * FROM account").rows == [(1, 100)]
        assert all(s < keep for s in db.store.stats()["snapshots"])


def test_stream_message_headers_and_parts() -> None:
    m = wire.Message.log(10, 2, b"x" * 30)
    h = m.header_map(term=7)
    assert (h[wire.FIRST], h[wire.COUNT], h[wire.AFTER], h[wire.MSG_ID]) == ("10", "2", "12", "10.7")
    back = wire.Message.parse(h, m.payload)
    assert (back.kind, back.first, back.count, back.after) == ("log", 10, 2, 12)
    with pytest.raises(ReplicationError, match="bad headers"):
        wire.Message.parse({wire.KIND: "log"}, b"")
    with pytest.raises(ReplicationError, match="unknown kind"):
        wire.Message.parse({wire.KIND: "gossip", wire.AFTER: "1"}, b"")
    with pytest.raises(ReplicationError, match="holds 1 records"):
        wire.records(wire.Message.log(0, 2, b"\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
    payload = bytes(range(256)) * 5
    pieces = wire.split_parts(payload, 300)
    assert len(pieces) == 5 and b"".join(pieces) == payload
    parts = wire.Parts()
    got = [parts.add({wire.PART: f"{i + 1}/5"}, p) for i, p in enumerate(pieces)]
    assert got[:4] == [None] * 4 and got[4] == payload
    assert parts.add(None, b"whole") == b"whole"
    parts.add({wire.PART: "1/3"}, b"a")
    with pytest.raises(ReplicationError, match="out of order"):
        parts.add({wire.PART: "3/3"}, b"c")


def test_a_follower_runs_no_schedules_and_does_not_wake_for_them(tmp_path) -> None:
    """The arena's 20 Hz tick is due at once; on a follower its execution thread must neither
    run it (only the leader writes) nor wake for it (a due time in the past would be a spin)."""
    from stdb.server.hosted import HostedDatabase
    from stdb.server.metrics import Metrics
    wasm = pathlib.Path(stdb.build_module(str(ROOT / "examples/arena/arena.c"), str(tmp_path / "a.wasm")))
    clock = [1_000_000_000_000]
    with Database(str(tmp_path / "db"), clock=lambda: clock[0]) as db:
        db.publish(wasm.read_bytes())
        h = HostedDatabase("arena", db, Metrics(lambda: iter(())))
        clock[0] += 10_000_000                                 # ten seconds on: the tick is due
        assert h.next_wake() == 0.0
        h.follower_of = lambda: "ws://leader"
        assert h.next_wake() is None
        before = db.store.log.next_offset
        h.run_batch([])
        assert db.store.log.next_offset == before              # nothing ran
        h.follower_of = None
        h.run_batch([])
        assert db.store.log.next_offset > before               # the leader's tick
