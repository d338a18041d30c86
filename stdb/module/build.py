"""Compile modules to wasm32: C with the ``ziglang`` package from PyPI (no other toolchain),
Rust (one ``.rs`` file or a ``Cargo.toml``) with rustc's wasm32 target (stdb/module/build_rust.py).

``build_module("chat.c", "chat.wasm")`` or ``python -m stdb.module.build chat.c -o chat.wasm``.
The C SDK header (sdk/c/stdb.h) is on the include path; Rust modules get the sdk/rust crate.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import subprocess
import sys
from collections.abc import Sequence

from stdb.errors import ModuleError

__all__ = ["build_module", "is_rust_source", "is_source", "run_compiler", "sdk_dir", "sdk_include_dir"]

FLAGS = ["--target=wasm32-freestanding", "-nostdlib", "-Wl,--no-entry", "-Wl,--export-memory",
         "-std=gnu11", "-Wall", "-Werror=implicit-function-declaration", "-Wno-unused-function"]


def sdk_dir(lang: str, marker: str) -> pathlib.Path:
    """sdk/``lang`` of this checkout (the package is installed in place: ``pip install -e .``),
    checked to hold ``marker``."""
    here = pathlib.Path(__file__).resolve().parents[2] / "sdk" / lang
    if not (here / marker).is_file():
        raise ModuleError(f"the {lang} SDK is not at {here} (no {marker})",
                          hint="build modules from a checkout installed with `pip install -e .`")
    return here


def sdk_include_dir() -> str:
    """sdk/c of this checkout: the C SDK header's directory."""
    return str(sdk_dir("c", "stdb.h"))


def run_compiler(cmd: list[str], what: str, timeout: float) -> None:
    """Run a compiler; ModuleError naming ``what`` with its messages when it fails or takes
    longer than ``timeout`` seconds."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ModuleError(f"compiling {what} took more than {timeout:g} s") from None
    if proc.returncode != 0:
        raise ModuleError(f"compiling {what} failed:\n{proc.stderr.strip() or proc.stdout.strip()}")


def is_rust_source(path: str) -> bool:
    """A Rust module source: a .rs file or a cargo manifest."""
    return path.endswith(".rs") or os.path.basename(path) == "Cargo.toml"


def is_source(path: str) -> bool:
    """A module source that ``build_module`` compiles (C or Rust), as opposed to a .wasm."""
    return path.endswith(".c") or is_rust_source(path)


def build_module(sources: str | Sequence[str], out: str, *, opt: str = "-O2",
                 extra_args: Sequence[str] = (), timeout: float = 300) -> str:
    """Compile C ``sources`` (or one Rust source: a ``.rs`` file or a ``Cargo.toml``) into the
    wasm module ``out``; returns ``out``.

    ModuleError with the compiler's messages when it fails."""
    if isinstance(sources, str):
        sources = [sources]
    rust = [s for s in sources if is_rust_source(s)]
    if rust:
        if len(sources) != 1:
            raise ModuleError(f"a Rust module is built from one source (a .rs file or a Cargo.toml), "
                              f"not {len(sources)}: {', '.join(sources)}")
        from stdb.module.build_rust import build_rust
        return build_rust(sources[0], out, opt=opt, extra_args=list(extra_args), timeout=timeout)
    for src in sources:
        if not os.path.isfile(src):
            raise ModuleError(f"no such source file: {src}")
    if importlib.util.find_spec("ziglang") is None:
        raise ModuleError("the ziglang package is not installed", hint="pip install ziglang")
    run_compiler([sys.executable, "-m", "ziglang", "cc", *FLAGS, opt, "-I", sdk_include_dir(), *extra_args,
                  "-o", out, *sources], ", ".join(sources), timeout)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m stdb.module.build", description=__doc__.splitlines()[0])
    ap.add_argument("sources", nargs="+", help="C source files, or one .rs file or Cargo.toml")
    ap.add_argument("-o", "--out", required=True, help="the .wasm file to write")
    ap.add_argument("-O", dest="opt", default="2", help="optimisation level (default 2)")
    a = ap.parse_args(argv)
    try:
        out = build_module(a.sources, a.out, opt=f"-O{a.opt}")
    except ModuleError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{out}: {os.path.getsize(out):,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
