"""The fuzzing suite's command line (docs/testing.md, "Fuzzing").

    python -m fuzz run [--time S] [--runs N] [--jobs J] [--native | --asan] [TARGET ...]
    python -m fuzz repro TARGET FILE ...     # run inputs through a target without atheris
    python -m fuzz seed                      # regenerate fuzz/corpus/ and fuzz/dicts/
    python -m fuzz build-native [--asan]     # clang-instrumented extensions in build/fuzz-native[-asan]/
    python -m fuzz asan-selfcheck            # show that the ASan set-up catches a heap overflow
    python -m fuzz.torture ...               # the crash-torture run (see there)

``run`` starts each target (``python -m fuzz.fuzz_<target>``) as its own process under
libFuzzer, with its seed corpus (fuzz/corpus/<target>, read only) behind a scratch corpus
(build/fuzz-corpus/<target>, where new finds go, kept between runs), its dictionary, and
``-max_total_time`` / ``-runs``.  A crashing input (an exception the target does not allow, a
failed check, a timeout, too much memory) is written to fuzz/crashes/ (not in git); the
report names it and the command that reproduces it.  Exit status 1 if any target crashed.

``run --asan`` uses the extensions of ``build-native --asan`` (coverage and AddressSanitizer) and
starts each target with atheris's ASan runtime (which has libFuzzer linked in) preloaded:
``LD_PRELOAD=<atheris.path()>/asan_with_fuzzer.so``, ``ASAN_OPTIONS=detect_leaks=0`` (CPython's
allocations look like leaks) and ``PYTHONMALLOC=malloc`` (so Python's own buffers come from the
ASan allocator too, not from pymalloc's arenas, where an overflow would go unseen).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fuzz._harness import ASAN_MARKER, CACHE_ENV, NATIVE_ENV, NATIVE_MODULES, TARGETS

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
DICTS = ROOT / "fuzz" / "dicts"
CRASHES = ROOT / "fuzz" / "crashes"
SCRATCH = ROOT / "build" / "fuzz-corpus"
NATIVE = ROOT / "build" / "fuzz-native"
NATIVE_ASAN = ROOT / "build" / "fuzz-native-asan"
ASAN_RUNTIME = "asan_with_fuzzer.so"
# clang flags of the native builds: libFuzzer's coverage hooks (atheris provides them), and ASan
COVERAGE_FLAGS = ["-fsanitize-coverage=inline-8bit-counters,pc-table,trace-cmp"]
ASAN_FLAGS = ["-fsanitize=address", "-fno-omit-frame-pointer"]


class SetupError(Exception):
    """Something the ASan set-up needs is missing (the message says what and how to get it)."""


def asan_runtime() -> Path:
    """atheris's ASan runtime with libFuzzer linked in (documented in atheris's
    native_extension_fuzzing.md: it lives in the directory ``atheris.path()`` returns)."""
    try:
        import atheris
    except ImportError:
        raise SetupError("atheris is not installed (pip install -e '.[test]')") from None
    lib = Path(atheris.path()) / ASAN_RUNTIME
    if not lib.is_file():
        raise SetupError(f"{lib} is missing: atheris builds it at install time only when clang is "
                         "present (apt-get install clang, then pip install --force-reinstall "
                         "--no-binary atheris atheris)")
    return lib


def asan_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a process needs to load ASan-instrumented extensions under libFuzzer.
    Options already in ASAN_OPTIONS come after ours (so they win); LD_PRELOAD keeps what it had."""
    env = dict(os.environ if base is None else base)
    lib = str(asan_runtime())
    env["LD_PRELOAD"] = " ".join([lib] + ([env["LD_PRELOAD"]] if env.get("LD_PRELOAD") else []))
    env["ASAN_OPTIONS"] = ":".join(["detect_leaks=0"]
                                   + ([env["ASAN_OPTIONS"]] if env.get("ASAN_OPTIONS") else []))
    env["PYTHONMALLOC"] = "malloc"
    sym = shutil.which("llvm-symbolizer")
    if sym and "ASAN_SYMBOLIZER_PATH" not in env:
        env["ASAN_SYMBOLIZER_PATH"] = sym
    return env


