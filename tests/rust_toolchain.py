"""The Rust toolchain for the Rust-module tests: skip without it (the reason names the apt
command), or fail when STDB_REQUIRE_RUST=1 (CI installs it and must not skip silently)."""

from __future__ import annotations

import os
import pathlib

import pytest

from stdb import build_module
from stdb.module.build_rust import APT_COMMAND, find_toolchain

ROOT = pathlib.Path(__file__).resolve().parents[1]


def require_rust() -> None:
    if find_toolchain() is not None:
        return
    reason = f"no rustc with the wasm32-unknown-unknown target and wasm-ld: {APT_COMMAND}"
    if os.environ.get("STDB_REQUIRE_RUST") == "1":
        pytest.fail(f"STDB_REQUIRE_RUST=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def build_pair(out: pathlib.Path, example: str) -> tuple[bytes, bytes]:
    """(C build, Rust build) of examples/<example>/<example>.{c,rs}."""
    require_rust()
    src = ROOT / "examples" / example / example
    c = build_module(str(src.with_suffix(".c")), str(out / f"{example}_c.wasm"))
    rs = build_module(str(src.with_suffix(".rs")), str(out / f"{example}_rs.wasm"))
    return pathlib.Path(c).read_bytes(), pathlib.Path(rs).read_bytes()
