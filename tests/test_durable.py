"""Commit log, group commit, snapshots and recovery of a DurableStore."""

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stdb
from stdb.storage import logformat as lf
from stdb.storage.commitlog import BATCH_BYTES, LOG_LAYOUT, iter_records, log_bounds, split_value
from stdb.storage.durable import DurableStore, StoreConfig
from stdb.storage.lmdbenv import LOG_DB, META_DB, Env
from stdb.storage.snapshot import list_snapshots, verify_snapshot
from tests.strategies import column_types, values_of

ACCT = stdb.TableSchema(
    "acct",
    [stdb.Column("id", "u64", auto_inc=True), stdb.Column("balance", "i64"), stdb.Column("name", "string"),
     stdb.Column("tags", "array<string>")],
    primary_key="id",
    indexes=[stdb.IndexDef("by_balance", "balance")],
)
NOSNAP = StoreConfig(snapshot_every_txs=None, snapshot_every_bytes=None)
RELAXED = StoreConfig(durability="relaxed", sync_interval=0.01, snapshot_every_txs=None,
                      snapshot_every_bytes=None)


def _state(store, name="acct"):
    return sorted(store.datastore.scan(name))


def _fill(store, n, start=0):
    offsets = []
    for i in range(start, start + n):
        tx = store.begin()
        tx.insert("acct", (0, i * 10, f"user{i}", ["t"] * (i % 3)))
        if i % 4 == 3:
            row = tx.get("acct", 1 + i // 2)
            if row is not None:
                tx.update("acct", (row[0], row[1] + 1, row[2] + "!", row[3]))
        if i % 7 == 6:
            victim = tx.get("acct", 1 + i // 3)
            if victim is not None:
                tx.delete("acct", victim[0])
        offsets.append(store.commit(tx, reducer="fill", args=bytes([i % 256])).offset)
    return offsets


def test_commits_survive_reopen(tmp_path):
    path = str(tmp_path / "db")
    with DurableStore.open(path, config=NOSNAP) as s:
        assert s.create_table(ACCT) == 0
        offs = _fill(s, 200)
        assert offs == list(range(1, 201))
        s.wait_durable(offs[-1], timeout=10)
        assert s.durable_offset >= 200
        before = _state(s)
        seq = s.datastore.table("acct").sequence_state()
    with DurableStore.open(path, config=NOSNAP) as s2:
        assert s2.recovery.replayed == 201
        assert _state(s2) == before
        assert s2.datastore.table("acct").sequence_state() == seq
        assert s2.log.next_offset == 201
        s2.datastore.table("acct").check_invariants()


@pytest.mark.parametrize("collecting", [True, False])
def test_recovery_leaves_the_garbage_collector_as_it_found_it(tmp_path, collecting):
    """Replay turns the collector off while it applies records, and back as it was after."""
    import gc

    from stdb.storage.recovery import recover
    path = str(tmp_path / "db")
    with DurableStore.open(path, config=NOSNAP) as s:
        s.create_table(ACCT)
        _fill(s, 20)
    seen = []
    was = gc.isenabled()
    env = Env(path, readonly=True)
    try:
        gc.enable() if collecting else gc.disable()
        res = recover(env, repair=False, progress=lambda done, total: seen.append(gc.isenabled()))
        assert res.replayed == 21 and seen == [False]        # one progress call, at the end
        assert gc.isenabled() is collecting
    finally:
        env.close()
        gc.enable() if was else gc.disable()


def test_rolled_back_and_empty_transactions_leave_no_record(tmp_path):
    with DurableStore.open(str(tmp_path / "db"), config=NOSNAP) as s:
        s.create_table(ACCT)
        tx = s.begin()
        tx.insert("acct", (0, 1, "a", []))
        tx.rollback()
        tx = s.begin()
        assert s.commit(tx).offset is None
        with pytest.raises(stdb.ConstraintError):
            s.transact(lambda tx: (tx.insert("acct", (5, 1, "a", [])), tx.insert("acct", (5, 2, "b", []))))
        s.flush()
        assert log_bounds(s.env) == (0, 0)
        assert s.datastore.count("acct") == 0


def test_record_contents(tmp_path):
    with DurableStore.open(str(tmp_path / "db"), config=NOSNAP) as s:
        s.create_table(ACCT)
        tx = s.begin()
        tx.insert("acct", (0, 5, "x", ["a"]))
        caller = bytes(range(32))
        off = s.commit(tx, reducer="open", args=b"\x01\x02", caller=caller, timestamp=1234).offset
        tx = s.begin()
        tx.update("acct", (1, 6, "x", ["a"]))
        off2 = s.commit(tx).offset
        s.flush()
        recs = {o: lf.decode_record(o, bytes(v)) for o, v in iter_records(s.env)}
    r = recs[off]
    assert (r.reducer, r.args, r.caller, r.timestamp) == ("open", b"\x01\x02", caller, 1234)
    codec = stdb.RowCodec("acct", ACCT.column_names, ACCT.column_types)
    assert [codec.decode(x) for x in r.changes[0].inserts] == [(1, 5, "x", ["a"])]
    u = recs[off2].changes[0]
    assert [codec.decode(x) for x in u.deletes] == [(1, 5, "x", ["a"])]
    assert [codec.decode(x) for x in u.inserts] == [(1, 6, "x", ["a"])]


def test_group_commit_batches_concurrent_appends(tmp_path):
    with DurableStore.open(str(tmp_path / "db"), config=NOSNAP) as s:
        s.create_table(ACCT)
        _fill(s, 2000)
        s.flush(timeout=30)
        assert s.durable_offset == 2000
        # 2001 records took far fewer fsync'd groups than records
        assert s.log.groups < 2001


def _paced_log(tmp_path, delay):
    from stdb.storage.commitlog import CommitLog
    env = Env(str(tmp_path / "db"), durable=True)
    return env, CommitLog(env, durability="durable", group_delay=delay, group_siblings=2)


def test_a_busy_writer_paces_its_groups(tmp_path):
    """Commits that arrive while a group is written (at least group_siblings of them) wait for
    the next group, which starts group_delay after the previous one began: one bigger group."""
    env, log = _paced_log(tmp_path, 0.3)
    starts: list[tuple[float, int]] = []
    write = log._write_group
    second = threading.Event()

    def hooked(first, group):
        starts.append((time.monotonic(), len(group)))
        if len(starts) == 1:
            for i in range(5):                  # five commits arrive during the first write
                log.append(lambda off, i=i: lf.encode_tx(off, 0, None, "r", b"", []))
        write(first, group)
        if len(starts) == 2:
            second.set()

    try:
        log._write_group = hooked
        log.append(lambda off: lf.encode_tx(off, 0, None, "r", b"", []))
        assert second.wait(10)                  # (not wait_durable: a waiter ends the delay)
        assert [n for _, n in starts] == [1, 5]
        assert starts[1][0] - starts[0][0] >= 0.3
        log.wait_durable(5, timeout=10)         # the second group is written: waiting ends no delay
        assert log.durable_offset == 5 and log.groups == 2
    finally:
        log.close()
        env.close()


def test_a_caller_waiting_for_durability_ends_the_delay(tmp_path):
    """Pacing is for commits nobody waits on: a wait_durable caller (confirmed mode) gets its
    group written at once, even in the middle of a long delay."""
    env, log = _paced_log(tmp_path, 60.0)
    write = log._write_group
    first_done = threading.Event()

    def hooked(first, group):
        if first == 0:
            for _ in range(3):                  # commits arrive during the first write
                log.append(lambda off: lf.encode_tx(off, 0, None, "r", b"", []))
        write(first, group)
        first_done.set()

    try:
        log._write_group = hooked
        log.append(lambda off: lf.encode_tx(off, 0, None, "r", b"", []))
        assert first_done.wait(10)
        t0 = time.monotonic()
        log.wait_durable(3, timeout=10)         # would take 60 s if the delay were kept
        assert time.monotonic() - t0 < 10 and log.groups == 2
    finally:
        log.close()
        env.close()


def test_a_lone_committer_is_not_paced(tmp_path):
    env, log = _paced_log(tmp_path, 30.0)
    try:
        for _ in range(3):      # nothing arrives while each group is written: no group waits
            log.wait_durable(log.append(lambda off: lf.encode_tx(off, 0, None, "r", b"", [])), timeout=10)
        assert log.groups == 3
    finally:
        log.close()
        env.close()


def test_relaxed_mode_becomes_durable_on_interval(tmp_path):
    with DurableStore.open(str(tmp_path / "db"), config=RELAXED) as s:
        assert not s.env.durable          # LMDB does not sync at commit: the interval does
        s.create_table(ACCT)
        offs = _fill(s, 50)
        s.wait_durable(offs[-1], timeout=10)
        assert s.durable_offset >= offs[-1]


@pytest.mark.parametrize("config, hook, error", [
    # durable mode: LMDB fsyncs at commit, so a failed fsync fails the group's write
    (NOSNAP, "_write_group", OSError(5, "Input/output error")),
    (NOSNAP, "_write_group", OSError(28, "No space left on device")),  # the write fails (ENOSPC)
    (RELAXED, "_sync", OSError(5, "Input/output error")),             # the interval's fsync fails
    (RELAXED, "_write_group", OSError(28, "No space left on device")),
], ids=["durable-fsync", "durable-enospc", "relaxed-fsync", "relaxed-enospc"])
def test_io_failure_stops_acknowledgements(tmp_path, config, hook, error):
    """The failure is raised where the fsync happens: in the group's write (durable mode,
    LMDB's sync at commit) or in the interval's sync (relaxed mode)."""
    s = DurableStore.open(str(tmp_path / "db"), config=config)
    try:
        s.create_table(ACCT)
        s.flush(timeout=10)
        good = s.durable_offset

        def fail(*args):
            raise error

        setattr(s.log, hook, fail)
        tx = s.begin()
        tx.insert("acct", (0, 1, "a", []))
        off = s.commit(tx).offset
        with pytest.raises(stdb.StorageError, match=error.strerror):
            s.wait_durable(off, timeout=10)
        assert s.durable_offset == good          # never pretends the failed group is durable
        with pytest.raises(stdb.StorageError, match="acknowledges nothing further"):
            s.begin()
        tx = s.datastore.begin()
        tx.insert("acct", (0, 2, "b", []))
        with pytest.raises(stdb.StorageError, match="acknowledges nothing further"):
            s.commit(tx)
    finally:
        s.close()


# A child process whose data file may not grow past a limit (RLIMIT_FSIZE: the writes LMDB
# makes past it fail for real, as on a full disk). It commits one row at a time and says what
# became of each: ack (committed and durable), unknown (committed, the wait for durability
# failed) or refused (commit raised); "snapfail" when an automatic snapshot has failed.
_FULL_DISK_CHILD = r"""
import resource, signal, sys
import stdb
from stdb.storage.durable import DurableStore, StoreConfig
path, limit, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) or None
s = DurableStore.open(path, config=StoreConfig(snapshot_every_txs=every, snapshot_every_bytes=None))
s.create_table(stdb.TableSchema("blob", [stdb.Column("id", "u64"), stdb.Column("data", "string")],
                                primary_key="id"))
s.flush()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
said_snapfail = False
refused = 0
for i in range(100000):
    tx = s.begin() if not s.log.failed else s.datastore.begin()
    tx.insert("blob", (i, "x" * 2000))
    try:
        c = s.commit(tx)
    except stdb.StorageError as e:
        print("refused", i, e.detail, flush=True)
        refused += 1
        if refused == 3:
            break
        continue
    if s.snapshot_error and not said_snapfail:
        print("snapfail", i, flush=True)
        said_snapfail = True
    try:
        s.wait_durable(c.offset, timeout=30)
        print("ack", i, flush=True)
    except stdb.StorageError:
        print("unknown", i, flush=True)
s.close()
"""


@pytest.mark.parametrize("every", [0, 40], ids=["no-snapshots", "snapshots"])
def test_a_full_disk_loses_no_acknowledged_commit_and_applies_no_refused_one(tmp_path, every):
    """Real write failures from LMDB (not a hook): the log stops acknowledging, a commit it
    refuses changes nothing, a failed automatic snapshot does not fail its commit, and
    recovery (with room again) has every acknowledged commit."""
    import subprocess
    import sys
    path = str(tmp_path / "db")
    p = subprocess.run([sys.executable, "-c", _FULL_DISK_CHILD, path, str(3 << 20), str(every)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    said: dict[str, list[int]] = {"ack": [], "unknown": [], "refused": [], "snapfail": []}
    for line in p.stdout.splitlines():
        word, i = line.split()[:2]
        said[word].append(int(i))
    assert len(said["ack"]) > 100 and len(said["refused"]) == 3, p.stdout[-2000:]
    refusal = p.stdout.splitlines()[-1]
    assert "acknowledges nothing further" in refusal and "bytes free on its filesystem" in refusal
    if every:
        # snapshots need more room at once than one record: they fail first, and commits go on
        (first,) = said["snapfail"]
        assert max(said["ack"]) > first + 10
        assert "automatic snapshot" in p.stderr and "commits are unaffected" in p.stderr
    with DurableStore.open(path, config=NOSNAP) as s:
        ids = {r[0] for r in s.datastore.scan("blob")}
        assert set(said["ack"]) <= ids
        assert not ids & set(said["refused"])
        assert ids <= set(said["ack"]) | set(said["unknown"])
        tx = s.begin()
        tx.insert("blob", (10**9, "after"))
        s.wait_durable(s.commit(tx).offset, timeout=10)


def test_map_grows_when_full(tmp_path):
    path = str(tmp_path / "db")
    cfg = StoreConfig(snapshot_every_txs=None, snapshot_every_bytes=None, map_size=1 << 20)  # 1 MiB
    with DurableStore.open(path, config=cfg) as s:
        s.create_table(ACCT)
        big = "x" * 2000
        for i in range(1500):                          # ~3 MB of log
            tx = s.begin()
            tx.insert("acct", (0, i, big, []))
            s.commit(tx)
        s.flush(timeout=60)
        assert s.env.map_size() > 1 << 20
    with DurableStore.open(path, config=NOSNAP) as s2:
        assert s2.datastore.count("acct") == 1500


def test_snapshot_then_tail_recovery(tmp_path):
    path = str(tmp_path / "db")
    with DurableStore.open(path, config=NOSNAP) as s:
        s.create_table(ACCT)
        _fill(s, 100)
        info = s.snapshot()
        assert info is not None and info.offset == 100
        assert s.stats()["snapshots"] == [100] and s.stats()["snapshot_error"] is None
        verify_snapshot(s.env, 100)
        _fill(s, 50, start=100)
        s.flush()
        want = _state(s)
        seq = s.datastore.table("acct").sequence_state()
    with DurableStore.open(path, config=NOSNAP) as s2:
        assert s2.recovery.snapshot_offset == 100
        assert s2.recovery.replayed == 50
        assert _state(s2) == want
        assert s2.datastore.table("acct").sequence_state() == seq


def test_automatic_snapshots_pruning_and_compaction(tmp_path):
    path = str(tmp_path / "db")
    cfg = StoreConfig(snapshot_every_txs=40, snapshot_every_bytes=None, keep_snapshots=2, compact_log=True)
    with DurableStore.open(path, config=cfg) as s:
        s.create_table(ACCT)
        for start, n in ((0, 50), (50, 50), (100, 30)):
            _fill(s, n, start)
            # written in the background, one at a time (a commit meanwhile does not start one):
            # waiting after each batch makes the snapshots this test expects
            s.wait_snapshot(timeout=30)
        s.flush()
        snaps = [x.offset for x in list_snapshots(s.env)]
        assert len(snaps) == 2 and snaps[0] > snaps[1]
        first, last = log_bounds(s.env)
        assert last == 130
        # compaction deleted every value whose records all precede the older kept snapshot; the
        # value holding its next record may begin before it (the snapshot was written in the
        # background, so a group may straddle it) and is kept whole
        (k0, v0), *_ = _values(s.env)
        assert first == k0 <= snaps[1] + 1 < k0 + len(split_value(k0, v0))
        want = _state(s)
    with DurableStore.open(path, config=cfg) as s2:
        assert _state(s2) == want


def test_an_automatic_snapshot_is_the_state_at_its_offset_while_commits_go_on(tmp_path):
    """The snapshot is written from a copy taken at the commit that crossed the threshold:
    the commits made while the background thread writes it do not leak into it, and closing
    waits for it."""
    from stdb._core.table import Table
    from stdb.storage.snapshot import load_snapshot
    path = str(tmp_path / "db")
    cfg = StoreConfig(snapshot_every_txs=30, snapshot_every_bytes=None)
    with DurableStore.open(path, config=cfg) as s:
        s.create_table(ACCT)
        _fill(s, 28)
        assert s._snap_thread is None
        _fill(s, 1, 28)                   # the 30th record: the snapshot starts
        assert s._snap_thread is not None
        at, want_then = s.log.next_offset - 1, _state(s)
        for row in want_then:             # change every row while it is being written
            tx = s.begin()
            tx.update("acct", (row[0], -row[1] - 1, "changed", []))
            s.commit(tx)
        want_now = _state(s)
    with DurableStore.open(path, config=cfg) as s:
        assert s.recovery.snapshot_offset == at and _state(s) == want_now
        (table,) = load_snapshot(s.env, at, Table)
        assert sorted(r for _, r in table.scan()) == want_then != want_now


def test_the_replayed_log_tail_counts_toward_the_next_snapshot(tmp_path):
    """A process that stops before every snapshot_every_txs commits still snapshots: the
    records recovery replayed count, so the tail (and the next start-up's replay) stays bounded."""
    path = str(tmp_path / "db")
    cfg = StoreConfig(snapshot_every_txs=30, snapshot_every_bytes=None)
    with DurableStore.open(path, config=cfg) as s:
        s.create_table(ACCT)                # record 0
        _fill(s, 19)                        # records 1..19: no snapshot yet
        assert s._snap_thread is None
    with DurableStore.open(path, config=cfg) as s:
        assert s.recovery.replayed == 20 and s.recovery.snapshot_offset is None
        _fill(s, 9, 19)
        assert s._snap_thread is None
        _fill(s, 1, 28)                     # 20 replayed + 10 new: the 30th record
        assert s._snap_thread is not None
        at = s.log.next_offset - 1
    with DurableStore.open(path, config=cfg) as s:
        assert s.recovery.snapshot_offset == at and s.recovery.replayed == 0


@settings(max_examples=200, deadline=None)
@given(types=st.lists(column_types(), min_size=1, max_size=5), data=st.data(),
       limit=st.sampled_from([1, 64, 4096]))
def test_snapshot_chunks_of_the_cython_table_are_the_twins_bytes_and_load_back(types, data, limit):
    """The snapshot's row framing written in Cython gives the bytes of the twin's Python (the
    format docs/log-format.md describes), and load_framed puts the rows back exactly."""
    from stdb._core import reference
    from stdb._core.table import Table
    schema = stdb.TableSchema("t", [stdb.Column(f"c{i}", t.name) for i, t in enumerate(types)])
    rows = data.draw(st.lists(st.tuples(*[values_of(t) for t in types]), max_size=30))
    fast, twin = Table(schema), reference.Table(schema)
    for row in rows:
        fast.insert(row)
        twin.insert(row)
    chunks, n = fast.framed_chunks(limit)
    assert (chunks, n) == twin.framed_chunks(limit) == fast.frozen().framed_chunks(limit)
    assert n == len(rows) and all(len(c) >= limit for c in chunks[:-1])
    again, again_twin = Table(schema), reference.Table(schema)
    assert sum(again.load_framed(c) for c in chunks) == sum(again_twin.load_framed(c) for c in chunks) == n
    assert again.framed_chunks(limit) == (chunks, n) == again_twin.framed_chunks(limit)


def test_load_framed_refuses_a_chunk_cut_short():
    from stdb._core.table import Table
    schema = stdb.TableSchema("t", [stdb.Column("a", "string")])
    t = Table(schema)
    t.insert(("hello",))
    (chunk,), _ = t.framed_chunks(1 << 20)
    for cut in (chunk[:2], chunk[:-1]):
        with pytest.raises(stdb.DataError, match="ends inside a row"):
            Table(schema).load_framed(cut)
    with pytest.raises(stdb.DataError, match="truncated string"):     # a row of 0 bytes, last
        Table(schema).load_framed(chunk + b"\x00\x00\x00\x00")
    assert Table(schema).load_framed(b"") == 0


def test_a_snapshot_keeps_an_auto_increment_column_that_holds_zero(tmp_path):
    """Loading a snapshot inserts rows as stored: an auto-increment value of 0 (set by an
    update) is not replaced by the next sequence value (it was, before 2026-11-30)."""
    path = str(tmp_path / "db")
    t = stdb.TableSchema("t", [stdb.Column("id", "u64"), stdb.Column("seq", "u64", auto_inc=True)],
                         primary_key="id")
    with DurableStore.open(path, config=NOSNAP) as s:
        s.create_table(t)
        tx = s.begin()
        tx.insert("t", (1, 0))
        tx.insert("t", (2, 0))
        s.commit(tx)
        tx = s.begin()
        tx.update("t", (1, 0))
        s.commit(tx)
        want = _state(s, "t")
        s.snapshot()
    assert want == [(1, 0), (2, 2)]
    with DurableStore.open(path, config=NOSNAP) as s:
        assert s.recovery.snapshot_offset is not None and s.recovery.replayed == 0
        assert _state(s, "t") == want


def test_recovery_progress_counts_snapshot_rows_then_log_records(tmp_path, monkeypatch):
    """The start-up progress bar covers the snapshot's rows and the log records after it."""
    import contextlib

    import stdb.storage.durable as durable
    path = str(tmp_path / "db")
    with DurableStore.open(path, config=NOSNAP) as s:
        s.create_table(ACCT)
        _fill(s, 30)                    # offsets 1..30
        snap_rows = s.snapshot().rows
        _fill(s, 5, 30)                 # offsets 31..35
    bars = []

    @contextlib.contextmanager
    def fake_bar(total, label, *, enabled=True):
        ticks: list[int] = []
        bars.append((total, label, ticks))
        yield ticks.append
    monkeypatch.setattr(durable, "progress_bar", fake_bar)
    with DurableStore.open(path, config=NOSNAP) as s:
        assert s.recovery.snapshot_offset == 30 and s.recovery.replayed == 5
    ((total, label, ticks),) = bars
    assert total == snap_rows + 36 and "snapshot rows + log records" in label   # 36 records kept
    assert ticks == sorted(ticks) and ticks[-1] == snap_rows + 5
    assert snap_rows in ticks           # every snapshot row, before the first log record


def test_no_memory_for_the_snapshot_copy_does_not_fail_the_commit(tmp_path, monkeypatch, caplog):
    from stdb._core import reference

    def no_memory(self):
        raise MemoryError()
    monkeypatch.setattr(reference.Table, "frozen", no_memory)
    cfg = StoreConfig(snapshot_every_txs=5, snapshot_every_bytes=None)
    with DurableStore.open(str(tmp_path / "db"), config=cfg, table_factory=reference.Table) as s:
        s.create_table(ACCT)
        offsets = _fill(s, 12)            # crosses the threshold twice
        assert offsets == list(range(1, 13)) and s.stats()["snapshots"] == []
        assert s.snapshot_error == "MemoryError()" and "automatic snapshot" in caplog.text


def test_a_captured_snapshot_written_after_close_is_refused(tmp_path):
    with DurableStore.open(str(tmp_path / "db"), config=NOSNAP) as s:
        s.create_table(ACCT)
        _fill(s, 3)
        write = s.capture_snapshot()
        other = s.capture_snapshot()
        info = write()
        assert info is not None and info.offset == 3
    with pytest.raises(stdb.StorageError, match="is closed"):
        other()


def _values(env):
    """[(key offset, value bytes)] of the log sub-database as stored."""
    with env.read() as txn:
        return [(lf.key_offset(bytes(k)), bytes(v)) for k, v in txn.cursor(db=env.db(LOG_DB))]


def relayout(env, per_value):
    """Store the log again with ``per_value`` consecutive records per LMDB value (1: layout 1)."""
    records = [(o, bytes(r)) for o, r in iter_records(env)]

    def put(txn):
        db = env.db(LOG_DB)
        txn.drop(db, delete=False)
        for i in range(0, len(records), per_value):
            run = records[i:i + per_value]
            txn.put(lf.offset_key(run[0][0]), b"".join(r for _, r in run), db=db)
    env.write(put)


def damage_record(env, offset, fn):
    """Replace the stored bytes of the record at ``offset`` with ``fn(bytes)``, in its value."""
    for key, value in _values(env):
        pieces = [bytes(r) for _, r in split_value(key, value)]
        if key <= offset < key + len(pieces):
            pieces[offset - key] = fn(pieces[offset - key])
            item = (lf.offset_key(key), b"".join(pieces))
            env.write(lambda txn, item=item: txn.put(*item, db=env.db(LOG_DB)))
            return
    raise AssertionError(f"no record at offset {offset}")


def _filled(path, n, per_value, then=lambda env: None):
    """A store of ``n`` + 1 records (create table + fills), laid out ``per_value`` per value;
    ``then(env)`` runs before it closes; returns what it returns."""
    with DurableStore.open(path, config=NOSNAP) as s:
        s.create_table(ACCT)
        _fill(s, n)
        s.flush()
        relayout(s.env, per_value)
        return then(s.env)


LAYOUTS = pytest.mark.parametrize("per_value", [1, 4, 1000],
                                  ids=["one-per-value", "4-per-value", "one-value"])


@LAYOUTS
@pytest.mark.parametrize("damage", [
    lambda raw: raw[:-3],                                   # torn (short) write
    lambda raw: raw[:20] + bytes([raw[20] ^ 0x40]) + raw[21:],  # flipped bit
], ids=["short", "flipped"])
def test_torn_tail_is_truncated_with_a_warning(tmp_path, damage, per_value, caplog):
    path = str(tmp_path / "db")
    _filled(path, 20, per_value, lambda env: damage_record(env, 20, damage))
    with DurableStore.open(path, config=NOSNAP) as s:
        assert s.recovery.torn == [20]
        assert any("offset 20" in w for w in s.recovery.warnings)
        assert s.log.next_offset == 20
        assert log_bounds(s.env) == (0, 19)     # the records sharing its value are kept
        expected_before_tail = _state(s)
        # the database carries on: the next commit takes offset 20 again
        tx = s.begin()
        tx.insert("acct", (0, 1, "after", []))
        assert s.commit(tx).offset == 20
        s.flush()
    with DurableStore.open(path, config=NOSNAP) as s:
        assert s.recovery.torn == []
        assert len(_state(s)) == len(expected_before_tail) + 1


def test_empty_tail_value_is_truncated(tmp_path):
    path = str(tmp_path / "db")
    _filled(path, 20, 1, lambda env: damage_record(env, 20, lambda raw: b""))
    with DurableStore.open(path, config=NOSNAP) as s:
        assert s.recovery.torn == [20] and s.log.next_offset == 20


@LAYOUTS
@pytest.mark.parametrize("damage", [
    lambda raw: raw[:30] + bytes([raw[30] ^ 1]) + raw[31:],        # a flipped body byte
    lambda raw: raw[:4] + bytes([raw[4] ^ 0x80]) + raw[5:],        # body length 128 bytes too long
    lambda raw: raw[:4] + bytes([raw[4] ^ 0x08]) + raw[5:],        # a wrong length (8 off)
], ids=["flipped-body", "length-long", "length-off"])
def test_damage_in_the_middle_is_refused(tmp_path, damage, per_value):
    path = str(tmp_path / "db")

    def damaged(env):
        damage_record(env, 10, damage)
        return _values(env)
    before = _filled(path, 20, per_value, damaged)
    with pytest.raises(stdb.StorageError, match="damaged at offset 10 and has valid records after it"):
        DurableStore.open(path, config=NOSNAP)
    # refused means unchanged: the damaged record and everything after it are still there
    env = Env(path, readonly=True)
    try:
        assert _values(env) == before
    finally:
        env.close()


def test_missing_record_is_refused(tmp_path):
    path = str(tmp_path / "db")
    with DurableStore.open(path, config=NOSNAP) as s:
        s.create_table(ACCT)
        _fill(s, 10)
        s.flush()
        relayout(s.env, 1)
        s.env.write(lambda txn: txn.delete(lf.offset_key(5), db=s.env.db(LOG_DB)))
    with pytest.raises(stdb.StorageError, match=r"missing records 5\.\.5"):
        DurableStore.open(path, config=NOSNAP)


def test_offset_stored_twice_is_refused(tmp_path):
    path = str(tmp_path / "db")

    def store_twice(env):                          # values at 0, 4, 8; 6 again on its own
        rec = next(bytes(r) for o, r in iter_records(env, 6) if o == 6)
        env.write(lambda txn: txn.put(lf.offset_key(6), rec, db=env.db(LOG_DB)))
    _filled(path, 10, 4, store_twice)
    with pytest.raises(stdb.StorageError, match="holds offset 6 twice"):
        DurableStore.open(path, config=NOSNAP)


def test_group_shares_values_and_reads_back(tmp_path):
    path = str(tmp_path / "db")
    with DurableStore.open(path, config=NOSNAP) as s:
        s.create_table(ACCT)
        _fill(s, 2000)
        s.flush(timeout=30)
        values = _values(s.env)
        assert len(values) == s.log.groups < 2001    # one value per group here (all small)
        offs = [o for o, _ in iter_records(s.env)]
        assert offs == list(range(2001))
        assert all(lf.decode_record(o, r).offset == o for o, r in iter_records(s.env))
        assert [o for o, _ in iter_records(s.env, 1500)] == list(range(1500, 2001))
        assert log_bounds(s.env) == (0, 2000)
        want = _state(s)
    with DurableStore.open(path, config=NOSNAP) as s:
        assert _state(s) == want and s.recovery.replayed == 2001


def test_big_groups_split_into_values_of_bounded_size(tmp_path):
    path = str(tmp_path / "db")
    with DurableStore.open(path, config=NOSNAP) as s:
        s.create_table(ACCT)
        s.log.flush()
        hold = threading.Lock()
        real = s.log._write_group

        def slow_write(first, group):           # hold the writer so that one group gathers
            with hold:
                real(first, group)
        s.log._write_group = slow_write
        n = 4 * BATCH_BYTES // 30000               # records of ~30 kB: about four values' worth
        with hold:
            for i in range(n):
                tx = s.begin()
                tx.insert("acct", (0, i, "x" * 30000, []))
                s.commit(tx)
        s.flush(timeout=30)
        values = _values(s.env)
        assert [o for o, _ in iter_records(s.env)] == list(range(n + 1))
        assert all(len(v) <= BATCH_BYTES for _, v in values)
        assert 4 <= len(values) <= 8               # n × ~30 kB in values of ≤ BATCH_BYTES
        want = _state(s)
    with DurableStore.open(path, config=NOSNAP) as s:
        assert _state(s) == want


def test_compaction_keeps_a_value_that_straddles_the_snapshot(tmp_path):
    from stdb.storage.commitlog import delete_log_through
    path = str(tmp_path / "db")

    def straddle(env):                      # values 0-3, 4-7, 8-10; snapshot covers through 5
        want = [(o, bytes(r)) for o, r in iter_records(env)]
        env.write(lambda txn: delete_log_through(txn, env, 5))
        assert [k for k, _ in _values(env)] == [4, 8]
        assert log_bounds(env) == (4, 10)
        assert [(o, bytes(r)) for o, r in iter_records(env, 6)] == want[6:]
        env.write(lambda txn: delete_log_through(txn, env, 10))
        assert log_bounds(env) is None
    _filled(path, 10, 4, straddle)


def test_layout_1_logs_read_and_get_marked(tmp_path):
    path = str(tmp_path / "db")
    _filled(path, 30, 1, lambda env: env.write(lambda txn: txn.delete(b"log_layout", db=env.db(META_DB))))
    with DurableStore.open(path, config=NOSNAP) as s2:
        assert s2.recovery.replayed == 31
        with s2.env.read() as txn:
            assert bytes(txn.get(b"log_layout", db=s2.env.db(META_DB))) == str(LOG_LAYOUT).encode()


@pytest.mark.parametrize("marker, error", [
    (b"99", "has layout 99; this build reads layouts up to 2"),
    (b"x2", r"log layout marker .* is unreadable \(b'x2'\)"),
])
def test_newer_or_unreadable_layout_is_refused(tmp_path, marker, error):
    path = str(tmp_path / "db")
    _filled(path, 3, 1, lambda env: env.write(lambda txn: txn.put(b"log_layout", marker, db=env.db(META_DB))))
    with pytest.raises(stdb.StorageError, match=error):
        DurableStore.open(path, config=NOSNAP)


def test_damaged_snapshot_falls_back(tmp_path):
    from stdb.storage.lmdbenv import SNAP_DB
    path = str(tmp_path / "db")
    with DurableStore.open(path, config=NOSNAP) as s:
        s.create_table(ACCT)
        _fill(s, 30)
        s.snapshot()
        _fill(s, 10, start=30)
        s.flush()
        want = _state(s)

        def flip(txn):
            cur = txn.cursor(db=s.env.db(SNAP_DB))
            assert cur.first()
            k, v = bytes(cur.key()), bytearray(cur.value())
            v[len(v) - 1] ^= 0x10          # inside the last row: framing intact, content changed
            txn.put(k, bytes(v), db=s.env.db(SNAP_DB))
        s.env.write(flip)
        with pytest.raises(stdb.StorageError, match="content hash"):
            verify_snapshot(s.env, 30)
    with DurableStore.open(path, config=NOSNAP) as s2:
        assert s2.recovery.snapshot_offset is None
        assert s2.recovery.bad_snapshots and s2.recovery.bad_snapshots[0][0] == 30
        assert _state(s2) == want


def _dup_table(m, chunks):
    m["tables"].append(m["tables"][0])
    chunks.update({(1, c): v for (t, c), v in list(chunks.items()) if t == 0})


def _extra_row(row):
    def damage(m, chunks):
        chunks[(0, 0)] += len(row).to_bytes(4, "little") + row
        m["tables"][0]["rows"] += 1
    return damage


@pytest.mark.parametrize("damage", [
    _extra_row(b"\x01"),                                                     # does not decode
    _extra_row(stdb.RowCodec("acct", ACCT.column_names, ACCT.column_types).encode((1, 0, "dup", []))),
    lambda m, chunks: m["tables"][0].pop("chunks"),
    lambda m, chunks: m["tables"][0].update(sequences=[1, 2]),
    lambda m, chunks: m["tables"][0].update(rows="30"),
    lambda m, chunks: m["tables"].append(7),
    _dup_table,
], ids=["undecodable-row", "duplicate-key", "no-chunk-count", "bad-sequences", "rows-not-int",
        "table-not-object", "table-twice"])
def test_consistent_but_invalid_snapshot_falls_back(tmp_path, damage):
    """Found by fuzz/fuzz_snapshot.py: a snapshot whose content hash verifies (rewritten
    consistently) but whose rows do not decode or fit, or whose manifest has the wrong shape,
    made recovery raise DataError / ConstraintError / KeyError / InternalError instead of
    skipping the snapshot (and a table listed twice loaded silently).  Each is now a damaged
    snapshot: recovery reports it and replays the log."""
    import hashlib
    import json

    from stdb.storage import snapshot as sn
    from stdb.storage.lmdbenv import SNAP_DB, SNAPMETA_DB
    path = str(tmp_path / "db")
    with DurableStore.open(path, config=NOSNAP) as s:
        s.create_table(ACCT)
        _fill(s, 30)
        s.snapshot()
        _fill(s, 5, start=30)
        s.flush()
        want = _state(s)

        def rewrite(txn):
            meta, cdb = s.env.db(SNAPMETA_DB), s.env.db(SNAP_DB)
            key = (30).to_bytes(8, "big")
            m = json.loads(bytes(txn.get(key, db=meta)))
            chunks = {(int.from_bytes(k[8:10], "big"), int.from_bytes(k[10:], "big")): bytes(v)
                      for k, v in txn.cursor(db=cdb) if bytes(k).startswith(key)}
            damage(m, chunks)
            h = hashlib.blake2b(digest_size=32)
            h.update(sn._canonical(m))
            for _, v in sorted(chunks.items()):
                h.update(v)
            m["hash"] = h.hexdigest()
            txn.put(key, json.dumps(m).encode(), db=meta)
            for (t, c), v in chunks.items():
                txn.put(key + t.to_bytes(2, "big") + c.to_bytes(4, "big"), v, db=cdb)
        s.env.write(rewrite)
    with DurableStore.open(path, config=NOSNAP) as s2:
        assert s2.recovery.snapshot_offset is None
        assert [b[0] for b in s2.recovery.bad_snapshots] == [30]
        assert _state(s2) == want


def test_damaged_snapshot_with_compacted_log_is_refused(tmp_path):
    from stdb.storage.lmdbenv import SNAPMETA_DB
    path = str(tmp_path / "db")
    cfg = StoreConfig(snapshot_every_txs=None, snapshot_every_bytes=None, keep_snapshots=1, compact_log=True)
    with DurableStore.open(path, config=cfg) as s:
        s.create_table(ACCT)
        _fill(s, 30)
        s.snapshot()
        _fill(s, 5, start=30)
        s.flush()

        def spoil(txn):
            cur = txn.cursor(db=s.env.db(SNAPMETA_DB))
            assert cur.first()
            txn.put(bytes(cur.key()), b"{not json", db=s.env.db(SNAPMETA_DB))
        s.env.write(spoil)
    with pytest.raises(stdb.StorageError, match="compacted"):
        DurableStore.open(path, config=cfg)


def test_wait_durable_from_another_thread(tmp_path):
    with DurableStore.open(str(tmp_path / "db"), config=NOSNAP) as s:
        s.create_table(ACCT)
        offs = _fill(s, 30)
        done = []
        t = threading.Thread(target=lambda: (s.wait_durable(offs[-1], timeout=10), done.append(1)))
        t.start()
        t.join(20)
        assert done == [1]


def test_a_commit_the_failed_log_refuses_leaves_nothing_in_memory(tmp_path):
    s = DurableStore.open(str(tmp_path / "db"), config=NOSNAP)
    try:
        s.create_table(ACCT)
        tx = s.begin()
        tx.insert("acct", (0, 1, "kept", []))
        s.commit(tx)
        s.flush()

        def broken_write(first, group):      # durable mode: LMDB's fsync at commit fails
            raise OSError(5, "Input/output error")

        s.log._write_group = broken_write
        tx = s.begin()
        tx.insert("acct", (0, 2, "lost", []))
        with pytest.raises(stdb.StorageError):
            s.wait_durable(s.commit(tx).offset, timeout=10)
        # the log has failed: the next commit is refused and rolled back, not half-done
        tx = s.datastore.begin()
        tx.insert("acct", (0, 3, "refused", []))
        with pytest.raises(stdb.StorageError, match="acknowledges nothing further"):
            s.commit(tx)
        assert not tx.is_open
        assert "refused" not in [r[2] for r in s.datastore.scan("acct")]
    finally:
        s.close()


def test_refused_table_changes_touch_neither_memory_nor_log(tmp_path):
    with DurableStore.open(str(tmp_path / "db"), config=NOSNAP) as s:
        s.create_table(ACCT)
        with pytest.raises(stdb.SchemaError, match="already exists"):
            s.create_table(ACCT)
        with pytest.raises(stdb.SchemaError, match="no table"):
            s.drop_table("missing")
        tx = s.begin()
        with pytest.raises(stdb.TransactionError):
            s.create_table(stdb.TableSchema("other", [("a", "u8")]))
        tx.rollback()
        s.flush()
        assert log_bounds(s.env) == (0, 0)
        assert s.datastore.table_names == ["acct"]
        assert s.drop_table("acct") == 1
    with DurableStore.open(str(tmp_path / "db"), config=NOSNAP) as s2:
        assert s2.datastore.table_names == []


def test_rows_holding_nan_replay_after_update_and_delete(tmp_path):
    """Regression: replaying a logged delete compared rows with ==, and NaN != NaN, so a
    database whose log updated or deleted such a row could not be reopened."""
    schema = stdb.TableSchema("m", [stdb.Column("id", "u64"), stdb.Column("x", "f64")], primary_key="id")
    nan = float("nan")
    path = str(tmp_path / "db")
    with DurableStore.open(path, config=NOSNAP) as store:
        store.create_table(schema)
        for fn in (lambda tx: tx.insert("m", (1, nan)), lambda tx: tx.insert("m", (2, nan)),
                   lambda tx: tx.update("m", (1, 3.0)), lambda tx: tx.delete("m", 2)):
            store.transact(fn)
    with DurableStore.open(path, config=NOSNAP) as store:
        assert list(store.datastore.scan("m")) == [(1, 3.0)]
        assert store.recovery.replayed == 5


def test_durable_mode_refuses_an_environment_without_lmdbs_sync(tmp_path):
    from stdb.storage.commitlog import CommitLog
    env = Env(str(tmp_path / "db"), durable=False)
    try:
        with pytest.raises(stdb.StorageError, match="durable mode needs an environment that syncs at commit"):
            CommitLog(env, durability="durable")
        CommitLog(env, durability="relaxed").close()      # relaxed mode syncs on its interval
    finally:
        env.close()
