"""The repository's copies of ../shared material are still in step with it.

A clone has no ../shared, so these skip there and say why. They are not contract tests: the
contract tests run from the copies and never need this folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import pytest

from tests.helpers.conformance import CASES_DIR

from .schemas import SCHEMAS_DIR
from .schemas.derive import DEFAULT_SPEC, derive, render

SHARED: Final = Path(__file__).resolve().parents[2] / "shared"
SHARED_CASES: Final = SHARED / "conformance" / "cases"


def _contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.json"))}


@pytest.mark.skipif(not SHARED_CASES.is_dir(), reason=f"{SHARED_CASES} is absent")
def test_reference_cases_are_a_byte_identical_copy() -> None:
    shared = _contents(SHARED_CASES)
    copied = _contents(CASES_DIR)
    assert sorted(copied) == sorted(shared), "re-sync: see tests/reference_cases/README.md"
    stale = [name for name in shared if copied[name] != shared[name]]
    assert stale == [], "re-sync: see tests/reference_cases/README.md"


@pytest.mark.skipif(not DEFAULT_SPEC.is_file(), reason=f"{DEFAULT_SPEC} is absent")
def test_schemas_are_what_derive_writes() -> None:
    derived = derive(json.loads(DEFAULT_SPEC.read_text(encoding="utf-8")))
    expected = {name: render(content).encode() for name, content in derived.items()}
    assert _contents(SCHEMAS_DIR) == expected, "run: python tests/schemas/derive.py"
