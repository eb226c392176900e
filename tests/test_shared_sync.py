"""The repository's copies of ../shared material are still in step with it.

A clone has no ../shared, so these skip there and say why. They are not contract tests: the
contract tests run from the copies and never need this folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import pytest

from tests.helpers.conformance import CASES_DIR, V2V3_DIR

from .schemas.derive import REVISIONS, derive, render

SHARED: Final = Path(__file__).resolve().parents[2] / "shared"
SHARED_CASES: Final = SHARED / "conformance" / "cases"
#: (the shared folder, its copy here) for each set of reference cases
CASE_COPIES: Final = [(SHARED_CASES, CASES_DIR), (SHARED / "conformance" / "cases-v2v3", V2V3_DIR)]


def _contents(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.json"))}


@pytest.mark.parametrize(("shared_dir", "copy_dir"), CASE_COPIES, ids=["v1", "v2v3"])
def test_reference_cases_are_a_byte_identical_copy(shared_dir: Path, copy_dir: Path) -> None:
    if not shared_dir.is_dir():
        pytest.skip(f"{shared_dir} is absent")
    shared = _contents(shared_dir)
    copied = _contents(copy_dir)
    assert sorted(copied) == sorted(shared), "re-sync: see tests/reference_cases/README.md"
    stale = [name for name in shared if copied[name] != shared[name]]
    assert stale == [], "re-sync: see tests/reference_cases/README.md"


@pytest.mark.parametrize("revision", sorted(REVISIONS))
def test_schemas_are_what_derive_writes(revision: str) -> None:
    spec, out, operations = REVISIONS[revision]
    if not spec.is_file():
        pytest.skip(f"{spec} is absent")
    derived = derive(json.loads(spec.read_text(encoding="utf-8")), operations)
    expected = {name: render(content).encode() for name, content in derived.items()}
    assert _contents(out) == expected, "run: python tests/schemas/derive.py"
