"""A database with its published module: ``publish``, ``call``, lifecycle and schedules.

Reducers are the only way state changes.  ``Database.call`` runs one in a transaction over
the durable store: commit (through the commit log) when it returns success, rollback when it
returns an error, traps or hits a limit.  One module per database; the module's wasm and its
description are kept in the database (LMDB meta) so a restart needs no re-publish.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import wasmtime

from stdb._core.schema import TableSchema, schema_to_dict
from stdb.errors import DataError, InternalError, ModuleError, ReducerError
from stdb.module import _wasm
from stdb.module._call import CallPath, CallResult
from stdb.module._host import NativeHost
from stdb.module.describe import ABI_VERSION, ModuleSchema, ReducerDef, parse_description
from stdb.module.host import Limits
from stdb.module.settings import DEFAULT_SETTINGS, Settings
from stdb.query.ast import Explain, Select
from stdb.query.budget import QueryLimits
from stdb.query.parser import parse as parse_sql
from stdb.query.service import QueryDiff, QueryResult, QueryService, Subscribed
from stdb.storage.datastore import TxDelta
from stdb.storage.durable import DurableStore, StoreConfig
from stdb.storage.lmdbenv import META_DB

__all__ = ["Database", "CallResult", "PublishResult", "Limits", "ZERO_IDENTITY"]

log = logging.getLogger("stdb.module")

ZERO_IDENTITY = bytes(32)
TICK_SECONDS = 0.005                      # epoch ticker period: the time-limit resolution
_MODULE_KEY = b"module.wasm"
_MODULE_INFO_KEY = b"module.info"
_SETTINGS_KEY = b"settings"           # the owner's settings that differ from the defaults (JSON)
_DESCRIBE_FUEL = 100_000_000
MAX_ERROR_MESSAGE = 8192                  # bytes of a reducer's error message kept
LOG_RING = 1000                          # module log records a database keeps

_engine_lock = threading.Lock()
_engine: wasmtime.Engine | None = None


def engine() -> wasmtime.Engine:
    """The process's wasmtime engine (fuel metering and epoch interruption on), with its
    epoch ticker started on first use."""
    global _engine
    with _engine_lock:
        if _engine is None:
            cfg = wasmtime.Config()
            cfg.consume_fuel = True
            cfg.epoch_interruption = True
            cfg.cranelift_opt_level = "speed"
            e = wasmtime.Engine(cfg)
            _wasm.start_epoch_ticker(e, TICK_SECONDS)
            _engine = e
        return _engine


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class PublishResult:
    created_tables: list[str] = field(default_factory=list)
    altered_tables: list[str] = field(default_factory=list)
    reducers: list[str] = field(default_factory=list)
    first_publish: bool = False
    init: CallResult | None = None
    # an update ends every subscription (plans, indexes and visibility may have changed):
    # whoever was subscribed must subscribe again
    unsubscribed: set[Any] = field(default_factory=set)


def _is_identity(v: Any) -> bool:
    return isinstance(v, bytes) and len(v) == 32


def _check_sender(sender: Any) -> None:
    if not _is_identity(sender):
        raise DataError("sender must be a 32-byte identity")


class Database:
    """One database: a durable store and (after ``publish``) its module.

    Not thread-safe: calls run one at a time (the server runs reducers serially per database).
    ``clock`` returns the database time in µs since the epoch (tests pass a fake one).
    """

    def __init__(self, path: str, *, limits: Limits | None = None, config: StoreConfig | None = None,
                 clock: Callable[[], int] = now_us, progress: bool = False) -> None:
        self.path = path
        self._path = CallPath(self, now_us, TICK_SECONDS)   # the native call path (_call.pyx)
        self.call = self._path.call            # type: ignore[method-assign]  # the method below, one frame less
        self.limits = limits or Limits()
        self.clock = clock
        self.store = DurableStore(path, config, progress=progress)
        self.logger = logging.getLogger(f"stdb.module.{path}")
        # the module's log records (every version of it), newest last; on_log hears each new one
        self.recent_logs: deque[dict] = deque(maxlen=LOG_RING)
        self.on_log: Callable[[dict], None] | None = None
        self.schema: ModuleSchema | None = None
        self.owner: bytes | None = None
        self._module: wasmtime.Module | None = None
        self._host = None
        self._inst = None
        self._codecs: list[Any] = []
        self.queries = QueryService(self.store.datastore, lambda: self.owner,
                                    lambda: self.schema.visibility if self.schema is not None else {})
        # called with {query id: QueryDiff} after every commit that changed a subscribed result
        self.on_update: Callable[[dict[int, QueryDiff]], None] | None = None
        # told of every change to what the database keeps beside its log, once it is stored: ("module",
        # wasm, info) — ("module", None, None) when a failed first publish is undone — and
        # ("settings", json, None); stdb/replication/ publishes these in log order
        self.on_meta: Callable[[str, bytes | None, bytes | None], None] | None = None
        self._path.attach(self.store, self.queries.subs, None, [])
        self.settings: Settings = DEFAULT_SETTINGS
        try:
            self._load_settings()
            self._load_stored_module()
        except BaseException:
            self.store.close()
            raise

    # kept by the call path, which reads them at every call
    @property
    def limits(self) -> Limits:
        return self._path.limits

    @limits.setter
    def limits(self, value: Limits) -> None:
        self._path.limits = value

    @property
    def _host(self) -> NativeHost | None:
        return self._path.host

    @_host.setter
    def _host(self, value: NativeHost | None) -> None:
        self._path.host = value

    @property
    def _inst(self) -> Any:
        return self._path.inst

    @_inst.setter
    def _inst(self, value: Any) -> None:
        self._path.inst = value

    @classmethod
    def open(cls, path: str, **kw: Any) -> Database:
        return cls(path, **kw)

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._inst = None
        self.store.close()

    def _log(self, entry: dict) -> None:
        self.recent_logs.append(entry)
        if self.on_log is not None:
            self.on_log(entry)

    def describe(self) -> dict:
        """The published module's schema as plain data (docs/protocol.md, ``DescribeResult``):
        tables with columns, keys, indexes, visibility and the reducer a schedule table drives;
        reducers with their parameters.  ModuleError when nothing is published."""
        if self.schema is None:
            raise ModuleError(f"{self.path}: no module is published", hint="publish one first")
        sch = self.schema
        tables = []
        for t in sch.tables:
            d = schema_to_dict(t)
            d["scheduled"] = sch.schedules.get(t.name)
            d["visibility"] = [f.sql for f in sch.visibility.get(t.name, ())]
            tables.append(d)
        reducers = [{"name": r.name, "params": [{"name": c.name, "type": c.type.name} for c in r.params],
                     "lifecycle": r.lifecycle} for r in sch.reducers]
        return {"tables": tables, "reducers": reducers, "owner": self.owner}

    # ---- module loading

    def _compile(self, wasm: bytes) -> wasmtime.Module:
        if not isinstance(wasm, (bytes, bytearray)):
            raise ModuleError(f"publish needs the module's wasm bytes, got {type(wasm).__name__}")
        try:
            module = wasmtime.Module(engine(), bytes(wasm))
        except wasmtime.WasmtimeError as e:
            raise ModuleError(f"not a valid WebAssembly module: {_wasm._first_line(str(e))}") from None
        _wasm.check_imports(module)
        return module

    def _describe(self, module: wasmtime.Module) -> tuple[ModuleSchema, bytes]:
        host = NativeHost(None, self.limits, self.logger)
        inst = _wasm.instantiate(engine(), module, host, memory_limit=self.limits.memory_bytes)
        ticks = self._ticks()
        try:
            version = inst.call_abi_version(_DESCRIBE_FUEL, ticks)
            if version != ABI_VERSION:
                raise ModuleError(f"the module speaks ABI version {version}; this host speaks version "
                                  f"{ABI_VERSION}", hint="rebuild it with a matching SDK")
            packed = inst.call_describe(_DESCRIBE_FUEL, ticks) & 0xFFFFFFFFFFFFFFFF
            raw = inst.read_memory(packed >> 32, packed & 0xFFFFFFFF)
        except _wasm.CallTrap as e:
            raise ModuleError(f"the module trapped while describing itself ({e.kind}): {e.message}") from None
        except _wasm.MemoryFault as e:
            raise ModuleError(f"stdb_describe returned a bad pointer: {e}") from None
        return parse_description(raw), raw

    def _prepare(self, module: wasmtime.Module, schema: ModuleSchema) -> tuple[NativeHost, list, Any]:
        """Everything a module needs to run, built without changing the database."""
        host = NativeHost(schema, self.limits, self.logger, self._log)
        codecs = [r.codec() for r in schema.reducers]
        inst = _wasm.instantiate(engine(), module, host, memory_limit=self.limits.memory_bytes)
        return host, codecs, inst

    def _activate(self, module: wasmtime.Module, schema: ModuleSchema,
                  prepared: tuple[NativeHost, list, Any]) -> None:
        self._module = module
        self.schema = schema
        self._host, self._codecs, self._inst = prepared
        self._path.attach(self.store, self.queries.subs, schema, self._codecs)

    def _instance(self) -> Any:
        if self._inst is None:
            assert self._module is not None
            self._inst = _wasm.instantiate(engine(), self._module, self._host,
                                           memory_limit=self.limits.memory_bytes)
        return self._inst

    def _load_stored_module(self) -> None:
        env = self.store.env
        with env.read() as txn:
            wasm = txn.get(_MODULE_KEY, db=env.db(META_DB))
            info = txn.get(_MODULE_INFO_KEY, db=env.db(META_DB))
            wasm = bytes(wasm) if wasm is not None else None
            info = json.loads(bytes(info)) if info is not None else None
        if wasm is None or info is None:
            return
        if hashlib.sha256(wasm).hexdigest() != info.get("sha256"):
            raise ModuleError(f"{self.path}: the stored module does not match its hash",
                              hint="publish the module again")
        module = self._compile(wasm)
        schema, _ = self._describe(module)
        for t in schema.tables:
            if t.name not in self.store.datastore.table_names:
                raise ModuleError(f"{self.path}: the stored module has table '{t.name}', the data does not",
                                  hint="publish the module again")
        self.owner = bytes.fromhex(info["owner"]) if info.get("owner") else None
        self._activate(module, schema, self._prepare(module, schema))

    def _load_settings(self) -> None:
        env = self.store.env
        with env.read() as txn:
            raw = txn.get(_SETTINGS_KEY, db=env.db(META_DB))
            raw = bytes(raw) if raw is not None else None
        if raw is not None:
            try:
                self.settings = Settings.from_json(raw)
            except DataError as e:      # the defaults apply (they are the small ones) until set again
                self.logger.error("%s: the stored settings are damaged (%s); the defaults apply until "
                                  "the owner sets them again (stdb settings)", self.path, e.detail)

    def set_settings(self, changes: dict[str, Any]) -> Settings:
        """Change settings (stdb/module/settings.py: key → value, None for the default), checked
        first and stored durably before they apply; DataError and nothing changes otherwise."""
        new = self.settings.with_changes(changes)
        raw = new.to_json()
        env = self.store.env
        env.write(lambda txn: txn.put(_SETTINGS_KEY, raw, db=env.db(META_DB)))
        env.sync()
        self.settings = new
        self._meta("settings", raw, None)
        return new

    def _meta(self, kind: str, data: bytes | None, info: bytes | None) -> None:
        if self.on_meta is not None:
            self.on_meta(kind, data, info)

    def _store_module(self, wasm: bytes, owner: bytes | None, info: bytes | None = None) -> None:
        """Keep the module and its info (made here unless given: a replica stores the
        leader's) durably in the meta sub-database."""
        if info is None:
            info = json.dumps({"sha256": hashlib.sha256(wasm).hexdigest(),
                               "owner": owner.hex() if owner else None,
                               "published_at": self.clock(), "abi": ABI_VERSION}).encode()
        env = self.store.env

        def put(txn: Any) -> None:
            txn.put(_MODULE_KEY, bytes(wasm), db=env.db(META_DB))
            txn.put(_MODULE_INFO_KEY, info, db=env.db(META_DB))
        env.write(put)
        env.sync()
        self._meta("module", bytes(wasm), info)

    def _unpublish(self, created: list[str]) -> None:
        """Undo a first publish whose init failed: drop the tables it created, forget the
        module (the log keeps the create and drop records)."""
        for name in reversed(created):
            self.store.drop_table(name)
        self.store.flush()
        self._forget_module()
        self._meta("module", None, None)

    def _forget_module(self) -> None:
        """No module any more: forgotten on disk (durably), then here."""
        env = self.store.env

        def forget(txn: Any) -> None:
            txn.delete(_MODULE_KEY, db=env.db(META_DB))
            txn.delete(_MODULE_INFO_KEY, db=env.db(META_DB))
        env.write(forget)
        env.sync()
        self.schema = None
        self.owner = None
        self._module = self._host = self._inst = None
        self._codecs = []
        self._path.attach(self.store, self.queries.subs, None, [])

    # ---- publish

    def publish(self, wasm: bytes, *, owner: bytes | None = None) -> PublishResult:
        """Validate the module, create or migrate its tables, run ``init`` on first publish.

        A change that cannot migrate automatically (a table removed, a column removed, added
        or retyped, the primary key changed) is refused with a ModuleError listing every
        difference, and nothing changes."""
        if owner is not None and not _is_identity(owner):
            raise DataError("owner must be a 32-byte identity")
        if self.owner is not None and owner is not None and owner != self.owner:
            raise ModuleError("only the database's owner may publish to it")
        module = self._compile(wasm)
        schema, _ = self._describe(module)
        first = self.schema is None
        plan = self._plan(schema)
        prepared = self._prepare(module, schema)
        # build every altered table before anything is written: a new unique index that the
        # rows break refuses the publish here
        for t in plan["alter"]:
            self.store.datastore.altered_table(t)
        result = PublishResult(first_publish=first, reducers=[r.name for r in schema.reducers])
        for t in plan["create"]:
            self.store.create_table(t)
            result.created_tables.append(t.name)
        for t in plan["alter"]:
            self.store.alter_table(t)
            result.altered_tables.append(t.name)
        self.store.flush()
        self._store_module(bytes(wasm), owner if owner is not None else self.owner)
        if owner is not None:
            self.owner = owner
        self._activate(module, schema, prepared)
        if not first:
            result.unsubscribed = self.queries.reset()
        if first:
            idx = schema.lifecycle("init")
            if idx is not None:
                try:
                    result.init = self._run(idx, (), owner or ZERO_IDENTITY, bytes(16), None)
                except ReducerError as e:
                    self._unpublish(result.created_tables)
                    raise ModuleError(f"the module's init failed ({e.detail}); nothing was published",
                                      hint="fix init (it runs once, on the first publish)") from None
        log.info("%s: published module (%d tables, %d reducers; created %s, altered %s)", self.path,
                 len(schema.tables), len(schema.reducers), result.created_tables, result.altered_tables)
        return result

    def _plan(self, schema: ModuleSchema) -> dict[str, list[TableSchema]]:
        ds = self.store.datastore
        existing = {n: ds.schema(n) for n in ds.table_names}
        problems: list[str] = []
        create: list[TableSchema] = []
        alter: list[TableSchema] = []
        new_names = {t.name for t in schema.tables}
        if self.schema is not None:
            for t in self.schema.tables:
                if t.name not in new_names:
                    problems.append(f"table '{t.name}' was removed")
        for t in schema.tables:
            old = existing.get(t.name)
            if old is None:
                create.append(t)
                continue
            old_cols = {c.name: c for c in old.columns}
            new_cols = {c.name: c for c in t.columns}
            for name, c in old_cols.items():
                if name not in new_cols:
                    problems.append(f"table '{t.name}': column '{name}' was removed")
                elif new_cols[name].type.name != c.type.name:
                    problems.append(f"table '{t.name}': column '{name}' changed type from "
                                    f"{c.type.name} to {new_cols[name].type.name}")
                elif new_cols[name].auto_inc != c.auto_inc:
                    problems.append(f"table '{t.name}': column '{name}' changed auto_inc")
            for name in new_cols:
                if name not in old_cols:
                    problems.append(f"table '{t.name}': column '{name}' was added "
                                    "(existing rows have no value)")
            if [c.name for c in old.columns] != [c.name for c in t.columns] and \
                    set(old_cols) == set(new_cols):
                problems.append(f"table '{t.name}': columns were reordered")
            if old.primary_key != t.primary_key:
                problems.append(f"table '{t.name}': primary key changed from {list(old.primary_key)} "
                                f"to {list(t.primary_key)}")
            if schema_to_dict(old) != schema_to_dict(t):
                alter.append(t)
        if problems:
            raise ModuleError("the new module is not compatible with the database: " + "; ".join(problems),
                              hint="compatible changes: new tables, new or removed indexes, new reducers, "
                                   "visibility")
        return {"create": create, "alter": alter}

    # ---- calls

    def _ticks(self) -> int:
        return max(1, int(self.limits.time / TICK_SECONDS + 0.999)) + 1

    def _timestamp(self, ts: int | None) -> int:
        """``ts`` or the clock's time, strictly increasing per database (kept by the call path)."""
        return self._path.timestamp(ts)

    def reducer(self, name: str) -> ReducerDef:
        if self.schema is None:
            raise ModuleError(f"{self.path}: no module is published", hint="publish one first")
        idx = self.schema.reducer_index(name)
        if idx is None:
            raise ReducerError(f"no reducer named {name!r}", reducer=name, kind="error",
                               hint="reducers: " + ", ".join(r.name for r in self.schema.reducers))
        return self.schema.reducers[idx]

    @property
    def call_path(self) -> CallPath:
        """The native call path (the server's CallReducer lane calls ``call_encoded`` on it)."""
        return self._path

    def call(self, reducer: str, args: Sequence[Any] = (), *, sender: bytes = ZERO_IDENTITY,
             connection_id: bytes | None = None, timestamp: int | None = None) -> CallResult:
        """Run ``reducer(*args)`` as ``sender`` in a transaction; CallResult on commit,
        ReducerError (with ``kind``) when it returned an error, trapped or hit a limit."""
        return self._path.call(reducer, args, sender=sender, connection_id=connection_id,
                               timestamp=timestamp)

    def _refuse_call(self, reducer: str) -> CallResult:
        """Raise why ``call(reducer)`` cannot run: no module, no such reducer, a lifecycle one."""
        rd = self.reducer(reducer)
        raise ReducerError(f"reducer '{reducer}' is the {rd.lifecycle} lifecycle reducer; "
                           "the database calls it itself", reducer=reducer)

    def client_connected(self, sender: bytes, connection_id: bytes | None = None) -> CallResult | None:
        return self._lifecycle("client_connected", sender, connection_id)

    def client_disconnected(self, sender: bytes, connection_id: bytes | None = None) -> CallResult | None:
        return self._lifecycle("client_disconnected", sender, connection_id)

    def _lifecycle(self, kind: str, sender: bytes, connection_id: bytes | None) -> CallResult | None:
        idx = self.schema.lifecycle(kind) if self.schema is not None else None
        if idx is None:
            return None
        return self._run(idx, (), sender, connection_id, None)

    def _run(self, idx: int, args: Sequence[Any], sender: bytes, connection_id: bytes | None,
             timestamp: int | None, before_commit: Callable[[Any], None] | None = None) -> CallResult:
        """Run reducer number ``idx`` through the native call path (stdb/module/_call.pyx)."""
        if self.schema is None or self._host is None:
            raise ModuleError(f"{self.path}: no module is published", hint="publish one first")
        return self._path.run(idx, args, sender, connection_id, timestamp, before_commit)

    # what the call path raises (it hands every failure back here, after rollback)

    def _bad_call(self, name: str, what: str, value: Any) -> None:
        if what == "sender":
            raise DataError("sender must be a 32-byte identity")
        if what == "connection_id":
            raise DataError("connection_id must be 16 bytes")
        if what == "args":
            raise DataError(f"reducer '{name}': arguments must be a list or tuple, "
                            f"got {type(value).__name__}")
        assert self.schema is not None
        idx = self.schema.reducer_index(name)
        assert idx is not None
        rd = self.schema.reducers[idx]
        raise DataError(f"reducer '{name}': {value.detail}".replace(f"table 'reducer {name}', ", ""),
                        hint="parameters: " + ", ".join(f"{c.name} {c.type.name}" for c in rd.params))

    def _call_refused_by_reducer(self, name: str, inst: Any, packed: int, fuel: int) -> CallResult:
        """The reducer returned an error message ((len << 32) | ptr): its ReducerError."""
        packed &= 0xFFFFFFFFFFFFFFFF
        n = packed >> 32
        try:
            msg = inst.read_memory(packed & 0xFFFFFFFF, min(n, MAX_ERROR_MESSAGE)).decode("utf-8", "replace")
            if n > MAX_ERROR_MESSAGE:       # (it travels in one TransactionUpdate, a log line, ...)
                msg += f"… (cut: the message is {n:,} bytes, at most {MAX_ERROR_MESSAGE:,} are kept)"
        except _wasm.MemoryFault:
            msg = f"(the error message pointer {packed & 0xFFFFFFFF} is outside memory)"
        raise ReducerError(f"reducer '{name}' failed: {msg}", reducer=name, kind="error",
                           message=msg, fuel_used=fuel)

    def _call_trapped(self, name: str, e: Exception, inst: Any, fuel: int) -> CallResult:
        """The call trapped (``e``: CallTrap) or its stdb_alloc gave bad memory (MemoryFault)."""
        if isinstance(e, _wasm.MemoryFault):
            raise ReducerError(f"reducer '{name}' trapped: stdb_alloc gave memory the host cannot "
                               f"use ({e})", reducer=name, kind="trap", message=str(e)) from None
        assert isinstance(e, _wasm.CallTrap)
        if inst.host_error is not None:
            raise InternalError(f"reducer '{name}': the host failed in an import: "
                                f"{inst.host_error!r}") from inst.host_error
        msg = e.message
        if e.kind == "trap":
            msg += self._panic_message(name)
        if e.kind == "out_of_fuel":
            msg = f"it used its whole fuel budget of {self.limits.fuel:,}"
        elif e.kind == "timeout":
            msg = f"it ran for more than {self.limits.time:g} s"
        raise ReducerError(f"reducer '{name}' {_KIND_TEXT[e.kind]}: {msg}", reducer=name,
                           kind=e.kind, message=msg, backtrace=e.backtrace, fuel_used=fuel) from None

    def _panic_message(self, name: str) -> str:
        """`` (panicked at ...)`` when the trapped call's last log line is an error-level line
        starting "panicked at " (docs/abi.md: how a panicking module names its panic)."""
        host = self._host
        if host is None or not host.recent_logs:
            return ""
        last = host.recent_logs[-1]
        if (last["reducer"] == name and last["ts"] == host.timestamp and last["level"] == "error"
                and last["message"].startswith("panicked at ")):
            text = last["message"]
            return f" ({text[:1000]}{'…' if len(text) > 1000 else ''})"     # (a log line may be a MiB)
        return ""

    def _updates(self, delta: TxDelta) -> dict[int, QueryDiff]:
        updates = self.queries.on_commit(delta)
        if updates and self.on_update is not None:
            try:
                self.on_update(updates)
            except Exception:
                # the transaction is committed: a failing listener must not make it look failed
                log.exception("%s: the on_update listener failed", self.path)
        return updates

    # ---- queries and subscriptions

    def subscribe(self, queries: Sequence[str], subscriber: Any = None, *,
                  sender: bytes = ZERO_IDENTITY, limits: QueryLimits | None = None,
                  max_rows: int | None = None, held: int = 0,
                  cancelled: Callable[[], bool] | None = None) -> list[Subscribed]:
        """Subscribe ``subscriber`` (any hashable key; the server uses its connection) to SQL
        queries; returns each query's id, normalized text and current rows.  Later commits
        report diffs per query id (``CallResult.updates`` and ``on_update``).  ``limits``,
        ``max_rows``, ``held``, ``cancelled``: what reading the current rows may cost and come to
        (QueryService.subscribe)."""
        _check_sender(sender)
        return self.queries.subscribe(queries, subscriber, sender, limits, max_rows, held, cancelled)

    def unsubscribe(self, query_id: int, subscriber: Any = None) -> bool:
        return self.queries.unsubscribe(query_id, subscriber)

    def unsubscribe_all(self, subscriber: Any = None) -> int:
        return self.queries.unsubscribe_all(subscriber)

    def subscribers(self, query_id: int) -> set[Any]:
        return self.queries.subs.subscribers(query_id)

    def query(self, sql: str, *, sender: bytes = ZERO_IDENTITY) -> QueryResult:
        """A one-off SELECT over the committed state."""
        _check_sender(sender)
        return self.queries.query(sql, sender)

    def sql(self, sql: str, *, sender: bytes = ZERO_IDENTITY, limits: QueryLimits | None = None,
            cancelled: Callable[[], bool] | None = None,
            refuse_writes: Callable[[], Exception] | None = None) -> QueryResult | CallResult:
        """Run SQL: a SELECT (or EXPLAIN SELECT) as ``query`` (under ``limits`` when given:
        stdb/query/budget.py; stopped with a QueryError once ``cancelled()`` is true);
        INSERT / UPDATE / DELETE (the owner only) in one transaction through the commit log,
        logged with reducer name ``:sql`` and the text (unless ``refuse_writes``: what it returns is
        raised instead)."""
        _check_sender(sender)
        st = parse_sql(sql)
        if isinstance(st, (Select, Explain)):
            return self.queries.query(sql, sender, st, limits, cancelled)
        if refuse_writes is not None:
            raise refuse_writes()
        ts = self._timestamp(None)
        t0 = time.perf_counter()
        tx = self.store.begin()
        try:
            self.queries.dml(sql, sender, tx, st)
        except BaseException:
            tx.rollback()
            raise
        commit = self.store.commit(tx, reducer=":sql", args=sql.encode("utf-8"), caller=sender, timestamp=ts)
        return CallResult(":sql", commit.offset, commit.delta, 0, ts, time.perf_counter() - t0,
                          self._updates(commit.delta))

    # ---- schedules

    def due(self, now: int | None = None) -> list[tuple[int, int, str]]:
        """(scheduled_at, scheduled_id, table) of every schedule row due at ``now``, in order."""
        if self.schema is None:
            return []
        now = self.clock() if now is None else now
        out = []
        for table in self.schema.schedules:
            for row in self.store.datastore.scan(table):
                if row[1] <= now:
                    out.append((row[1], row[0], table))
        out.sort()
        return out

    def next_due(self) -> int | None:
        """When the next scheduled reducer is due (µs), or None."""
        if self.schema is None:
            return None
        times = [row[1] for table in self.schema.schedules for row in self.store.datastore.scan(table)]
        return min(times) if times else None

    def run_due(self, now: int | None = None) -> list[CallResult | ReducerError]:
        """Call every scheduled reducer that is due at ``now`` (the database clock by default),
        in order of (scheduled_at, scheduled_id).  A one-shot row is deleted in its call's
        transaction; a repeating one moves to its next time after ``now``.  A failing call is
        reported in the list and its row is handled the same way (no retry storm)."""
        now = self.clock() if now is None else now
        results: list[CallResult | ReducerError] = []
        for _at, sid, table in self.due(now):
            assert self.schema is not None
            rows = self.store.datastore.table(table).seek("pk", sid)
            if not rows:
                continue                      # an earlier call in this round deleted it
            row = self.store.datastore.table(table).get(rows[0])
            reducer = self.schema.schedules[table]
            idx = self.schema.reducer_index(reducer)
            assert idx is not None
            advance = functools.partial(_advance, table=table, row=row, now=now)
            try:
                res: CallResult | ReducerError = self._run(idx, row, ZERO_IDENTITY, None, None,
                                                           before_commit=advance)
            except ReducerError as e:
                self._reschedule(table, row, now)
                res = e
            results.append(res)
        return results

    def _reschedule(self, table: str, row: tuple, now: int) -> None:
        """After a failed scheduled call: drop a one-shot row, move a repeating one on."""
        tx = self.store.begin()
        try:
            _advance(tx, table, row, now)
        except BaseException:
            tx.rollback()
            raise
        commit = self.store.commit(tx, reducer="", args=b"", caller=None, timestamp=self._timestamp(None))
        self._updates(commit.delta)


_KIND_TEXT = {"trap": "trapped", "out_of_fuel": "ran out of fuel", "timeout": "ran past its time limit"}


def _advance(tx: Any, table: str, row: tuple, now: int) -> None:
    """Delete a fired one-shot schedule row or move a repeating one past ``now``."""
    t = tx.table(table)
    ids = t.seek("pk", row[0])
    if not ids:
        return
    cur = t.get(ids[0])
    repeat = cur[2]
    if repeat <= 0:
        tx.delete_rowid(table, ids[0])
        return
    at = cur[1]
    steps = max(1, (now - at) // repeat + 1)
    tx.update(table, (cur[0], at + steps * repeat) + tuple(cur[2:]))

