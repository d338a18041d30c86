"""Build the arena's page: examples/arena/web → stdb/web/arena (index.html and app.js, the page's
script bundled with the TypeScript SDK by esbuild).  ``python -m tools.build_web [--out DIR]``.

The built page is committed inside the Python package, so that ``pip install -e . && stdb start
--demo`` serves it with no Node on the machine; tests/test_web.py rebuilds it and fails when the
committed copy is stale.  Needs Node and sdk/typescript's packages (``npm ci`` there; this
runs it when they are missing).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SDK = ROOT / "sdk" / "typescript"
SOURCE = ROOT / "examples" / "arena" / "web"
OUT = ROOT / "stdb" / "web" / "arena"
FILES = ("index.html", "app.js")


def ensure_packages() -> pathlib.Path:
    """esbuild from the SDK's node_modules (``npm ci`` first when it is not there)."""
    esbuild = SDK / "node_modules" / "esbuild" / "bin" / "esbuild"
    if not esbuild.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("error: building the page needs Node and npm (apt-get install nodejs npm)")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=SDK, check=True,
                       stdout=subprocess.DEVNULL)
    return esbuild


def build(out: pathlib.Path = OUT) -> list[pathlib.Path]:
    """Build into ``out``; the files written."""
    esbuild = ensure_packages()
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(esbuild), str(SOURCE / "main.js"), "--bundle", "--format=esm", "--minify",
                    "--target=es2020", "--platform=browser", "--legal-comments=none",
                    f"--outfile={out / 'app.js'}", "--log-level=warning"], cwd=ROOT, check=True)
    shutil.copyfile(SOURCE / "index.html", out / "index.html")
    return [out / f for f in FILES]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.build_web", description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT),
                    help=f"where to write the page (default {OUT.relative_to(ROOT)})")
    a = ap.parse_args(argv)
    for f in build(pathlib.Path(a.out)):
        print(f"{os.path.relpath(f)}: {f.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
