"""What a follower does to its copy of a database (stdb/replication/, docs/replication.md).

A follower's database changes only through these: the leader's log records, applied with
their exact bytes into its own log (``apply_record``), and what the leader keeps beside the
log — the module and the settings (``install_module``, ``install_settings``).  Every function
runs on the database's execution thread, like a reducer call on the leader.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from stdb.errors import ModuleError, StorageError
from stdb.module._call import CallResult
from stdb.module.database import _MODULE_INFO_KEY, _MODULE_KEY, _SETTINGS_KEY, Database
from stdb.module.settings import Settings
from stdb.storage.commitlog import iter_records
from stdb.storage.lmdbenv import META_DB

__all__ = ["apply_record", "install_module", "install_settings", "local_record", "module_sha256",
           "stored_module"]


def apply_record(db: Database, offset: int, raw: bytes) -> tuple[CallResult | None, bytes | None]:
    """Apply the leader's record at ``offset`` (this log's next): a transaction's result (its
    subscribed queries' diffs computed as on the leader) and its caller; (None, None) for a
    table record.  StorageError when the record is damaged or does not apply."""
    rec, delta = db.store.replicate_record(offset, raw)
    db.call_path.timestamp(rec.timestamp)       # this node's next commit, should it lead, comes later
    if delta is None:
        return None, None
    updates = db._updates(delta)
    return CallResult(rec.reducer, offset, delta, 0, rec.timestamp, 0.0, updates), rec.caller


def local_record(db: Database, offset: int) -> bytes | None:
    """This node's own record at ``offset`` (None: it has none there)."""
    for off, rec in iter_records(db.store.env, offset):
        return bytes(rec) if off == offset else None
    return None


def module_sha256(db: Database) -> str | None:
    env = db.store.env
    with env.read() as txn:
        info = txn.get(_MODULE_INFO_KEY, db=env.db(META_DB))
        raw = bytes(info) if info is not None else None
    return json.loads(raw).get("sha256") if raw is not None else None


def stored_module(db: Database) -> tuple[bytes, bytes]:
    """The stored module's wasm and info (a new leader publishes them when the stream lacks them)."""
    env = db.store.env
    with env.read() as txn:
        wasm = txn.get(_MODULE_KEY, db=env.db(META_DB))
        info = txn.get(_MODULE_INFO_KEY, db=env.db(META_DB))
        if wasm is None or info is None:
            raise ModuleError(f"{db.path}: no module is stored")
        return bytes(wasm), bytes(info)


def install_module(db: Database, wasm: bytes | None, info: bytes | None) -> list[Any]:
    """Make the leader's module this database's: checked (it compiles, describes itself, and
    this copy has its tables: the log brought them), stored, then active.  ``wasm`` None: the
    leader undid a failed first publish.  Returns the subscribers a new version unsubscribed."""
    if wasm is None:
        db._forget_module()
        return []
    meta = json.loads(info or b"{}")
    if hashlib.sha256(wasm).hexdigest() != meta.get("sha256"):
        raise StorageError("the replicated module does not match its hash")
    module = db._compile(wasm)
    schema, _ = db._describe(module)
    for t in schema.tables:
        if t.name not in db.store.datastore.table_names:
            raise ModuleError(f"{db.path}: the replicated module has table '{t.name}', the replica does not")
    prepared = db._prepare(module, schema)
    first = db.schema is None
    owner = bytes.fromhex(meta["owner"]) if meta.get("owner") else None
    db._store_module(wasm, owner, info)
    db.owner = owner
    db._activate(module, schema, prepared)
    return [] if first else list(db.queries.reset())


def install_settings(db: Database, raw: bytes) -> None:
    """The leader's settings (checked; stored durably before they apply)."""
    new = Settings.from_json(raw)
    env = db.store.env
    env.write(lambda txn: txn.put(_SETTINGS_KEY, raw, db=env.db(META_DB)))
    env.sync()
    db.settings = new

