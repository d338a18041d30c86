"""The `stdb` command end to end: `stdb start --demo` in a process of its own, the client
commands against it (as a user in another terminal would run them), SIGTERM to stop."""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import trio
from click.testing import CliRunner

from stdb.cli import main
from stdb.client import connect
from tests.test_server import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"stdb start exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("stdb start did not listen in time")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    port, mport = free_port(), free_port()
    env = dict(os.environ, STDB_CONFIG_DIR=str(d / "cfg"), STDB_SERVER=f"ws://127.0.0.1:{port}")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stdb", "start", "--demo", "--data", str(d / "data"), "--listen",
         f"127.0.0.1:{port}", "--metrics", f"127.0.0.1:{mport}", "--log-format", "json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=d)
    try:
        wait_port(port, proc)
        yield {"dir": d, "port": port, "mport": mport, "env": env, "proc": proc}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def run(demo, *args, ok=True):
    r = CliRunner().invoke(main, list(args), env=demo["env"], catch_exceptions=False)
    if ok:
        assert r.exit_code == 0, r.output
    return r


def test_demo_chat_from_the_command_line(demo):
    run(demo, "call", "chat", "send_message", '"hello, world"')
    run(demo, "call", "chat", "send_message", "bare words are text")
    r = run(demo, "call", "chat", "send_message", '""', ok=False)
    assert r.exit_code == 1 and "messages must not be empty" in r.output
    r = run(demo, "call", "chat", "send_message", "a", "b", ok=False)
    assert r.exit_code == 1 and "takes 1 argument(s) (text: string); 2 given" in r.output
    r = run(demo, "sql", "chat", "SELECT id, text FROM message ORDER BY id", "--json")
    assert [json.loads(x) for x in r.output.splitlines()] == \
        [{"id": 1, "text": "hello, world"}, {"id": 2, "text": "bare words are text"}]
    r = run(demo, "sql", "chat", "SELECT COUNT(*) AS n FROM message")
    assert "2" in r.output and "(1 row)" in r.output
    # a timestamp column: a UTC date in the table, µs in JSON
    r = run(demo, "sql", "chat", "SELECT sent FROM message WHERE id = 1", "--json")
    sent = json.loads(r.output)["sent"]
    when = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(microseconds=sent)
    assert abs(when - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(hours=1)
    r = run(demo, "sql", "chat", "SELECT id, sent AS at FROM message WHERE id = 1")
    assert when.strftime("%Y-%m-%d %H:%M:%S.%f UTC") in r.output and str(sent) not in r.output
    r = run(demo, "sql", "chat", "EXPLAIN SELECT text FROM message WHERE id = 2", "--json")
    assert [json.loads(x) for x in r.output.splitlines()] == [
        {"step": 1, "plan": "message: index pk seek (1 key) — counted in the index (exact)",
         "estimated_rows": 1},
        {"step": None, "plan": "total rows examined", "estimated_rows": 1}]
    r = run(demo, "sql", "chat", "SELEKT", ok=False)
    assert r.exit_code == 1 and "query_error" in r.output
    # the CLI's identity owns the demo database: DML is allowed
    r = run(demo, "sql", "chat", "DELETE FROM message WHERE id = 2", "--json")
    assert json.loads(r.output) == {"changed_rows": 1}
    r = run(demo, "describe", "chat", "--json")
    mod = json.loads(r.output)
    assert [t["name"] for t in mod["tables"]] == ["user", "message"]
    assert "reducer send_message(text string)" in run(demo, "describe", "chat").output
    arena = json.loads(run(demo, "describe", "arena", "--json").output)      # the second demo database
    assert {"player", "food"} <= {t["name"] for t in arena["tables"]} and arena["owner"] == mod["owner"]
    ident = run(demo, "identity").output.split()[1]
    assert ident == mod["owner"]
    assert run(demo, "logs", "chat").output == ""       # the chat module logs nothing


def test_subscribe_prints_live_diffs(demo):
    proc = subprocess.Popen([sys.executable, "-m", "stdb", "subscribe", "chat", "SELECT * FROM message",
                             "--json", "-n", "1", "--timeout", "60"], env=demo["env"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)            # let it subscribe (a diff sent before that would arrive as a row)
        run(demo, "call", "chat", "send_message", '"live one"')
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    live = [x for x in lines if x["row"][3] == "live one"]
    assert len(live) == 1 and live[0]["op"] == "insert" and live[0]["reducer"] == "send_message"
    assert live[0]["offset"] is not None


def test_publish_generate_and_use_bindings(demo, tmp_path):
    r = run(demo, "publish", "bank", str(ROOT / "examples/transfer/transfer.c"))
    assert "published bank" in r.output and "tables created ['account']" in r.output
    run(demo, "call", "bank", "create_account", "1", "100")
    run(demo, "call", "bank", "create_account", "2", "0")
    assert "transfer module initialised" in run(demo, "logs", "bank").output
    out = tmp_path / "bank_bindings.py"
    run(demo, "generate", "bank", "-o", str(out))
    src = out.read_text()
    assert "class Account:" in src and "    balance: int  # i64" in src
    assert "async def transfer(self, from_: int, to: int, amount: int) -> ReducerOutcome:" in src
    assert "def init(" not in src                       # lifecycle reducers are the server's
    spec = importlib.util.spec_from_file_location("bank_bindings", out)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bank_bindings"] = mod
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules["bank_bindings"]

    async def use():
        async with connect(demo["env"]["STDB_SERVER"], "bank") as conn:
            reducers = mod.Reducers(conn)
            await conn.subscribe("SELECT * FROM account")
            assert (await reducers.transfer(from_=1, to=2, amount=30)).ok
            assert not (await reducers.transfer(from_=2, to=1, amount=10**6)).ok
            accounts = {a.key: a for a in map(mod.Account.from_row, conn.table("account"))}
            assert accounts[1].balance == 70 and accounts[2].balance == 30
    trio.run(use)
    r = run(demo, "snapshot", "bank")
    assert re.fullmatch(r"snapshot of bank at offset \d+: 2 rows, [\d,]+ bytes\n", r.output), r.output
    r = run(demo, "delete", "bank", ok=False)           # asks first; no answer: nothing deleted
    assert r.exit_code != 0
    run(demo, "delete", "bank", "--yes")
    r = run(demo, "sql", "bank", "SELECT * FROM account", ok=False)
    assert r.exit_code == 1 and "no_such_database" in r.output


def test_build_and_offline_log_tool(demo, tmp_path):
    wasm = tmp_path / "chat.wasm"
    r = run(demo, "build", str(ROOT / "examples/chat/chat.c"), "-o", str(wasm))
    assert wasm.stat().st_size > 0 and "bytes" in r.output
    r = run(demo, "build", str(ROOT / "examples/chat/chat.c"), "-o", str(tmp_path / "x.wasm"), "-O", "bogus",
            ok=False)
    assert r.exit_code == 1 and "module_error" in r.output
    db = demo["dir"] / "data" / "databases" / "chat"
    r = subprocess.run([sys.executable, "-m", "stdb", "log", "verify", str(db)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "stdb", "log", "dump", str(db), "--table", "message"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "hello, world" in r.stdout


def test_metrics_then_graceful_sigterm(demo):
    # runs last in this module: it stops the server
    run(demo, "call", "chat", "send_message", '"counted"')
    body = urllib.request.urlopen(f"http://127.0.0.1:{demo['mport']}/metrics", timeout=10).read().decode()
    series = 'stdb_reducer_calls_total{database="chat",reducer="send_message",status="committed"}'
    calls = [line for line in body.splitlines() if line.startswith(series)]
    assert calls and float(calls[0].split()[-1]) >= 1
    assert 'stdb_connected_clients{database="chat"}' in body and "stdb_commits_total" in body
    proc = demo["proc"]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    records = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert any(r["message"] == "received SIGTERM: shutting down" for r in records)
    assert records[-1]["message"] == "stdb stopped" and records[-1]["level"] == "info"
    assert "stdb is serving the demo databases 'chat'" in err


def test_start_on_a_port_the_system_picks_writes_it_to_the_port_file(tmp_path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "stdb", "start", "--data", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
         "--port-file", str(port_file), "--log-level", "warning"],
        env=dict(os.environ, STDB_CONFIG_DIR=str(tmp_path / "cfg")), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 60
        while not port_file.exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < end, "no port file"
            time.sleep(0.05)
        port = int(port_file.read_text())
        assert port > 0

        async def hello():
            async with connect(f"ws://127.0.0.1:{port}", "anything") as c:
                return c.identity
        assert len(trio.run(hello)) == 32            # a server of ours answers there
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_refuses_a_port_the_system_picks(tmp_path):
    res = CliRunner().invoke(main, ["start", "--demo", "--data", str(tmp_path / "d"),
                                    "--listen", "127.0.0.1:0"])
    assert res.exit_code != 0 and "--demo needs a fixed port" in res.output


def test_start_on_a_port_in_use_says_so(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = subprocess.run([sys.executable, "-m", "stdb", "start", "--data", str(tmp_path / "d"), "--listen",
                            f"127.0.0.1:{port}", "--log-level", "warning"], capture_output=True, text=True,
                           timeout=120, env=dict(os.environ, STDB_CONFIG_DIR=str(tmp_path / "cfg")))
    assert p.returncode == 1
    assert f"cannot_listen: cannot listen on 127.0.0.1:{port}: Address already in use" in p.stderr
    assert "Traceback" not in p.stderr


def test_python_m_stdb_module_build_prints_only_its_result(tmp_path):
    out = tmp_path / "chat.wasm"
    p = subprocess.run([sys.executable, "-m", "stdb.module.build", str(ROOT / "examples/chat/chat.c"),
                        "-o", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""                       # no RuntimeWarning from runpy
    assert p.stdout == f"{out}: {out.stat().st_size:,} bytes\n"