def asan_env_text() -> str:
    """The ASan environment as a shell prefix (for the reproduce commands)."""
    env = asan_env({})
    return " ".join(f"{k}={v}" for k, v in env.items() if k != "ASAN_SYMBOLIZER_PATH")


@dataclass
class Outcome:
    target: str
    returncode: int
    execs: int
    seconds: float
    coverage: int | None
    artifacts: list[Path] = field(default_factory=list)
    tail: str = ""

    @property
    def crashed(self) -> bool:
        return self.returncode != 0 or bool(self.artifacts)


def _libfuzzer_args(target: str, time_s: float | None, runs: int | None, scratch: Path,
                    extra: list[str]) -> list[str]:
    args = [str(scratch), str(CORPUS / target), f"-artifact_prefix={CRASHES / target}-",
            "-print_final_stats=1", "-timeout=20", "-rss_limit_mb=2048", "-max_len=8192"]
    if (DICTS / f"{target}.dict").exists():
        args.append(f"-dict={DICTS / target}.dict")
    if time_s is not None:
        args.append(f"-max_total_time={max(1, round(time_s))}")
    if runs is not None:
        args.append(f"-runs={runs}")
    return args + extra


def run_target(target: str, *, time_s: float | None, runs: int | None, native: bool,
               scratch_root: Path, extra: list[str], log_dir: Path | None = None,
               asan: bool = False) -> Outcome:
    scratch = scratch_root / target
    scratch.mkdir(parents=True, exist_ok=True)
    CRASHES.mkdir(parents=True, exist_ok=True)
    before = set(CRASHES.glob(f"{target}-*"))
    env = asan_env() if asan else dict(os.environ)
    if asan:
        env[NATIVE_ENV] = str(NATIVE_ASAN)
        # ASan's shadow memory, redzones and quarantine about double the RSS (a target's starts at
        # ~500 MB): the RSS limit is raised, a single allocation is still limited to 2 GB
        extra = ["-detect_leaks=0", "-rss_limit_mb=4096", "-malloc_limit_mb=2048", *extra]
    elif native:
        env[NATIVE_ENV] = str(NATIVE)
    cmd = [sys.executable, "-m", f"fuzz.fuzz_{target}",
           *_libfuzzer_args(target, time_s, runs, scratch, extra)]
    t0 = time.monotonic()
    # the target's temporary directories (its databases) go in one the harness removes: the
    # target's own atexit clean-up does not run when libFuzzer ends the process
    with tempfile.TemporaryDirectory(prefix=f"stdb-fuzz-{target}-run-") as tmp:
        env.setdefault(CACHE_ENV, tempfile.gettempdir())     # what outlives a run (built modules)
        env["TMPDIR"] = tmp
        proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace")
    seconds = time.monotonic() - t0
    out = proc.stdout
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / f"{target}.log").write_text(out)
    m = re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
    execs = int(m.group(1)) if m else 0
    if not m:
        done = re.findall(r"^#(\d+)\s", out, re.M)
        execs = int(done[-1]) if done else 0
    covs = re.findall(r"\bcov: (\d+)", out)
    artifacts = sorted(set(CRASHES.glob(f"{target}-*")) - before)
    tail = "\n".join(out.strip().splitlines()[-40:])
    return Outcome(target, proc.returncode, execs, seconds, int(covs[-1]) if covs else None, artifacts, tail)


