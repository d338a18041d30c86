"""The Rust tests' gate (tests/rust_toolchain.py): without the toolchain they skip with the apt
command in the reason, and with STDB_REQUIRE_RUST=1 (CI) they fail instead. Runs without Rust."""

from __future__ import annotations

import pytest

from tests import rust_toolchain


def test_missing_toolchain_skips_naming_the_apt_command(monkeypatch):
    monkeypatch.setattr(rust_toolchain, "find_toolchain", lambda: None)
    monkeypatch.delenv("STDB_REQUIRE_RUST", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install rustc libstd-rust-dev-wasm32 lld"):
        rust_toolchain.require_rust()


def test_missing_toolchain_fails_when_required(monkeypatch):
    monkeypatch.setattr(rust_toolchain, "find_toolchain", lambda: None)
    monkeypatch.setenv("STDB_REQUIRE_RUST", "1")
    with pytest.raises(pytest.fail.Exception, match="STDB_REQUIRE_RUST=1 but .*apt-get install rustc"):
        rust_toolchain.require_rust()
