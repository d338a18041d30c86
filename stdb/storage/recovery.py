"""Start-up recovery: the newest snapshot whose hash verifies, then the log tail.

* A record that fails its checks (CRC, length, version, offset) at the *tail* of the log —
  nothing valid after it, not even inside the damaged bytes — is a torn write: in repair
  mode it is deleted with a warning naming its offset; read-only callers get it reported in
  ``RecoveryResult.torn``.
* Damage in the *middle* of the log (a valid record after a bad one, or a gap in the
  offsets) is refused with a StorageError: replaying past it would silently lose a
  committed transaction, and stopping before it would silently drop the later ones.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stdb._core.logrec import apply_value, check_value
from stdb.errors import StdbError, StorageError
from stdb.storage import logformat as lf
from stdb.storage.commitlog import check_layout, iter_values, log_bounds, split_value, truncate_log
from stdb.storage.datastore import Datastore
from stdb.storage.lmdbenv import Env
from stdb.storage.snapshot import delete_snapshot, list_snapshots, load_snapshot

__all__ = ["RecoveryResult", "LogScan", "recover", "apply_record", "scan_log", "rewind_log"]

log = logging.getLogger("stdb.recovery")


@dataclass
class RecoveryResult:
    datastore: Datastore
    next_offset: int                  # the offset the next commit gets
    snapshot_offset: int | None       # the snapshot recovery started from
    replayed: int = 0                 # log records applied
    row_ops: int = 0
    torn: list[int] = field(default_factory=list)          # torn tail records (deleted if repaired)
    bad_snapshots: list[tuple[int, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def apply_record(ds: Datastore, rec: lf.LogRecord) -> int:
    """Apply one decoded record to the datastore's tables; returns the row operations done."""
    if rec.kind == lf.KIND_CREATE_TABLE:
        assert rec.schema is not None
        ds.create_table(rec.schema)
        return 0
    if rec.kind == lf.KIND_DROP_TABLE:
        ds.drop_table(rec.table)
        return 0
    if rec.kind == lf.KIND_ALTER_TABLE:
        assert rec.schema is not None
        try:
            ds.alter_table(rec.schema)
        except StdbError as e:
            raise StorageError(f"log record at offset {rec.offset} (alter table '{rec.schema.name}') "
                               f"cannot be applied: {e.detail}") from None
        return 0
    n = 0
    for ch in rec.changes:
        n += _apply_change(ds, rec.offset, ch.table, ch.deletes, ch.inserts)
    return n


def rewind_log(path: str, offset: int) -> None:
    """Forget everything from ``offset`` on in the database at ``path`` (closed): the log's
    records and every snapshot at or after it.  A follower whose log went past what the
    replicated stream holds does this, then opens (recovers) the database again."""
    env = Env(path, durable=True)
    try:
        for s in list_snapshots(env):
            if s.offset >= offset:
                delete_snapshot(env, s.offset)
        truncate_log(env, offset)
        env.sync()
    finally:
        env.close()


def _apply_change(ds: Datastore, offset: int, table: str, deletes: list[bytes], inserts: list[bytes]) -> int:
    """Apply one table's rows of the record at ``offset``; returns the row operations done."""
    try:
        return ds.table(table).apply_encoded(deletes, inserts)
    except StdbError as e:
        raise StorageError(f"log record at offset {offset} cannot be applied to table "
                           f"'{table}': {e.detail}") from None


@dataclass
class LogScan:
    """What a pass over the log found, without applying anything."""

    bad: list[int] = field(default_factory=list)   # offsets of records that fail their checks
    first_bad: int | None = None
    valid_after_bad: int | None = None             # a good record after a bad one: mid-log damage
    gap: tuple[int, int] | None = None             # (first missing, last missing) offsets
    last_good: int | None = None
    # per table: rows inserted minus rows deleted by the TX records checked in C (a hint: what
    # the replay will add to each table, for sizing its indexes once instead of by doubling)
    row_counts: dict[str, int] = field(default_factory=dict)

    @property
    def mid_log_damage(self) -> bool:
        return self.valid_after_bad is not None or self.gap is not None