def cmd_run(args: argparse.Namespace) -> int:
    targets = args.targets or list(TARGETS)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        print(f"unknown target(s) {', '.join(unknown)}; targets: {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    if args.asan:
        if not (NATIVE_ASAN / ASAN_MARKER).exists() or not any(NATIVE_ASAN.rglob("*.so")):
            print("no ASan build: run `python -m fuzz build-native --asan` first", file=sys.stderr)
            return 2
        try:
            asan_runtime()
        except SetupError as e:
            print(f"cannot run under ASan: {e}", file=sys.stderr)
            return 2
    elif args.native and not any(NATIVE.rglob("*.so")):
        print("no native build: run `python -m fuzz build-native` first", file=sys.stderr)
        return 2
    time_s = args.time if args.time is not None or args.runs is not None else 60.0
    extra = list(args.libfuzzer or [])
    scratch_root = Path(args.scratch) if args.scratch else SCRATCH
    print(f"fuzzing {', '.join(targets)}: "
          + (f"{time_s:g} s each" if time_s is not None else "")
          + (f"{' / ' if time_s is not None else ''}{args.runs:,} runs each" if args.runs else "")
          + (" (native coverage + AddressSanitizer)" if args.asan
             else " (native coverage)" if args.native else ""), flush=True)

    def one(t: str) -> Outcome:
        o = run_target(t, time_s=time_s, runs=args.runs, native=args.native or args.asan,
                       scratch_root=scratch_root, extra=extra,
                       log_dir=Path(args.logs) if args.logs else None, asan=args.asan)
        status = "CRASH" if o.crashed else "ok"
        print(f"  {t:<10} {status:<5} {o.execs:>12,} execs  {o.seconds:7.1f} s"
              + (f"  cov {o.coverage:,}" if o.coverage is not None else ""), flush=True)
        return o

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outcomes = list(pool.map(one, targets))
    crashed = [o for o in outcomes if o.crashed]
    total = sum(o.execs for o in outcomes)
    print(f"{len(outcomes)} target(s), {total:,} executions, {len(crashed)} crashed")
    for o in crashed:
        print(f"\n=== {o.target}: exit status {o.returncode} ===\n{o.tail}")
        for a in o.artifacts:
            rel = a.relative_to(ROOT)
            if args.asan:
                print(f"reproduce under ASan: {asan_env_text()} "
                      f"{NATIVE_ENV}={NATIVE_ASAN.relative_to(ROOT)} python -m fuzz.fuzz_{o.target} {rel}"
                      f"    (without: python -m fuzz repro {o.target} {rel})")
            else:
                print(f"reproduce: python -m fuzz repro {o.target} {rel}    "
                      f"(or under libFuzzer: python -m fuzz.fuzz_{o.target} {rel})")
        if not o.artifacts:
            print("no crash input was written (the target failed before fuzzing?)")
    return 1 if crashed else 0


def cmd_repro(args: argparse.Namespace) -> int:
    import importlib
    import traceback

    mod = importlib.import_module(f"fuzz.fuzz_{args.target}")
    failed = 0
    for f in args.files:
        data = Path(f).read_bytes()
        try:
            mod.TestOneInput(data)
            print(f"{f}: passes")
        except Exception:
            failed += 1
            print(f"{f}: FAILS ({len(data)} bytes: {data[:80]!r})")
            traceback.print_exc()
    return 1 if failed else 0


def cmd_seed(args: argparse.Namespace) -> int:
    from fuzz import make_corpus

    make_corpus.main()
    return 0


def cmd_build_native(args: argparse.Namespace) -> int:
    """Cythonize the extensions into build/fuzz-native/src and compile each with clang's
    sanitizer coverage (the hooks atheris's libFuzzer provides) into build/fuzz-native/;
    with --asan, with AddressSanitizer too, into build/fuzz-native-asan/."""
    import sysconfig

    from Cython.Build import cythonize
    from setuptools import Extension

    cc = shutil.which(args.cc)
    if cc is None:
        print(f"{args.cc} not found (apt-get install clang)", file=sys.stderr)
        return 2
    # the release build's directives (setup.py); bounds checks off as in what ships
    directives = {"language_level": 3, "boundscheck": False, "wraparound": False,
                  "initializedcheck": False, "cdivision": True, "embedsignature": True}
    dest = NATIVE_ASAN if args.asan else NATIVE
    src = dest / "src"
    os.chdir(ROOT)
    exts = [Extension(m, [m.replace(".", os.sep) + ".pyx"]) for m in NATIVE_MODULES]
    built = cythonize(exts, compiler_directives=directives, build_dir=str(src), quiet=True)
    marker = dest / ASAN_MARKER  # says what the .so files here are, even of a build cut short
    if args.asan:
        dest.mkdir(parents=True, exist_ok=True)
        marker.write_text("compiled with " + " ".join(ASAN_FLAGS) + "\n")
    else:
        marker.unlink(missing_ok=True)
    inc = sysconfig.get_paths()["include"]
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    for ext in built:
        c = ext.sources[0]
        out = dest / (ext.name.replace(".", os.sep) + suffix)
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [cc, "-shared", "-fPIC", "-O1", "-g", "-DNDEBUG", "-I", inc, "-I", str(ROOT),
               *COVERAGE_FLAGS, *(ASAN_FLAGS if args.asan else []), c, "-o", str(out)]
        print(" ".join(cmd[:1] + ["…"] + cmd[-3:]), flush=True)
        subprocess.run(cmd, check=True)
    if args.asan:
        print(f"built {len(built)} instrumented extension(s) with AddressSanitizer in "
              f"{dest.relative_to(ROOT)}; use `python -m fuzz run --asan`")
    else:
        print(f"built {len(built)} instrumented extension(s) in {dest.relative_to(ROOT)}; "
              f"use `python -m fuzz run --native` (or {NATIVE_ENV}={dest.relative_to(ROOT)})")
    return 0


def cmd_asan_selfcheck(args: argparse.Namespace) -> int:
    from fuzz import asan_selfcheck

    return asan_selfcheck.main(cc=args.cc, stdb=not args.no_stdb)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the fuzz targets under libFuzzer")
    r.add_argument("targets", nargs="*", metavar="TARGET", help=f"of {', '.join(TARGETS)} (default: all)")
    r.add_argument("--time", type=float, default=None, help="seconds per target (default 60 unless --runs)")
    r.add_argument("--runs", type=int, default=None, help="executions per target")
    r.add_argument("--jobs", "-j", type=int, default=1, help="targets run at once (default 1)")
    r.add_argument("--native", action="store_true", help="use the build-native extensions")
    r.add_argument("--asan", action="store_true",
                   help="use the build-native --asan extensions, with the ASan runtime preloaded")
    r.add_argument("--scratch", help=f"where new corpus finds go (default {SCRATCH.relative_to(ROOT)})")
    r.add_argument("--logs", help="write each target's libFuzzer output to DIR/<target>.log")
    r.add_argument("--libfuzzer", action="append", metavar="ARG", help="extra libFuzzer argument")
    r.set_defaults(fn=cmd_run)
    x = sub.add_parser("repro", help="run inputs through a target's TestOneInput (no atheris)")
    x.add_argument("target", choices=TARGETS)
    x.add_argument("files", nargs="+")
    x.set_defaults(fn=cmd_repro)
    s = sub.add_parser("seed", help="regenerate the seed corpora and dictionaries")
    s.set_defaults(fn=cmd_seed)
    b = sub.add_parser("build-native", help="compile the Cython extensions with clang coverage")
    b.add_argument("--cc", default="clang")
    b.add_argument("--asan", action="store_true",
                   help="with AddressSanitizer too, into build/fuzz-native-asan/")
    b.set_defaults(fn=cmd_build_native)
    a = sub.add_parser("asan-selfcheck", help="show that the ASan set-up catches a heap overflow")
    a.add_argument("--cc", default="clang")
    a.add_argument("--no-stdb", action="store_true",
                   help="skip loading stdb's ASan build (check only the runtime and compiler)")
    a.set_defaults(fn=cmd_asan_selfcheck)
    args = p.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
