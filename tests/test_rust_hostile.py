"""Hostile modules in Rust (tests/modules/hostile.rs): a panic, a stack overflow, an allocation
past the memory cap and an endless loop each fail their own call with a clear error, roll back
what the call wrote, and the next call works (the C/WAT versions: tests/test_hostile_modules.py)."""

from __future__ import annotations

import pathlib

import pytest

import stdb
from stdb import Database, Limits, build_module
from tests.rust_toolchain import ROOT, require_rust
from tests.test_module import rows

LIMITS = Limits(fuel=200_000_000, time=5.0, memory_bytes=16 << 20)


@pytest.fixture(scope="module")
def wasm(tmp_path_factory):
    require_rust()
    out = tmp_path_factory.mktemp("hostile")
    return pathlib.Path(build_module(str(ROOT / "tests/modules/hostile.rs"),
                                     str(out / "h.wasm"))).read_bytes()


@pytest.mark.parametrize("reducer, arg, kinds, words", [
    ("panics", "the reducer gave up", ("trap",), "unreachable (panicked at 'the reducer gave up'"),
    ("panics", "", ("trap",), "index out of bounds"),
    ("recurse", 0, ("trap",), "out of bounds"),     # the stack comes first in memory: it runs below 0
    ("hog", 64, ("trap",), "unreachable"),                   # 64 MiB past a 16 MiB cap
    ("spin", 1, ("out_of_fuel", "timeout"), ""),
])
def test_a_misbehaving_reducer_fails_alone(tmp_path, wasm, reducer, arg, kinds, words):
    with Database(str(tmp_path / "h"), limits=LIMITS) as db:
        db.publish(wasm)
        db.call("add", ("kept",))
        with pytest.raises(stdb.ReducerError) as e:
            db.call(reducer, (arg,))
        assert e.value.kind in kinds, e.value
        assert words in str(e.value)
        assert rows(db, "note") == [(1, "kept")]            # the call's own insert rolled back
        db.call("add", ("next call works",))
        assert [r[1] for r in rows(db, "note")] == ["kept", "next call works"]


def test_a_panic_message_reaches_the_log(tmp_path, wasm):
    with Database(str(tmp_path / "h"), limits=LIMITS) as db:
        db.publish(wasm)
        with pytest.raises(stdb.ReducerError):
            db.call("panics", ("the reducer gave up",))
        with pytest.raises(stdb.ReducerError):
            db.call("panics", ("",))
        lines = [e["message"] for e in db._host.recent_logs]
        assert any("panicked at" in x and "the reducer gave up" in x for x in lines), lines
        assert any("index out of bounds" in x for x in lines), lines


def test_a_module_that_fits_its_memory_cap_works(tmp_path, wasm):
    with Database(str(tmp_path / "h"), limits=LIMITS) as db:
        db.publish(wasm)
        with pytest.raises(stdb.ReducerError, match="allocated 4 MiB") as e:
            db.call("hog", (4,))
        assert e.value.kind == "error"