def scan_log(env: Env, start: int) -> LogScan:
    """Classify the log from ``start``: torn tail, damage in the middle, or missing records."""
    scan = LogScan()
    expected = start
    for first, whole in iter_values(env, start):
        if first == expected and scan.first_bad is None:
            n = check_value(whole, scan.row_counts)    # the common case, every record intact: in C
            if n > 0:
                scan.last_good = first + n - 1
                expected = first + n
                continue
        for off, value in split_value(first, whole):
            if off < start:
                continue
            if (done := _scan_record(scan, off, value, expected)) is not None:
                return done
            expected = off + 1
    return scan


def _scan_record(scan: LogScan, off: int, value: bytes | memoryview, expected: int) -> LogScan | None:
    """One record's part of ``scan_log``: the finished scan when what follows no longer
    matters (damage in the middle, a gap), else None."""
    if off != expected:
        if scan.first_bad is not None:
            # a damaged length hid how many records its value held: what follows is
            # still a later record, so this is damage in the middle
            scan.valid_after_bad = off
        else:
            scan.gap = (expected, off - 1)     # off < expected: an offset stored twice
        return scan
    try:
        lf.check_header(off, value)
        ok = True
    except StorageError:
        ok = False
    if ok and scan.first_bad is None:
        scan.last_good = off
    elif ok:
        scan.valid_after_bad = off
        return scan
    else:
        if scan.first_bad is None:
            scan.first_bad = off
        scan.bad.append(off)
        hidden = lf.find_record_inside(value)
        if hidden is not None:
            # an intact record inside the damaged bytes (a broken length hid it): it was
            # committed, so this is damage in the middle, not a torn write
            scan.valid_after_bad = hidden
            return scan
    return None


def recover(env: Env, *, table_factory: Callable | None = None, repair: bool = True,
            to_offset: int | None = None,
            progress: Callable[[int, int], None] | None = None,
            snapshot_rows: Callable[[int], None] | None = None) -> RecoveryResult:
    """Rebuild the datastore from ``env``.

    ``to_offset`` stops after that record (point-in-time replay); ``progress(done, total)`` is
    called as records are applied, ``snapshot_rows(n)`` as each chunk of ``n`` snapshot rows
    is loaded.  ``repair`` deletes a torn tail (read-write opens only).
    """
    check_layout(env)
    ds = Datastore(table_factory)
    bounds = log_bounds(env)
    result = RecoveryResult(ds, 0, None)

    # 1. the newest snapshot that verifies (and is not past to_offset)
    snap_off = None
    for info in list_snapshots(env):
        if to_offset is not None and info.offset > to_offset:
            continue
        try:
            tables = load_snapshot(env, info.offset, ds._factory, on_rows=snapshot_rows)
        except StorageError as e:
            result.bad_snapshots.append((info.offset, e.detail))
            msg = f"snapshot at offset {info.offset} is damaged and was skipped: {e.detail}"
            result.warnings.append(msg)
            log.warning(msg)
            ds = Datastore(table_factory)
            result.datastore = ds
            continue
        for t in tables:
            ds._tables[t.name] = t
        snap_off = info.offset
        break
    result.snapshot_offset = snap_off
    start = 0 if snap_off is None else snap_off + 1
    result.next_offset = start
    if bounds is None:
        if snap_off is None and list_snapshots(env):
            raise StorageError("every snapshot is damaged and the log is empty: nothing to recover from")
        return result
    first, last = bounds
    if first > start:
        raise StorageError(
            f"the log starts at offset {first} but recovery needs offset {start} "
            f"({'no usable snapshot' if snap_off is None else f'snapshot at {snap_off}'}); "
            f"records {start}..{first - 1} were compacted away",
            hint="restore the damaged snapshot from a backup")

    # 2. find damage before applying anything
    scan = scan_log(env, start)
    hint = ("inspect with `python -m tools.logtool verify`; `replay --to` can rebuild the state "
            "before the damage")
    if scan.gap is not None:
        a, b = scan.gap
        if b < a:
            raise StorageError(f"the commit log holds offset {b + 1} twice (after {a - 1}); "
                               f"refusing to guess which is the committed one", hint=hint)
        raise StorageError(f"the commit log is missing records {a}..{b} (it jumps from offset {a - 1} "
                           f"to {b + 1}); refusing to skip committed transactions", hint=hint)
    bad, first_bad = scan.bad, scan.first_bad
    if scan.valid_after_bad is not None:
        raise StorageError(
            f"the commit log is damaged at offset {first_bad} and has valid records after it "
            f"(e.g. offset {scan.valid_after_bad}); refusing to skip a committed transaction", hint=hint)
    if first_bad is not None:
        msg = (f"torn write at the tail of the commit log: record(s) at offset "
               f"{', '.join(map(str, bad))} failed their checks and "
               f"{'were truncated' if repair else 'are ignored'}")
        result.warnings.append(msg)
        log.warning(msg)
        result.torn = bad
        if repair:
            truncate_log(env, first_bad)

    # 3. replay the tail
    stop = last if first_bad is None else first_bad - 1
    if to_offset is not None:
        stop = min(stop, to_offset)
    # replay allocates millions of short-lived objects, none in a cycle: the collector's passes
    # over them cost ~9% of it (more in a process holding many objects, like the server's)
    collecting = gc.isenabled()
    gc.disable()
    try:
        result.replayed = _replay(env, ds, result, start, stop, progress, scan.row_counts)
    finally:
        if collecting:
            gc.enable()
    return result


