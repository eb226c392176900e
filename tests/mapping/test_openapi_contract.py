"""Every request body the service plans validates against Klaviyo's own OpenAPI document.

The schemas are derived from the document (revision 2023-02-22) into ``tests/schemas/`` by
``tests/schemas/derive.py``, so these tests run without ``../shared``. Bodies come from the golden
mapping tables, the reference cases and the README's samples.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from jsonschema import Draft4Validator

from klaviyo_destination.ingest import parse_config
from klaviyo_destination.planned import PlannedRequest, patch_profile
from tests.helpers.conformance import CASES_DIR, expected_of
from tests.helpers.planning import plan_or_raise
from tests.schemas import load, validator

ROOT: Final = Path(__file__).resolve().parents[2]
#: operation of each planned request: (method, path template) -> request schema name
SCHEMAS: Final = {
    ("POST", "/api/profiles"): "ProfileCreateQuery",
    ("PATCH", "/api/profiles/{id}"): "ProfilePartialUpdateQuery",
    ("POST", "/api/events"): "EventCreateQuery",
    ("POST", "/api/profile-subscription-bulk-create-jobs"): "SubscriptionCreateJobCreateQuery",
}
#: Golden rows whose bodies the schema refuses and that docs/mapping.md keeps as the reference
#: sends them, because the input gives no clear valid form (Part A item 7 converts only what it
#: does): Klaviyo's answer is then reported per event. Each row names every refusal expected,
#: so no other refusal can hide behind it; every other planned body must validate.
REFERENCE_REFUSALS: Final = {
    "group/numeric-group-id-copied": [
        "POST /api/profile-subscription-bulk-create-jobs: 123 is not of type 'string'"
    ],
    "identify/zero-and-false-are-kept": [
        "POST /api/profiles: False is not of type 'string'",
        "POST /api/profiles: 0 is not of type 'string'",
        "PATCH /api/profiles/01GW3PHVY0MTCDGS0A1612HARX: False is not of type 'string'",
        "PATCH /api/profiles/01GW3PHVY0MTCDGS0A1612HARX: 0 is not of type 'string'",
    ],
    "subscription/numeric-list-id-copied-as-is": [
        "POST /api/profile-subscription-bulk-create-jobs: 42 is not of type 'string'"
    ],
    "track/event-zero-is-allowed": ["POST /api/events: 0 is not of type 'string'"],
    "valid_bodies/screen-event-zero-beats-name": ["POST /api/events: 0 is not of type 'string'"],
    "valid_bodies/time-boolean-copied": ["POST /api/events: True is not of type 'string'"],
}

pytestmark = pytest.mark.contract


def _validators() -> dict[str, Draft4Validator]:
    return {name: validator(name) for name in SCHEMAS.values()}


def _operation(request: PlannedRequest) -> tuple[str, str]:
    path = request.path
    if request.method == "PATCH":
        path = path.rsplit("/", 1)[0] + "/{id}"
    return request.method, path


def _planned() -> Iterator[Any]:
    for path in sorted((ROOT / "tests" / "cases").glob("*.json")):
        for row in json.loads(path.read_text(encoding="utf-8")):
            if "requests" in row:
                case = f"{path.stem}/{row['id']}"
                yield pytest.param(case, row["event"], row["config"], id=case)
    for path in sorted(CASES_DIR.glob("*.json")):
        case = json.loads(path.read_text(encoding="utf-8"))
        expected = expected_of(case)
        if case["source"] == "processor":
            messages = [case["input"]] if "requests" in expected else []
        else:  # the jobs the reference turned into requests
            planned = {
                j for out in expected["outputs"] if "requests" in out for j in out["job_ids"]
            }
            messages = [job["message"] for job in case["input"] if job["job_id"] in planned]
        for index, message in enumerate(messages):
            name = f"{path.stem}-{index}"
            yield pytest.param(name, message, case["destination_config"], id=name)
    for path in sorted((ROOT / "examples").glob("*.json")):
        name = f"examples/{path.stem}"
        yield pytest.param(name, json.loads(path.read_text()), {}, id=name)


@pytest.fixture(scope="module")
def validators() -> dict[str, Draft4Validator]:
    return _validators()


@pytest.mark.parametrize(("case", "event", "config"), list(_planned()))
def test_planned_bodies_match_klaviyos_schema(
    case: str,
    event: dict[str, Any],
    config: dict[str, Any],
    validators: dict[str, Draft4Validator],
) -> None:
    planned = plan_or_raise(event, parse_config({"privateApiKey": "pk_test", **config}))
    assert planned
    problems = []
    for request in planned:
        sent = [request, patch_profile(request, "01GW3PHVY0MTCDGS0A1612HARX")]
        for body in sent if request.upsert else [request]:
            schema = validators[SCHEMAS[_operation(body)]]
            problems += [
                f"{body.method} {body.path}: {e.message}" for e in schema.iter_errors(body.body)
            ]
    assert problems == REFERENCE_REFUSALS.get(case, [])


def test_request_schemas_are_the_ones_the_document_names() -> None:
    """SCHEMAS (paths as the service sends them, without the slash) agrees with the document."""
    declared = {
        tuple(operation.split(" ")): entry["request"]
        for operation, entry in load("operations.json").items()
    }
    ours = {(method, path + "/"): name for (method, path), name in SCHEMAS.items()}
    assert ours == declared
