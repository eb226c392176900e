"""``@record``: frozen to the type checker (what CI's mypy run enforces), slotted data classes at
run time. (Events are frozen pydantic models: tests/test_events.py.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from mypy import api

from klaviyo_destination.planned import PlannedEvent, PlannedRequest
from klaviyo_destination.protocol.jobs import Job

SNIPPET = """
from dataclasses import replace
from klaviyo_destination.planned import PlannedRequest

request = PlannedRequest("POST", "/api/events/", {})
request.path = "/api/profiles/"
moved = replace(request, path="/api/profiles/")
"""


@pytest.mark.parametrize("kind", [PlannedRequest, PlannedEvent, Job])
def test_records_are_slotted_data_classes(kind: type) -> None:
    assert dataclasses.is_dataclass(kind)
    assert "__slots__" in vars(kind)


def test_the_type_checker_refuses_assigning_a_field(tmp_path: Path) -> None:
    snippet = tmp_path / "snippet.py"
    snippet.write_text(SNIPPET, encoding="utf-8")
    out, _, status = api.run(["--strict", "--no-incremental", str(snippet)])
    assert status == 1
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 1, out  # the assignment; replace() is the way to change one
    assert all("is read-only" in line for line in errors), out
