"""The offline log tool: every command from the command line, read-only, damage → non-zero exit."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

import stdb
from stdb.storage.durable import DurableStore, StoreConfig
from stdb.storage.lmdbenv import Env
from tests.test_durable import damage_record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = stdb.TableSchema("acct", [("id", "u64", True), ("bal", "i64"), ("who", "string")], primary_key="id")
OTHER = stdb.TableSchema("log", [("n", "u32")])


def tool(*args):
    p = subprocess.run([sys.executable, "-m", "tools.logtool", *args], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "db")
    with DurableStore.open(path, config=StoreConfig(snapshot_every_txs=40, snapshot_every_bytes=None)) as s:
        s.create_table(SCHEMA)            # offset 0
        s.create_table(OTHER)             # offset 1
        for i in range(100):              # offsets 2..101
            tx = s.begin()
            tx.insert("acct", (0, i, f"u{i}"))
            if i % 10 == 0:
                tx.insert("log", (i,))
            if i >= 50:
                tx.update("acct", (i - 49, -i, "moved"))
            s.commit(tx, reducer="even" if i % 2 == 0 else "odd", caller=bytes([i]) * 32)
            s.wait_snapshot(timeout=30)   # written in the background: now at offsets 39 and 79
    return path


def _digest(path):
    with open(os.path.join(path, "data.mdb"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_inspect_and_stats(db):
    before = _digest(db)
    rc, out, _ = tool("inspect", db)
    assert rc == 0
    info = json.loads(out)
    assert info["log"]["first_offset"] == 0 and info["log"]["last_offset"] == 101
    assert info["log_layout"] == 2
    assert info["log"]["kinds"] == {"create_table": 2, "tx": 100}
    assert info["log"]["row_ops_per_table"]["log"] == 10
    assert [s["offset"] for s in info["snapshots"]] == [79, 39]   # every 40 records, newest 2 kept
    rc, out, _ = tool("stats", db)
    st = json.loads(out)
    assert rc == 0 and st["records"] == 102
    assert st["reducers"] == {"even": 50, "odd": 50}
    assert st["tables"]["acct"]["inserts"] == 150 and st["tables"]["acct"]["deletes"] == 50
    assert _digest(db) == before, "the tool changed the database"


def test_verify_ok_then_damaged(db):
    rc, out, _ = tool("verify", db)
    assert rc == 0 and "OK" in out
    env = Env(db, durable=False)
    damage_record(env, 60, lambda raw: b"\x01garbage")
    env.close()
    before = _digest(db)
    rc, out, _ = tool("verify", db)
    assert rc == 1
    assert "offset 60" in out and "middle" in out
    assert _digest(db) == before


def test_dump_filters(db):
    rc, out, _ = tool("dump", db, "--from", "50", "--to", "60", "--reducer", "even")
    assert rc == 0
    recs = [json.loads(x) for x in out.splitlines()]
    assert [r["offset"] for r in recs] == [50, 52, 54, 56, 58, 60]
    assert recs[0]["tables"]["acct"]["inserts"][0] == [49, 48, "u48"]
    rc, out, _ = tool("dump", db, "--table", "log")
    recs = [json.loads(x) for x in out.splitlines()]
    assert recs[0]["kind"] == "create_table" and recs[0]["schema"]["name"] == "log"
    assert all(list(r.get("tables", {"log": 0})) == ["log"] for r in recs)
    assert len(recs) == 11


def test_replay_to_offset(db, tmp_path):
    out_dir = str(tmp_path / "at70")
    rc, out, err = tool("replay", db, "--to", "70", "--out", out_dir)
    assert rc == 0, err
    assert json.loads(out)["replayed_to"] == 70
    # the same state, computed independently from a full recovery stopped at 70
    from stdb.storage.recovery import recover
    env = Env(db, readonly=True)
    try:
        want = recover(env, repair=False, to_offset=70).datastore
    finally:
        env.close()
    with DurableStore.open(out_dir) as s:
        assert s.log.next_offset == 71
        for name in ("acct", "log"):
            assert sorted(s.datastore.scan(name)) == sorted(want.scan(name))
        assert s.datastore.count("acct") == 69          # offsets 2..70 each inserted one row
    rc, _, err = tool("replay", db, "--to", "70", "--out", out_dir)
    assert rc == 1 and "already holds a database" in err


def test_missing_database_is_a_clear_error(tmp_path):
    rc, _, err = tool("inspect", str(tmp_path / "nope"))
    assert rc == 2 and "no database" in err
