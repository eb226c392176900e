"""support/compile.py: compiled modules are never older than their source, and in CI they are
the ones under test."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

from support import compile as compiled

PACKAGE = compiled.SOURCE_ROOT / compiled.PACKAGE


def _tree(root: Path) -> Path:
    """A package with one module, one compiled module beside it and mypyc's shared library."""
    package = root / compiled.PACKAGE
    (package / "mapping").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "mapping" / "lookups.py").write_text("X = 1\n")
    (package / "mapping" / "lookups.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    (root / "0123abcd__mypyc.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    return package


def test_compiled_modules_from_the_current_source_are_not_stale(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / compiled.STAMP).write_text(compiled.fingerprint(tmp_path) + "\n")
    assert not compiled.stale(tmp_path)
    assert compiled.main(["--root", str(tmp_path), "--check"]) == 0
    assert compiled.describe(tmp_path) == "1 modules compiled with mypyc"


@pytest.mark.parametrize("change", ["edit", "new module", "no stamp"])
def test_a_changed_source_makes_them_stale(tmp_path: Path, change: str) -> None:
    package = _tree(tmp_path)
    (tmp_path / compiled.STAMP).write_text(compiled.fingerprint(tmp_path) + "\n")
    if change == "edit":
        (package / "mapping" / "lookups.py").write_text("X = 2\n")
    elif change == "new module":
        (package / "errors.py").write_text("")
    else:
        (tmp_path / compiled.STAMP).unlink()
    assert compiled.stale(tmp_path)
    assert compiled.main(["--root", str(tmp_path), "--check"]) == 1


def test_source_alone_is_never_stale(tmp_path: Path) -> None:
    package = _tree(tmp_path)
    for path in compiled.artifacts(tmp_path):
        path.unlink()
    (package / "mapping" / "lookups.py").write_text("X = 3\n")
    assert not compiled.stale(tmp_path)
    assert compiled.describe(tmp_path) == "pure Python (no module compiled)"


def test_clean_removes_the_modules_and_the_stamp_but_no_source(tmp_path: Path) -> None:
    package = _tree(tmp_path)
    (tmp_path / compiled.STAMP).write_text("x\n")
    assert compiled.main(["--root", str(tmp_path), "--clean"]) == 0
    assert compiled.artifacts(tmp_path) == []
    assert not (tmp_path / compiled.STAMP).exists()
    assert (package / "mapping" / "lookups.py").read_text() == "X = 1\n"


def test_every_module_to_compile_exists() -> None:
    missing = [module for module in compiled.COMPILED if not (PACKAGE / module).is_file()]
    assert missing == []


@pytest.mark.skipif(
    os.environ.get("CI") != "true" and not compiled.artifacts(compiled.SOURCE_ROOT),
    reason="nothing compiled here (make test compiles; CI requires it)",
)
def test_the_suite_runs_the_compiled_modules() -> None:
    """``make test`` compiles before pytest (``--require`` in CI): the tests exercise what the
    image runs, not only the source."""
    for module in compiled.COMPILED:
        name = f"{compiled.PACKAGE}.{module.removesuffix('.py').replace('/', '.')}"
        assert importlib.import_module(name).__file__.endswith(".so"), name  # type: ignore[union-attr]
