"""What every atheris target shares: instrumented imports, the optional native-coverage build,
and the libFuzzer entry point.

A target module (``fuzz/fuzz_<name>.py``) imports stdb inside ``with instrumented(__name__ ==
"__main__"):`` so that, when it runs as a fuzzer (``python -m fuzz.fuzz_<name>``), atheris
instruments every stdb module's Python bytecode for coverage; imported by the tests it is a
plain module and atheris is not needed.

Native coverage (opt-in): ``python -m fuzz build-native`` compiles the Cython extensions with
clang's sanitizer-coverage into ``build/fuzz-native/``; with ``STDB_FUZZ_NATIVE`` set to that
directory the targets load those copies instead of the ones in ``stdb/`` and libFuzzer sees
the branches inside the C code too.  The normal build is never touched.

AddressSanitizer (opt-in): ``python -m fuzz build-native --asan`` compiles them with
``-fsanitize=address`` as well, into ``build/fuzz-native-asan/`` (with an ``ASAN`` marker file).
Those can only be loaded into a Python started with atheris's ASan runtime preloaded
(``LD_PRELOAD=<atheris.path()>/asan_with_fuzzer.so``, which has libFuzzer linked in): ``python -m
fuzz run --asan`` sets that up for each target.  With a preloaded libFuzzer the targets use it
(atheris's default) instead of loading the one inside atheris.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["TARGETS", "instrumented", "instrument_module", "fuzz", "NATIVE_ENV", "NATIVE_MODULES",
           "ASAN_MARKER", "libfuzzer_preloaded", "asan_loaded", "Reader"]

CACHE_ENV = "STDB_FUZZ_CACHE"   # a directory kept between runs (the harness points TMPDIR at one it removes)
TARGETS = ("rowcodec", "protocol", "sql", "logrecord", "snapshot", "describe", "txn", "host", "lane",
           "websocket")
NATIVE_ENV = "STDB_FUZZ_NATIVE"
# the Cython extensions a native build replaces (module name -> path relative to the repo)
NATIVE_MODULES = ("stdb._core.codec", "stdb._core.page", "stdb._core.index", "stdb._core.table",
                  "stdb._core.matcher", "stdb._core.logrec", "stdb._core.rowbytes", "stdb._core.ordered",
                  "stdb._core.txn", "stdb._core.digest", "stdb._core.logq", "stdb.module._wasm",
                  "stdb.module._host", "stdb.module._call", "stdb.server._lane",
                  "stdb.server._frames")
# a file of this name in a native build directory says it was compiled with -fsanitize=address
ASAN_MARKER = "ASAN"


@functools.cache
def libfuzzer_preloaded() -> bool:
    """Whether a libFuzzer is in the process's global symbols before atheris loads its own: the
    case under ``LD_PRELOAD=…/asan_with_fuzzer.so`` (asked before ``instrumented`` loads one)."""
    import ctypes

    return hasattr(ctypes.CDLL(None), "LLVMFuzzerRunDriver")


def asan_loaded() -> bool:
    """Whether the AddressSanitizer runtime is in this process (it must come first: preloaded)."""
    import ctypes

    return hasattr(ctypes.CDLL(None), "__asan_init")


class _NativeFinder:
    """Finds the clang-instrumented copy of each Cython extension under ``root``."""

    def __init__(self, root: str) -> None:
        self.root = root

    def find_spec(self, name: str, path: object = None, target: object = None):  # noqa: ANN201
        if name not in NATIVE_MODULES:
            return None
        found = glob.glob(os.path.join(self.root, *name.split(".")) + ".*.so")
        if not found:
            raise ImportError(f"{NATIVE_ENV}={self.root}: no instrumented build of {name} "
                              "(run `python -m fuzz build-native`)")
        loader = importlib.machinery.ExtensionFileLoader(name, found[0])
        return importlib.util.spec_from_file_location(name, found[0], loader=loader)


def _native_root() -> str | None:
    root = os.environ.get(NATIVE_ENV)
    return os.path.abspath(root) if root else None


@contextlib.contextmanager
def instrumented(active: bool) -> Iterator[None]:
    """Around a target's stdb imports: instrument them when the target runs as a fuzzer."""
    if not active:
        yield
        return
    import atheris

    root = _native_root()
    if root is not None and os.path.exists(os.path.join(root, ASAN_MARKER)) and not asan_loaded():
        raise ImportError(f"{NATIVE_ENV}={root} is an AddressSanitizer build: it loads only with the "
                          "ASan runtime preloaded (run it with `python -m fuzz run --asan`)")
    if root is not None:
        if not libfuzzer_preloaded():
            # sanitizer-coverage callbacks in the instrumented extensions resolve against the
            # libFuzzer inside atheris: load it with global symbols before any extension
            import ctypes

            core = glob.glob(os.path.join(os.path.dirname(atheris.__file__), "core_with_libfuzzer*.so"))
            ctypes.CDLL(core[0], mode=os.RTLD_GLOBAL)
        sys.meta_path.insert(0, _NativeFinder(root))
    with atheris.instrument_imports(include=["stdb"]):
        yield


def instrument_module(namespace: dict, active: bool) -> None:
    """Instrument the functions a target module defines itself (its checks and reference
    decoders guide the fuzzer too); ``namespace`` is the module's ``globals()``."""
    if not active:
        return
    import atheris

    name = namespace["__name__"]
    for k, v in list(namespace.items()):
        if callable(v) and getattr(v, "__module__", None) == name and hasattr(v, "__code__"):
            namespace[k] = atheris.instrument_func(v)


def fuzz(test_one_input: Callable[[bytes], None], argv: list[str] | None = None) -> None:
    """Run libFuzzer on ``test_one_input`` with ``argv`` (libFuzzer's own arguments)."""
    import atheris

    # the libFuzzer loaded by ``instrumented`` for a native build; a preloaded one (ASan) is
    # found by atheris itself
    kw = {"internal_libfuzzer": True} if _native_root() is not None and not libfuzzer_preloaded() else {}
    atheris.Setup(list(sys.argv if argv is None else argv), test_one_input, **kw)
    atheris.Fuzz()


class Reader:
    """A target's input as a stream of bytes that decides its operations; past its end every
    byte is 0 (the txn and host targets)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return b

    def pick(self, options: Any) -> Any:
        return options[self.byte() % len(options)]

    def take(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    @property
    def done(self) -> bool:
        return self.pos >= len(self.data)
