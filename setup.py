"""Build the Cython extensions of stdb.

Every ``stdb/_core/*.pyx``, ``stdb/module/*.pyx`` and ``stdb/server/*.pyx`` becomes an
extension.  ``STDB_DEBUG=1`` turns on boundscheck, wraparound, initializedcheck, C assertions
and line tracing; ``STDB_ANNOTATE=1`` writes Cython's HTML annotation next to each .pyx.
Little-endian hosts only (the C core reads integers as they lie in memory).
"""

import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext

if sys.byteorder != "little":
    # the C core reads and writes the row codec's and the log's little-endian integers as
    # they lie in memory (memcpy), and its keys with byte swaps
    raise SystemExit("stdb's C core needs a little-endian host (x86-64, arm64, ...)")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


MODE_FILE = os.path.join("stdb", "_core", ".build-mode")


def _last_mode() -> str:
    try:
        with open(MODE_FILE) as f:
            return f.read().strip()
    except OSError:
        return ""


class build_ext(_build_ext):
    """Cythonize at build time with the debug/annotate switches applied.

    Switching between the release and the debug build regenerates and recompiles
    everything (the mode of the last build is kept in stdb/_core/.build-mode).
    """

    def finalize_options(self):
        from Cython.Build import cythonize

        debug = _flag("STDB_DEBUG")
        self._mode = "debug" if debug else "release"
        switched = _last_mode() != self._mode
        if switched:
            self.force = True
        directives = {
            "language_level": 3,
            "boundscheck": debug,
            "wraparound": debug,
            "initializedcheck": debug,
            "cdivision": not debug,
            "embedsignature": True,
            "linetrace": debug,
        }
        macros = [("CYTHON_TRACE_NOGIL", "1")] if debug else [("NDEBUG", "1")]
        args = ["-O0", "-g", "-UNDEBUG"] if debug else ["-O2"]
        exts = []
        for pyx in sorted(glob.glob(os.path.join("stdb", "_core", "*.pyx"))
                          + glob.glob(os.path.join("stdb", "module", "*.pyx"))
                          + glob.glob(os.path.join("stdb", "server", "*.pyx"))):
            mod = pyx[:-4].replace(os.sep, ".")
            exts.append(Extension(mod, [pyx], define_macros=macros, extra_compile_args=args))
        self.distribution.ext_modules = cythonize(
            exts,
            compiler_directives=directives,
            annotate=_flag("STDB_ANNOTATE"),
            force=switched or _flag("STDB_FORCE"),
            quiet=True,
        )
        super().finalize_options()

    def run(self):
        super().run()
        with open(MODE_FILE, "w") as f:
            f.write(self._mode + "\n")


setup(cmdclass={"build_ext": build_ext},
      ext_modules=[Extension("stdb._core.codec", ["stdb/_core/codec.pyx"])])
