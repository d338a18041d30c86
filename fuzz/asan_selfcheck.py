"""Show that the AddressSanitizer set-up of ``python -m fuzz run --asan`` catches a memory error.

    python -m fuzz asan-selfcheck [--no-stdb]

A fuzz run under ASan that finds nothing proves little unless ASan would have said something.
This compiles a tiny C library with exactly the flags of ``build-native --asan`` (coverage +
``-fsanitize=address``): one function that reads one byte past a heap block, but only for inputs
starting with ``ASan``.  A child Python started with the same environment as the fuzz targets
(``fuzz.__main__.asan_env``: atheris's ``asan_with_fuzzer.so`` preloaded, ``detect_leaks=0``,
``PYTHONMALLOC=malloc``) first loads stdb's ASan build through the same import hook as the
targets and runs every target's seed corpus through it (no report expected), then fuzzes that
function with libFuzzer through ``fuzz._harness.fuzz``.  The check passes when libFuzzer finds
the input through the library's coverage, ASan reports a ``heap-buffer-overflow`` naming the
function, and libFuzzer writes the crashing input — what a memory error in stdb's C code would
produce.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCE = r"""
#include <stdlib.h>
#include <string.h>

/* An off-by-one read past a heap block, reached only by inputs that start with "ASan":
   libFuzzer has to find them through this file's coverage counters and comparisons. */
int stdb_selfcheck_overflow(const unsigned char *data, size_t n) {
    if (n >= 4 && data[0] == 'A') {
        if (data[1] == 'S') {
            if (data[2] == 'a') {
                if (data[3] == 'n') {
                    unsigned char *copy = malloc(n);
                    memcpy(copy, data, n);
                    int c = ((volatile unsigned char *)copy)[n];  /* one byte past the end */
                    free(copy);
                    return c;
                }
            }
        }
    }
    return 0;
}
"""
FUNCTION = "stdb_selfcheck_overflow"
MAGIC = b"ASan"
REPORT = "ERROR: AddressSanitizer: heap-buffer-overflow"
STDB_OK = "stdb ASan build:"


def build(cc: str, out: Path) -> Path:
    """Compile SOURCE as the ASan native build compiles stdb's extensions."""
    from fuzz.__main__ import ASAN_FLAGS, COVERAGE_FLAGS

    c = out / "selfcheck.c"
    c.write_text(SOURCE)
    lib = out / "libselfcheck.so"
    flags = ["-shared", "-fPIC", "-O1", "-g", *COVERAGE_FLAGS, *ASAN_FLAGS]
    subprocess.run([cc, *flags, str(c), "-o", str(lib)], check=True)
    return lib


