"""Compile the per-event modules with mypyc, or make sure the plain source is what runs.

    .venv/bin/python -m support.compile              # what make run, make test and make bench do
    .venv/bin/python -m support.compile --check      # exit 1 if compiled modules are stale
    .venv/bin/python -m support.compile --clean      # back to the source alone (make clean)
    python support/compile.py --root DIR --require   # the image: compile the installed package

The modules below are the mapping and what runs around it for every event; mypyc turns them
into C extensions that run the same code faster (``plan_event`` 1.7 times, a 100-event request
served about 1.2 times; bench/optimisations.md). A compiled
module sits beside its source (``lookups.cpython-311-x86_64-linux-gnu.so`` next to
``lookups.py``) and Python imports it first, so a module compiled from older source would
silently run instead of the file being edited. Hence the fingerprint of every source file of
the package, kept beside the compiled modules: when it no longer matches, they are rebuilt, or,
where mypyc is not installed (``make run`` installs the runtime lock only), removed, so the
source runs. Without a compiler the service runs the same source, only slower.

Standard library only: ``make run``'s virtualenv has no mypy.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

PACKAGE: Final = "klaviyo_destination"
SOURCE_ROOT: Final = Path(__file__).resolve().parent.parent / "src"
#: Relative to the package. Compiling the per-request modules as well gained nothing measurable
#: (bench/optimisations.md, tried and not kept).
COMPILED: Final = (
    "js.py",
    "pipeline.py",
    "ingest/body.py",
    "ingest/parse.py",
    "mapping/batching.py",
    "mapping/group.py",
    "mapping/identify.py",
    "mapping/lookups.py",
    "mapping/subscription.py",
    "mapping/track.py",
    "mapping/values.py",
    "protocol/envelopes.py",
    "protocol/processor.py",
)
STAMP: Final = ".mypyc-fingerprint"


def artifacts(root: Path) -> list[Path]:
    """The compiled modules under ``root``, and mypyc's shared library beside the package."""
    package = root / PACKAGE
    found = [*root.glob("*__mypyc.*.so"), *package.rglob("*.so")]
    return sorted(path for path in found if path.is_file())


def fingerprint(root: Path) -> str:
    """Every source file of the package (a compiled module reads the types of the others), which
    of them are compiled, the interpreter and mypy's version."""
    digest = hashlib.sha256(f"{sys.version}\n{_mypy_version()}\n{COMPILED}\n".encode())
    package = root / PACKAGE
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def stale(root: Path = SOURCE_ROOT) -> bool:
    """Compiled modules are present but were not built from the source as it is now."""
    if not artifacts(root):
        return False
    stamp = root / STAMP
    return not stamp.is_file() or stamp.read_text().strip() != fingerprint(root)


def describe(root: Path = SOURCE_ROOT) -> str:
    modules = [p for p in artifacts(root) if "__mypyc" not in p.name]
    if not modules:
        return "pure Python (no module compiled)"
    return f"{len(modules)} modules compiled with mypyc"


def ensure(root: Path, *, require: bool) -> int:
    if artifacts(root) and not stale(root):
        return 0
    if not _mypy_version():
        if artifacts(root):
            _remove(root)
            _say("mypyc is not installed: removed the compiled modules, the source runs")
        elif require:
            _say("mypyc is not installed (install the dev dependencies: make test)")
        return 1 if require else 0
    _remove(root)
    _say(f"compiling {len(COMPILED)} modules with mypyc (about 20 s) ...")
    started = time.monotonic()
    # In a copy of the package: run inside site-packages, mypy would take every module there
    # for one of ours (and refuse the ones that shadow the standard library's).
    with tempfile.TemporaryDirectory(prefix="mypyc-") as folder:
        work = Path(folder)
        shutil.copytree(
            root / PACKAGE, work / PACKAGE, ignore=shutil.ignore_patterns("__pycache__", "*.so")
        )
        result = subprocess.run(  # noqa: S603 -- our own interpreter and file list
            [sys.executable, "-m", "mypyc", *(f"{PACKAGE}/{module}" for module in COMPILED)],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            _say(f"mypyc failed (exit {result.returncode}); the source runs. Its last lines:")
            output = (result.stdout + result.stderr).splitlines()
            print("\n".join(output[-15:]), file=sys.stderr)  # noqa: T201
            return 1 if require else 0
        for built in artifacts(work):
            shutil.copy2(built, root / built.relative_to(work))
    (root / STAMP).write_text(fingerprint(root) + "\n")
    _say(f"{describe(root)} in {time.monotonic() - started:.0f} s")
    return 0


def _remove(root: Path) -> None:
    for path in artifacts(root):
        path.unlink()
    (root / STAMP).unlink(missing_ok=True)


def _mypy_version() -> str:
    if importlib.util.find_spec("mypyc") is None:
        return ""
    from mypy.version import __version__

    return __version__


def _say(text: str) -> None:
    print(f"support.compile: {text}", file=sys.stderr, flush=True)  # noqa: T201


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compile the per-event modules with mypyc.")
    parser.add_argument("--root", type=Path, default=SOURCE_ROOT, help="the package's parent")
    parser.add_argument("--check", action="store_true", help="exit 1 when stale, change nothing")
    parser.add_argument("--require", action="store_true", help="exit 1 when mypyc fails")
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if args.clean:
        _remove(root)
        return 0
    if args.check:
        return 1 if stale(root) else 0
    return ensure(root, require=args.require)


if __name__ == "__main__":
    sys.exit(main())
