"""The TypeScript SDK's own suite (sdk/typescript/test, `node --test` against real servers it
starts) run from pytest: it installs the npm dependencies when they are missing (`npm ci`) and
fails when any node test fails.  Skipped only where there is no `node`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.test_server import ROOT

SDK = ROOT / "sdk" / "typescript"
pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def test_typescript_sdk_node_suite():
    if not (SDK / "node_modules" / "cbor-x").is_dir():
        npm = shutil.which("npm")
        assert npm is not None, "node is installed but npm is not: cannot install the SDK's dependencies"
        r = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=SDK, capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, f"npm ci failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    tests = sorted(str(p.relative_to(SDK)) for p in (SDK / "test").glob("*.test.js"))
    assert tests, "no node tests found"
    env = dict(os.environ, STDB_PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    r = subprocess.run(["node", "--test", "--test-concurrency=1", *tests], cwd=SDK, capture_output=True,
                       text=True, timeout=600, env=env)
    assert r.returncode == 0, f"node --test failed:\n{r.stdout[-8000:]}\n{r.stderr[-4000:]}"
    assert "# fail 0" in r.stdout
