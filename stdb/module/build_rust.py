"""Compile Rust modules to wasm32 with the sdk/rust crate (no crates registry, no cargo needed).

``build_module("m.rs", out)`` compiles one file as a cdylib with ``--extern stdb=…``: the SDK
(sdk/rust/src) is first compiled to an rlib for wasm32 in a cache directory
(``$XDG_CACHE_HOME/stdb/rust/<hash>``, keyed by the SDK's sources and the rustc). The module
uses it as ``use stdb::*;``.

``build_module("proj/Cargo.toml", out)`` builds a cargo project whose only dependency is
``stdb = { path = ".../sdk/rust" }``: with ``cargo build --offline`` when a cargo that drives the
wasm rustc is installed (Debian's ``cargo`` beside Debian's ``rustc``: ``_cargo_for``), otherwise
by compiling the project's library target directly with rustc like a single file.

The rustc must have the wasm32-unknown-unknown standard library: Debian's ``rustc`` with
``libstd-rust-dev-wasm32`` does (a rustup rustc without the target may come first on PATH; it is
skipped), and links with ``wasm-ld`` from ``lld``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import shutil
import subprocess
import tempfile
import tomllib

from stdb.errors import ModuleError
from stdb.module.build import run_compiler, sdk_dir

__all__ = ["APT_COMMAND", "RustToolchain", "build_rust", "find_toolchain", "sdk_rust_dir"]

APT_COMMAND = "apt-get install rustc libstd-rust-dev-wasm32 lld"
TARGET = "wasm32-unknown-unknown"
EDITION = "2021"
SDK_PATH = "sdk/rust/src"          # how panic messages name the SDK's files


class RustToolchain:
    """A rustc with the wasm32 target and the wasm-ld linker."""

    def __init__(self, rustc: str, version: str, linker: str) -> None:
        self.rustc, self.version, self.linker = rustc, version, linker

    def __repr__(self) -> str:
        return f"RustToolchain({self.rustc!r}, {self.version!r}, linker={self.linker!r})"


def _run(cmd: list[str], timeout: float = 30, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload, no-any-return]


def _candidates() -> list[str]:
    found = [os.environ.get("STDB_RUSTC", ""), "/usr/bin/rustc"]
    for d in os.environ.get("PATH", "").split(os.pathsep):
        found.append(os.path.join(d, "rustc"))
    seen: list[str] = []
    for c in found:
        if c and os.access(c, os.X_OK) and os.path.realpath(c) not in [os.path.realpath(s) for s in seen]:
            seen.append(c)
    return seen


def _has_wasm_target(rustc: str) -> str | None:
    """The rustc's version when its sysroot holds the wasm32 standard library, else None."""
    try:
        sysroot = _run([rustc, "--print", "sysroot"]).stdout.strip()
        version = _run([rustc, "--version"]).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    lib = pathlib.Path(sysroot) / "lib" / "rustlib" / TARGET / "lib"
    return version if sysroot and lib.is_dir() and any(lib.glob("libstd-*.rlib")) else None


@functools.cache
def find_toolchain() -> RustToolchain | None:
    """The first rustc (STDB_RUSTC, /usr/bin/rustc, then PATH) with the wasm32 target, or None."""
    linker = shutil.which("wasm-ld") or shutil.which("rust-lld")
    if linker is None:
        return None
    for rustc in _candidates():
        version = _has_wasm_target(rustc)
        if version:
            return RustToolchain(rustc, version, linker)
    return None


def toolchain() -> RustToolchain:
    tc = find_toolchain()
    if tc is None:
        what = ("no wasm-ld linker" if not (shutil.which("wasm-ld") or shutil.which("rust-lld"))
                else f"no rustc with the {TARGET} target (tried {', '.join(_candidates()) or 'none'})")
        raise ModuleError(f"cannot build Rust modules: {what}", hint=APT_COMMAND)
    return tc


def sdk_rust_dir() -> pathlib.Path:
    """sdk/rust of this checkout."""
    return sdk_dir("rust", "src/lib.rs")


def _linker_args(tc: RustToolchain) -> list[str]:
    args = ["-C", f"linker={tc.linker}"]
    if os.path.basename(tc.linker) == "rust-lld":
        args += ["-C", "linker-flavor=wasm-ld"]
    return args


def sdk_rlib(tc: RustToolchain, timeout: float = 300) -> pathlib.Path:
    """The SDK compiled for wasm32 (cached by the hash of its sources and the rustc)."""
    src = sdk_rust_dir() / "src"
    h = hashlib.sha256(f"{tc.rustc}\0{tc.version}\0".encode())
    for f in sorted(src.rglob("*.rs")):
        h.update(str(f.relative_to(src)).encode() + b"\0" + f.read_bytes() + b"\0")
    base = pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache")
    d = base / "stdb" / "rust" / h.hexdigest()[:16]
    rlib = d / "libstdb.rlib"
    if rlib.is_file():
        return rlib
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError:                                   # no writable cache: the temporary directory
        d = pathlib.Path(tempfile.gettempdir()) / f"stdb-rust-{os.getuid()}" / h.hexdigest()[:16]
        rlib = d / "libstdb.rlib"
        if rlib.is_file():
            return rlib
        d.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=d) as tmp:     # build aside, then rename: parallel builds are safe
        out = pathlib.Path(tmp) / "libstdb.rlib"
        run_compiler([tc.rustc, "--edition", EDITION, "--target", TARGET, "--crate-type", "rlib",
                      "--crate-name", "stdb", "-C", "opt-level=2", "--remap-path-prefix", f"{src}={SDK_PATH}",
                      "-o", str(out), str(src / "lib.rs")],
                     "the Rust SDK (sdk/rust)", timeout)
        os.replace(out, rlib)
    return rlib


