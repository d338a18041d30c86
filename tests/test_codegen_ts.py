"""`stdb generate --lang typescript`: TypeScript bindings from a module's description (the node
tests in sdk/typescript compile them with tsc and use them against a server)."""

from __future__ import annotations

import pytest

from stdb import Database, build_module
from stdb.client.codegen_ts import typescript_bindings, typescript_type
from tests.test_server import ROOT


def describe(tmp_path, name: str) -> dict:
    wasm = build_module(str(ROOT / f"examples/{name}/{name}.c"), str(tmp_path / f"{name}.wasm"))
    db = Database(str(tmp_path / name))
    try:
        with open(wasm, "rb") as f:
            db.publish(f.read())
        return db.describe()
    finally:
        db.close()


@pytest.mark.parametrize("t, row, arg", [
    ("u8", "number", "number"), ("i32", "number", "number"), ("u64", "bigint", "bigint | number"),
    ("i64", "bigint", "bigint | number"), ("timestamp", "bigint", "bigint | number"),
    ("f64", "number", "number"),
    ("bool", "boolean", "boolean"), ("string", "string", "string"), ("identity", "Uint8Array", "Uint8Array"),
    ("bytes", "Uint8Array", "Uint8Array"), ("option<u64>", "bigint | null", "bigint | number | null"),
    ("array<string>", "string[]", "string[]"), ("array<u64>", "bigint[]", "(bigint | number)[]"),
    ("something<new>", "Value", "Value"),
])
def test_column_types(t, row, arg):
    assert typescript_type(t) == row
    assert typescript_type(t, argument=True) == arg


def test_bindings_of_the_transfer_and_chat_examples(tmp_path):
    bank = typescript_bindings(describe(tmp_path, "transfer"), "bank")
    assert 'import type { DbConnection, ReducerOutcome, Row, TableCache, Value } from "@stdb/client";' in bank
    assert ("export interface Account extends Row {\n  readonly id: bigint; // u64\n"
            "  readonly balance: bigint; // i64\n}") in bank
    assert "export type AccountKey = bigint | number;" in bank
    assert ("  transfer(from: bigint | number, to: bigint | number, amount: bigint | number): "
            "Promise<ReducerOutcome> {\n"
            '    return this.conn.call("transfer", from, to, amount);') in bank
    assert "createAccount(id: bigint | number, balance: bigint | number)" in bank
    assert "init(" not in bank                         # lifecycle reducers are the server's
    chat = typescript_bindings(describe(tmp_path, "chat"), "chat", sdk="../src/index.js")
    assert 'from "../src/index.js";' in chat
    assert "  readonly sent: bigint; // timestamp" in chat
    assert "  readonly id: Uint8Array; // identity" in chat
    assert '    message: conn.table<Message>("message"),' in chat
    assert "sendMessage(text: string)" in chat and "clientConnected" not in chat


def test_names_that_are_not_identifiers_are_made_safe():
    columns = [{"name": "a b", "type": "u8"}, {"name": "ok", "type": "bool"}]
    params = [{"name": "new", "type": "string"}, {"name": "2x", "type": "option<i64>"}]
    table = {"name": "my-table", "columns": columns, "primary_key": ["a b", "ok"], "public": False}
    module = {"tables": [table],
              "reducers": [{"name": "do-it", "params": params, "lifecycle": None},
                           {"name": "constructor", "params": [], "lifecycle": None}]}
    src = typescript_bindings(module, "db")
    assert "export interface MyTable extends Row {" in src and '  readonly "a b": number; // u8' in src
    assert "(private); primary key a b, ok" in src and "export type MyTableKey = unknown[];" in src
    assert '  "my-table": TableCache<MyTable>;' in src
    assert "  doIt(new_: string, _2x: bigint | number | null): Promise<ReducerOutcome> {" in src
    assert '    return this.conn.call("do-it", new_, _2x);' in src
    assert "  constructor_(): Promise<ReducerOutcome> {" in src
