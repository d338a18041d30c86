"""The AddressSanitizer set-up of the fuzzers (``python -m fuzz run --asan``, docs/testing.md
"Fuzzing") catches a memory error: ``python -m fuzz asan-selfcheck --no-stdb`` compiles a tiny C
library that reads past a heap block with the ASan build's flags and fuzzes it in a Python
started with the fuzz runner's environment (atheris's ASan runtime preloaded); ASan must report
the heap-buffer-overflow and libFuzzer must write the input.

It needs clang (CI machines have none: skipped there, saying so; tests/test_fuzz.py still runs
the targets).  Loading stdb's own ASan build is left to the command without ``--no-stdb``
(it needs ``python -m fuzz build-native --asan``, a minute and a half of compiling).
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("clang") is None,
                    reason="clang is not installed (apt-get install clang): the ASan self-check "
                           "compiles C with it")
@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not installed (pip install -e '.[fuzz]')")
def test_asan_setup_catches_a_heap_buffer_overflow():
    proc = subprocess.run([sys.executable, "-m", "fuzz", "asan-selfcheck", "--no-stdb"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "ERROR: AddressSanitizer: heap-buffer-overflow" in out
    assert "SUMMARY: AddressSanitizer: heap-buffer-overflow" in out and "stdb_selfcheck_overflow" in out
    assert "FAIL" not in out and "asan-selfcheck: passed" in out