def _opt_level(opt: str) -> str:
    level = opt.removeprefix("-O") or "2"
    if level not in ("0", "1", "2", "3", "s", "z"):
        raise ModuleError(f"unknown optimisation level {opt!r}", hint="use 0, 1, 2, 3, s or z")
    return level


def _rustc_module(tc: RustToolchain, src: str, out: str, opt: str, edition: str, extra: list[str],
                  timeout: float) -> str:
    rlib = sdk_rlib(tc, timeout)
    level = _opt_level(opt)
    # whole-program LTO with std and the SDK: ~25% faster calls, smaller modules, ~1 s more to build
    lto = ["-C", "lto=fat", "-C", "codegen-units=1"] if level != "0" else []
    run_compiler([tc.rustc, "--edition", edition, "--target", TARGET, "--crate-type", "cdylib",
                  "--crate-name", "module", "-C", f"opt-level={level}", *lto, "-C", "strip=symbols",
                  *_linker_args(tc), "--extern", f"stdb={rlib}", "-L", f"dependency={rlib.parent}",
                  # panic messages name the file as "m.rs:7:5", not the builder's absolute path
                  "--remap-path-prefix", f"{pathlib.Path(src).resolve().parent}{os.sep}=",
                  *extra, "-o", out, src], src, timeout)
    return out


def _cargo_for(tc: RustToolchain) -> str | None:
    """The cargo to drive the wasm rustc: ``$STDB_CARGO``, or the cargo installed beside that
    rustc (a distribution's pair: Debian ships cargo 1.65 with rustc 1.63, and they work
    together), or one on PATH of the rustc's own version (a newer rustup cargo passes flags an
    old rustc refuses)."""
    want = tc.version.split()[1] if len(tc.version.split()) > 1 else ""
    paired = [os.environ.get("STDB_CARGO", ""), os.path.join(os.path.dirname(tc.rustc), "cargo")]
    for cargo in [*paired, shutil.which("cargo") or ""]:
        if not cargo or not os.access(cargo, os.X_OK):
            continue
        try:
            v = _run([cargo, "--version"]).stdout.split()
        except (OSError, subprocess.SubprocessError):
            continue
        if cargo in paired or (len(v) > 1 and v[1].split("-")[0] == want.split("-")[0]):
            return cargo
    return None


def _build_cargo(tc: RustToolchain, manifest: pathlib.Path, out: str, opt: str, timeout: float) -> str:
    try:
        meta = tomllib.loads(manifest.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ModuleError(f"cannot read {manifest}: {e}") from None
    pkg = meta.get("package") or {}
    lib = meta.get("lib") or {}
    name = str(lib.get("name") or pkg.get("name") or "module").replace("-", "_")
    cargo = _cargo_for(tc)
    if cargo is not None:
        with tempfile.TemporaryDirectory() as target:
            env = {**os.environ, "RUSTC": tc.rustc, "CARGO_TARGET_DIR": target,
                   "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER": tc.linker,
                   "CARGO_PROFILE_RELEASE_OPT_LEVEL": _opt_level(opt),
                   "CARGO_PROFILE_RELEASE_STRIP": "symbols"}
            cmd = [cargo, "build", "--offline", "--release", "--lib", "--target", TARGET,
                   "--manifest-path", str(manifest)]
            try:
                proc = _run(cmd, timeout=timeout, env=env)
            except subprocess.TimeoutExpired:
                raise ModuleError(f"cargo build of {manifest} took more than {timeout:g} s") from None
            if proc.returncode != 0:
                raise ModuleError(f"cargo build of {manifest} failed:\n{proc.stderr.strip()}",
                                  hint="the crate needs crate-type = [\"cdylib\"] and only path dependencies")
            shutil.copyfile(pathlib.Path(target) / TARGET / "release" / f"{name}.wasm", out)
        return out
    # no matching cargo: the project's library with rustc, when stdb is its only dependency
    others = sorted(set(meta.get("dependencies") or {}) - {"stdb"})
    if others:
        raise ModuleError(f"{manifest}: dependencies {', '.join(others)} need cargo, and no cargo "
                          f"for the wasm rustc ({tc.version}) is installed",
                          hint="apt-get install cargo (Debian's, beside its rustc)")
    src = manifest.parent / str(lib.get("path") or "src/lib.rs")
    if not src.is_file():
        raise ModuleError(f"{manifest}: the library source {src} does not exist")
    return _rustc_module(tc, str(src), out, opt, str(pkg.get("edition") or "2015"), [], timeout)


def build_rust(source: str, out: str, *, opt: str = "-O2", extra_args: list[str] | None = None,
               timeout: float = 300) -> str:
    """Compile ``source`` (a .rs file or a Cargo.toml) into the wasm module ``out``; returns ``out``."""
    if not os.path.isfile(source):
        raise ModuleError(f"no such source file: {source}")
    tc = toolchain()
    if os.path.basename(source) == "Cargo.toml":
        return _build_cargo(tc, pathlib.Path(source).resolve(), out, opt, timeout)
    return _rustc_module(tc, source, out, opt, EDITION, list(extra_args or []), timeout)
