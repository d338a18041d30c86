"""A small demo: the storage engine (create a table, commit, print what happened), a
durable store that survives a restart, then the transfer example module built from C and
run through ``Database.call``.

Run with ``python -m stdb.demo [DATA_DIR]``.  (The server and its demo module replace this
once they exist.)
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile

import stdb


def main() -> None:
    ds = stdb.Datastore()
    ds.create_table(stdb.TableSchema(
        "account",
        [stdb.Column("id", "u64", auto_inc=True), stdb.Column("owner", "string"),
         stdb.Column("balance", "i64")],
        primary_key="id",
        indexes=[stdb.IndexDef("by_balance", "balance", "btree")],
    ))
    print("created table account(id u64 auto_inc primary key, owner string, balance i64)")

    with ds.begin() as tx:
        for owner, balance in [("alice", 100), ("bob", 50), ("carol", 75)]:
            print("  insert", tx.insert("account", (0, owner, balance)))
    print("committed 3 accounts")

    tx = ds.begin()
    alice, bob = tx.get("account", 1), tx.get("account", 2)
    assert alice is not None and bob is not None
    tx.update("account", (alice[0], alice[1], alice[2] - 30))
    tx.update("account", (bob[0], bob[1], bob[2] + 30))
    delta = tx.commit()
    print("transfer 30 alice -> bob committed; delta:")
    for table, d in delta.tables.items():
        for row in d.deletes:
            print(f"  {table} - {row}")
        for row in d.inserts:
            print(f"  {table} + {row}")

    tx = ds.begin()
    try:
        tx.insert("account", (1, "mallory", 10**6))
    except stdb.ConstraintError as e:
        print(f"refused: {e.detail}")
    try:
        tx.insert("account", (0, "mallory", "lots"))
    except stdb.DataError as e:
        print(f"refused: {e.detail}")
    tx.rollback()

    with ds.begin() as tx:
        rich = tx.range("account", "by_balance", lo=75)
    print("accounts with balance >= 75:", rich)
    print("final state:", sorted(ds.scan("account")))
    data = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="stdb-demo-")
    durable(os.path.join(data, "store"))
    module(os.path.join(data, "bank"))


def durable(path: str) -> None:
    """Commit through the commit log, close, reopen: recovery brings everything back."""
    schema = stdb.TableSchema(
        "note", [stdb.Column("id", "u64", auto_inc=True), stdb.Column("text", "string")], primary_key="id")
    with stdb.DurableStore.open(path) as store:
        if "note" not in store.datastore.table_names:
            store.create_table(schema)
        tx = store.begin()
        row = tx.insert("note", (0, f"written at offset {store.log.next_offset}"))
        commit = store.commit(tx, reducer="demo")
        store.wait_durable(commit.offset)
        print(f"durable store at {path}: committed {row} at offset {commit.offset}; "
              f"durable up to offset {store.durable_offset}")
    with stdb.DurableStore.open(path) as store:
        print(f"reopened: recovery replayed {store.recovery.replayed} log records; "
              f"notes: {sorted(store.datastore.scan('note'))}")


def module(path: str) -> None:
    """Build examples/transfer/transfer.c with the C SDK, publish it, call its reducers."""
    src = pathlib.Path(__file__).resolve().parents[1] / "examples" / "transfer" / "transfer.c"
    wasm_path = path + ".wasm"
    stdb.build_module(str(src), wasm_path)
    with stdb.Database(path) as db:
        if db.schema is None:
            pub = db.publish(pathlib.Path(wasm_path).read_bytes())
            print(f"published {src.name} ({os.path.getsize(wasm_path):,} bytes of wasm): "
                  f"tables {pub.created_tables}, reducers {pub.reducers}")
            db.call("create_account", (1, 100))
            db.call("create_account", (2, 50))
        res = db.call("transfer", (1, 2, 30))
        print(f"transfer(1, 2, 30) committed at log offset {res.offset} using {res.fuel_used} fuel: "
              f"{res.delta.tables['account'].inserts}")
        try:
            db.call("transfer", (2, 1, 10**6))
        except stdb.ReducerError as e:
            print(f"transfer(2, 1, 1000000) rolled back: {e.message}")
        print("accounts:", sorted(db.store.datastore.scan("account")))


if __name__ == "__main__":
    main()