def main(cc: str = "clang", stdb: bool = True, runs: int = 2_000_000) -> int:
    from fuzz.__main__ import NATIVE_ASAN, ROOT, SetupError, asan_env
    from fuzz._harness import ASAN_MARKER, NATIVE_ENV

    found = shutil.which(cc)
    if found is None:
        print(f"asan-selfcheck: {cc} not found (apt-get install clang)", file=sys.stderr)
        return 2
    try:
        env = asan_env()
    except SetupError as e:
        print(f"asan-selfcheck: {e}", file=sys.stderr)
        return 2
    if stdb:
        if not (NATIVE_ASAN / ASAN_MARKER).exists():
            print("asan-selfcheck: no ASan build of stdb: run `python -m fuzz build-native --asan` "
                  "(or pass --no-stdb to check only the runtime and the compiler)", file=sys.stderr)
            return 2
        unchecked = [so.name for so in NATIVE_ASAN.rglob("*.so")
                     if b"__asan_report_load" not in so.read_bytes()]
        if unchecked:
            print(f"asan-selfcheck: FAIL: without ASan checks in {NATIVE_ASAN}: {unchecked}", file=sys.stderr)
            return 1
        env[NATIVE_ENV] = str(NATIVE_ASAN)
    else:
        env.pop(NATIVE_ENV, None)
    with tempfile.TemporaryDirectory(prefix="stdb-asan-selfcheck-") as tmp:
        out = Path(tmp)
        lib = build(found, out)
        if b"__asan_report_load1" not in lib.read_bytes():
            print(f"asan-selfcheck: FAIL: {lib.name} has no ASan checks", file=sys.stderr)
            return 1
        art = out / "artifacts"
        art.mkdir()
        cmd = [sys.executable, "-m", "fuzz.asan_selfcheck", "child", str(lib), str(art), str(runs)]
        print(f"$ LD_PRELOAD={env['LD_PRELOAD']} ASAN_OPTIONS={env['ASAN_OPTIONS']} "
              f"PYTHONMALLOC={env['PYTHONMALLOC']}" + (f" {NATIVE_ENV}={env[NATIVE_ENV]}" if stdb else "")
              + " python " + " ".join(cmd[1:]), flush=True)
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace", timeout=600)
        output = proc.stdout
        crashes = sorted(art.iterdir())
        checks = [
            ("the ASan runtime with libFuzzer is preloaded and atheris uses its libFuzzer",
             "ASan runtime and libFuzzer preloaded" in output
             and "INFO: Using preloaded libfuzzer" in output),
            ("the child exits with a failure", proc.returncode != 0),
            (f"ASan reports `{REPORT.split(': ', 1)[1]}`", REPORT in output),
            (f"its stack names {FUNCTION}", f"in {FUNCTION}" in output),
            (f"libFuzzer wrote the crashing input (starting with {MAGIC!r})",
             len(crashes) == 1 and crashes[0].read_bytes().startswith(MAGIC)),
        ]
        if stdb:
            checks.insert(1, ("stdb's ASan build loads and runs every seed corpus without a report",
                              STDB_OK in output))
        execs = re.findall(r"^#(\d+)\s", output, re.M)
        lines = [ln for ln in output.splitlines() if STDB_OK in ln or "SUMMARY: AddressSanitizer" in ln
                 or ln.startswith("==") and "ERROR" in ln or ln.startswith("    #0 ")]
        print("\n".join(lines))
        if execs:
            print(f"(libFuzzer's last status line before the report: {int(execs[-1]):,} executions)")
        for what, ok in checks:
            print(f"  {'ok  ' if ok else 'FAIL'} {what}")
        if not all(ok for _, ok in checks):
            print("\n--- child output (last 60 lines) ---\n" + "\n".join(output.splitlines()[-60:]))
            print("asan-selfcheck: FAILED")
            return 1
        print("asan-selfcheck: passed (ASan catches a heap overflow in clang-built code under the fuzz "
              "runner's environment)")
        return 0


def child(lib_path: str, artifacts: str, runs: int) -> None:
    """In the ASan environment: load stdb's ASan build (when asked), then fuzz the overflow."""
    import ctypes
    import importlib
    import os

    from fuzz._harness import (
        NATIVE_ENV,
        NATIVE_MODULES,
        TARGETS,
        asan_loaded,
        fuzz,
        instrumented,
        libfuzzer_preloaded,
    )

    if not (asan_loaded() and libfuzzer_preloaded()):
        raise SystemExit("the ASan runtime / libFuzzer is not preloaded")
    print("ASan runtime and libFuzzer preloaded", flush=True)
    if os.environ.get(NATIVE_ENV):
        root = os.path.abspath(os.environ[NATIVE_ENV])
        with instrumented(True):
            mods = [importlib.import_module(m) for m in NATIVE_MODULES]
        wrong = [m.__name__ for m in mods if not str(m.__file__).startswith(root)]
        if wrong:
            raise SystemExit(f"not loaded from {root}: {wrong}")
        corpus = Path(__file__).resolve().parent / "corpus"
        seeds = 0
        for t in TARGETS:
            target = importlib.import_module(f"fuzz.fuzz_{t}")
            for p in sorted((corpus / t).iterdir()):
                target.TestOneInput(p.read_bytes())
                seeds += 1
        print(f"{STDB_OK} {len(mods)} extensions from {root}, {seeds} seed inputs of "
              f"{len(TARGETS)} targets run", flush=True)
    lib = ctypes.CDLL(lib_path)
    lib.stdb_selfcheck_overflow.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.stdb_selfcheck_overflow.restype = ctypes.c_int

    def test_one_input(data: bytes) -> None:
        lib.stdb_selfcheck_overflow(data, len(data))

    fuzz(test_one_input, [sys.argv[0], f"-runs={runs}", "-seed=1", "-max_total_time=300",
                          "-detect_leaks=0", f"-artifact_prefix={artifacts}/"])


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(main(stdb="--no-stdb" not in sys.argv[1:]))
