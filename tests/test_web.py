"""The arena's page (examples/arena/web, shipped built in stdb/web/arena; issue 24): the shipped
copy is what its sources build to, and in a real Chromium two tabs play the arena against a real
server — one steers, the other sees it move (tests/browser/arena.mjs, puppeteer-core).

Without node the first is skipped, without chromium the second; .ci/run sets
STDB_REQUIRE_BROWSER=1, which turns those skips into failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from stdb.cli import main
from tests.test_arena import _port_from
from tests.test_server import ROOT
from tools import build_web

BROWSER_TESTS = ROOT / "tests" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRED = os.environ.get("STDB_REQUIRE_BROWSER") == "1"


def _need(tool: str | None, what: str) -> None:
    if tool is None:
        if REQUIRED:
            pytest.fail(f"{what} is missing and STDB_REQUIRE_BROWSER=1")
        pytest.skip(f"{what} is not installed")


def test_the_shipped_page_is_what_its_sources_build_to(tmp_path):
    _need(shutil.which("node"), "node")
    built = build_web.build(tmp_path / "page")
    for f in built:
        shipped = build_web.OUT / f.name
        assert shipped.is_file(), f"{shipped} is missing: run python -m tools.build_web"
        assert shipped.read_bytes() == f.read_bytes(), \
            f"{shipped} is stale: run python -m tools.build_web and commit stdb/web/arena"


def test_two_tabs_play_the_arena_in_chromium(tmp_path):
    _need(shutil.which("node"), "node")
    _need(CHROMIUM, "chromium (apt-get install chromium)")
    if not (BROWSER_TESTS / "node_modules" / "puppeteer-core").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER_TESTS, check=True,
                       stdout=subprocess.DEVNULL)
    port_file = tmp_path / "port"
    env = dict(os.environ, STDB_CONFIG_DIR=str(tmp_path / "cfg"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "stdb", "start", "--data", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
         "--port-file", str(port_file), "--static", str(build_web.OUT), "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = _port_from(port_file, proc)
        env["STDB_SERVER"] = f"ws://127.0.0.1:{port}"
        r = CliRunner().invoke(main, ["publish", "arena", str(ROOT / "examples/arena/arena.c")], env=env,
                               catch_exceptions=False)
        assert r.exit_code == 0, r.output
        shots = tmp_path / "shots"
        run = subprocess.run(["node", "arena.mjs", "--url", f"http://127.0.0.1:{port}/",
                              "--shots", str(shots), "--chromium", CHROMIUM, "--timeout", "30000"],
                             cwd=BROWSER_TESTS, capture_output=True, text=True, timeout=180)
        lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
        out = run.stdout[-2000:] + run.stderr[-2000:]
        assert lines, f"arena.mjs printed nothing (exit {run.returncode}): {out}"
        res = json.loads(lines[-1])
        assert res["ok"] and run.returncode == 0, res
        assert res["ids"][0] != res["ids"][1]                   # two tabs, two players
        assert abs(res["end"]["x"] - res["start"]["x"]) >= 60    # the second tab saw the first move
        assert res["counts"][1]["players"] >= 2 and res["counts"][1]["food"] > 0
        assert all((shots / f"arena-{i}.png").stat().st_size > 10_000 for i in (1, 2))
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