def _reserve(ds: Datastore, hints: dict[str, int], names: Any) -> None:
    """Size the indexes of tables ``names`` for the rows the log will add to them (``hints``,
    from ``scan_log``), each once: one rehash instead of one per doubling."""
    for name in names:
        extra = hints.pop(name, 0)
        table = ds._tables.get(name)
        reserve = getattr(table, "reserve", None)      # the native tables'
        if extra > 0 and reserve is not None:
            reserve(extra)


def _replay(env: Env, ds: Datastore, result: RecoveryResult, start: int, stop: int,
            progress: Callable[[int, int], None] | None, hints: dict[str, int] | None = None) -> int:
    """Apply records ``start..stop`` (checked by ``scan_log``) to ``ds``; returns how many.

    Native tables take whole log values of TX records in C (``logrec.apply_value``, straight
    from the bytes); a create / drop / alter-table record, a value that does not check out, or
    the pure-Python tables go record by record through ``logformat`` and ``apply_record``.
    ``hints``: rows the log adds per table; each table's indexes are sized for them when the
    replay starts (tables from the snapshot) or when its create-table record is applied."""
    total = max(0, stop - start + 1)
    done = 0
    next_report = 1000
    hints = dict(hints or {})
    if hints:
        _reserve(ds, hints, list(ds._tables))
    for first, whole in iter_values(env, start):
        if first > stop:
            break
        frm = max(start, first)
        while ds.native and frm <= stop:
            applied, ops, status, detail = apply_value(first, whole, frm, stop, ds._tables)
            done += applied
            result.row_ops += ops
            if applied:
                result.next_offset = frm + applied
            if status == 0:
                frm = stop + 1                      # the rest of the value is past stop, or none
                break
            if status == 2:
                off, table, message, _code = detail
                where = f" to table '{table}'" if table is not None else ""
                raise StorageError(f"log record at offset {off} cannot be applied{where}: {message}")
            frm = detail                            # status 1 or 3: this one the slow way
            if frm > stop:
                break
            pieces = [(o, r) for o, r in split_value(first, whole) if o == frm]
            if not pieces:
                break
            _apply_one(ds, result, frm, pieces[0][1])
            if hints:                               # a table it created: sized before its rows
                _reserve(ds, hints, [n for n in hints if n in ds._tables])
            done += 1
            frm += 1
        if not ds.native:
            for off, raw in split_value(first, whole):
                if start <= off <= stop:
                    _apply_one(ds, result, off, raw)
                    done += 1
        if progress is not None and done >= next_report:
            progress(done, total)
            next_report = done + 1000
    if progress is not None:
        progress(done, total)
    return done


def _apply_one(ds: Datastore, result: RecoveryResult, off: int, raw: bytes | memoryview) -> None:
    """Decode and apply one record (any kind), record by record."""
    try:
        result.row_ops += apply_record(ds, lf.decode_record(off, raw))
    except StorageError:
        raise
    except StdbError as e:
        raise StorageError(f"log record at offset {off} cannot be applied: {e.detail}") from None
    result.next_offset = off + 1
