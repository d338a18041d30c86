"""Building Rust modules: one .rs file, a cargo project with a path dependency on sdk/rust,
compiler errors, a missing toolchain (the error names the apt command), and the CLI's
`stdb build` / `stdb publish` for .rs."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

import stdb
from stdb import Database, build_module
from stdb.cli import main
from stdb.module import build_rust
from tests.rust_toolchain import ROOT, require_rust

SMALL = """use stdb::*;
table!(#[public] counter => Counter { #[pk] id: u32, n: u64 });
reducer!(fn bump(id: u32) -> Result<(), String> {
    let mut c = Counter::find(id).unwrap_or(Counter { id, n: 0 });
    c.n += 1;
    if c.n == 1 { Counter::insert(c)?; } else { Counter::update(&c)?; }
    Ok(())
});
module!(tables: [Counter], reducers: [bump]);
"""


@pytest.fixture(autouse=True)
def _rust():
    require_rust()


def bumps(wasm: bytes, path: pathlib.Path) -> list[tuple]:
    with Database(str(path)) as db:
        db.publish(wasm)
        for i in (1, 2, 1):
            db.call("bump", (i,))
        return sorted(db.query("SELECT * FROM counter").rows)


def test_one_file(tmp_path):
    src = tmp_path / "counter.rs"
    src.write_text(SMALL)
    out = build_module(str(src), str(tmp_path / "c.wasm"))
    assert bumps(pathlib.Path(out).read_bytes(), tmp_path / "db") == [(1, 2), (2, 1)]


@pytest.mark.parametrize("route", ["cargo", "rustc"])
def test_cargo_project_with_a_path_dependency(tmp_path, monkeypatch, route):
    # both routes: Debian's cargo beside its rustc, and rustc alone when there is no such cargo
    if route == "rustc":
        monkeypatch.setattr(build_rust, "_cargo_for", lambda tc: None)
    else:
        tc = build_rust.find_toolchain()
        if tc is None or build_rust._cargo_for(tc) is None:
            if os.environ.get("STDB_REQUIRE_RUST") == "1":
                pytest.fail("STDB_REQUIRE_RUST=1 but no cargo for the wasm rustc (apt-get install cargo)")
            pytest.skip("no cargo for the wasm rustc (apt-get install cargo)")
    proj = tmp_path / "my-counter"
    (proj / "src").mkdir(parents=True)
    (proj / "Cargo.toml").write_text(f"""[package]
name = "my-counter"
version = "0.1.0"
edition = "2021"

[lib]
crate-type = ["cdylib"]

[dependencies]
stdb = {{ path = "{ROOT / 'sdk' / 'rust'}" }}
""")
    (proj / "src" / "lib.rs").write_text(SMALL)
    out = build_module(str(proj / "Cargo.toml"), str(tmp_path / "c.wasm"))
    assert bumps(pathlib.Path(out).read_bytes(), tmp_path / "db") == [(1, 2), (2, 1)]


def test_cargo_project_with_other_dependencies_needs_cargo(tmp_path, monkeypatch):
    monkeypatch.setattr(build_rust, "_cargo_for", lambda tc: None)
    (tmp_path / "Cargo.toml").write_text('[package]\nname = "x"\nversion = "0.1.0"\n'
                                         '[dependencies]\nserde = "1"\n')
    with pytest.raises(stdb.ModuleError, match="dependencies serde need cargo"):
        build_module(str(tmp_path / "Cargo.toml"), str(tmp_path / "x.wasm"))


def test_compile_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.rs"
    bad.write_text("use stdb::*;\nfn f() -> u32 { undefined_thing }\n")
    with pytest.raises(stdb.ModuleError, match="undefined_thing"):
        build_module(str(bad), str(tmp_path / "bad.wasm"))
    with pytest.raises(stdb.ModuleError, match="no such source file"):
        build_module(str(tmp_path / "missing.rs"), str(tmp_path / "x.wasm"))
    with pytest.raises(stdb.ModuleError, match="one source"):
        build_module([str(bad), str(bad)], str(tmp_path / "x.wasm"))


def test_a_missing_toolchain_names_the_apt_command(tmp_path, monkeypatch):
    monkeypatch.setattr(build_rust, "find_toolchain", lambda: None)
    src = tmp_path / "m.rs"
    src.write_text(SMALL)
    with pytest.raises(stdb.ModuleError) as e:
        build_module(str(src), str(tmp_path / "m.wasm"))
    assert e.value.hint == "apt-get install rustc libstd-rust-dev-wasm32 lld"


def test_the_toolchain_has_the_wasm_target():
    tc = build_rust.find_toolchain()
    assert tc is not None
    sysroot = subprocess.run([tc.rustc, "--print", "sysroot"], capture_output=True, text=True).stdout.strip()
    assert (pathlib.Path(sysroot) / "lib/rustlib/wasm32-unknown-unknown").is_dir()


def test_cli_build_and_publish(tmp_path):
    src = tmp_path / "counter.rs"
    src.write_text(SMALL)
    r = CliRunner().invoke(main, ["build", str(src), "-o", str(tmp_path / "c.wasm")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "c.wasm").read_bytes()[:4] == b"\0asm"
    port_file = tmp_path / "port"
    env = dict(os.environ, STDB_CONFIG_DIR=str(tmp_path / "cfg"))
    server = subprocess.Popen([sys.executable, "-m", "stdb", "start", "--data", str(tmp_path / "data"),
                               "--listen", "127.0.0.1:0", "--port-file", str(port_file)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = 120
        start = time.monotonic()
        while not port_file.exists():          # written atomically once the server listens
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() - start < deadline, "the server did not start"
            time.sleep(0.05)
        env["STDB_SERVER"] = f"ws://127.0.0.1:{port_file.read_text().strip()}"
        outputs = []
        for args in (["publish", "counter", str(src)], ["call", "counter", "bump", "7"],
                     ["sql", "counter", "SELECT * FROM counter"]):
            r = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
            assert r.exit_code == 0, r.output
            outputs.append(r.output)
        assert "published counter" in outputs[0]
        assert "7" in outputs[2] and "1" in outputs[2]
    finally:
        server.terminate()
        server.wait(timeout=60)
