"""Every v2/v3 request body the service plans, checked against its revision's Klaviyo schema.

The schemas are derived from the 2024-10-15 and 2026-04-15 OpenAPI subsets into
``tests/schemas/<revision>/`` (``tests/schemas/derive.py``). Bodies come from the project's v2/v3
rows (``tests/cases/v2v3``) and the reference's v2/v3 cases, planned by the pipeline (processor
rows) or batched by the router (router rows, so merged jobs are checked too). Where the body is
what the reference sends and the schema refuses it, and Part A does not fix it, the refusal is
listed below with its reason (docs/mapping.md §24); every other body must validate.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
from jsonschema import Draft4Validator

from klaviyo_destination.ingest import parse_config
from klaviyo_destination.js import JsonObject
from klaviyo_destination.protocol import route
from tests.helpers.conformance import V2V3_DIR, ScriptedLookup
from tests.helpers.planning import plan_or_raise
from tests.schemas import load, validator

ROWS_DIR: Final = Path(__file__).resolve().parents[1] / "cases" / "v2v3"
REVISIONS: Final = ("2024-10-15", "2026-04-15")
#: path as the service sends it -> the request schema the subsets name for it
SCHEMAS: Final = {
    "/api/profile-import": "ProfileUpsertQuery",
    "/api/events": "EventCreateQueryV2",
    "/api/profile-subscription-bulk-create-jobs": "SubscriptionCreateJobCreateQuery",
    "/api/profile-subscription-bulk-delete-jobs": "SubscriptionDeleteJobCreateQuery",
}
#: Keys the service sends that the revision's schema does not name (it allows them: no
#: ``additionalProperties: false``), each a conscious decision (docs/mapping.md §24):
#: ``anonymous_id`` left profile-import's listed attributes from 2025-10-15, but the reference's
#: v3 still sends it and the event profile still lists it; Klaviyo's answer to it is unverified.
UNLISTED: Final = {("2026-04-15", "/api/profile-import", "/data/attributes/anonymous_id")}
#: What the schemas refuse in bodies sent as the reference sends them, by case, with why:
#: - the reference sends the metric without a name when the event has neither ``event`` nor
#:   ``name``: no valid name can be made up (§20.2);
#: - a numeric ``groupId`` is the job's list id as it is in the processor, like v1's (§21);
#: - ``fieldsToUnset`` is sent as it is: a non-string in it names no property (§17.4).
REFERENCE_REFUSALS: Final = {
    "event/event-without-name": ["POST /api/events: 'name' is a required property"],
    "group/group-numeric-group-id": [
        "POST /api/profile-subscription-bulk-create-jobs: 123 is not of type 'string'"
    ],
    "identify/patch-properties-from-integrations": [
        "POST /api/profile-import: ['old', 5] is not valid under any of the given schemas"
    ],
}

pytestmark = pytest.mark.contract


def _rows() -> Iterator[tuple[str, str, Any, JsonObject]]:
    """(case name, source, input, config) of every v2/v3 row and reference case that plans a
    request."""
    for path in sorted(ROWS_DIR.glob("*.json")):
        for row in json.loads(path.read_text(encoding="utf-8")):
            if _plans(row["expected"]):
                yield f"{path.stem}/{row['id']}", row["source"], row["input"], row["config"]
    for path in sorted(V2V3_DIR.glob("*.json")):
        case = json.loads(path.read_text(encoding="utf-8"))
        if _plans(case["expected"]):
            yield path.stem, case["source"], case["input"], case["destination_config"]


def _plans(expected: JsonObject) -> bool:
    return "requests" in expected or any("requests" in o for o in expected.get("outputs", []))


@pytest.fixture(scope="module")
def validators() -> dict[tuple[str, str], Draft4Validator]:
    return {
        (revision, path): validator(name, revision)
        for revision in REVISIONS
        for path, name in SCHEMAS.items()
    }


async def _bodies(source: str, given: Any, config: JsonObject) -> list[tuple[str, str, Any]]:
    """(revision, path, body) of every request the service plans for the case."""
    if source == "processor":
        planned = plan_or_raise(given, parse_config({"privateApiKey": "pk_test", **config}))
        return [(r.revision.name, r.path, r.body) for r in planned]
    jobs = [
        {
            "message": item["message"],
            "metadata": {"jobId": item["job_id"], "userId": item["user_id"]},
            "destination": {
                "ID": item.get("destination_id", "d1"),
                "Config": {"privateApiKey": "pk_test", **item.get("destination_config", config)},
            },
        }
        for item in given
        if "statusCode" not in item["message"]  # already transformed: not planned here
    ]
    found = []
    for output in await route(jobs, ScriptedLookup([])):
        raw = output.get("batchedRequest", [])
        for envelope in raw if isinstance(raw, list) else [raw]:
            revision = envelope["headers"]["revision"]
            if revision in REVISIONS:
                found.append((revision, envelope["endpointPath"], envelope["body"]["JSON"]))
    return found


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("case", "source", "given", "config"), [pytest.param(*r, id=r[0]) for r in _rows()]
)
async def test_planned_v2v3_bodies_match_their_revisions_schema(
    case: str,
    source: str,
    given: Any,
    config: JsonObject,
    validators: dict[tuple[str, str], Draft4Validator],
) -> None:
    problems = []
    bodies = await _bodies(source, given, config)
    assert bodies
    for revision, path, body in bodies:
        schema = validators[(revision, path)]
        problems += [f"POST {path}: {e.message}" for e in schema.iter_errors(body)]
        root: JsonObject = dict(schema.schema)  # type: ignore[arg-type]  # a Draft 4 object
        problems += [
            f"POST {path}: {key} is not named by {revision}"
            for key in _unlisted(body, root, root["definitions"], "")
            if (revision, path, key) not in UNLISTED
        ]
    assert problems == REFERENCE_REFUSALS.get(case, [])


def _unlisted(value: Any, schema: JsonObject, definitions: JsonObject, at: str) -> list[str]:
    """Keys of ``value`` (as ``/a/b`` paths) that an object schema with listed ``properties``
    does not name: Draft 4 allows them, but Klaviyo may not expect them."""
    while "$ref" in schema:
        schema = definitions[schema["$ref"].rsplit("/", 1)[1]]
    found: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            listed = schema["properties"].get(key)
            if listed is None:
                found.append(f"{at}/{key}")
            else:
                found += _unlisted(item, listed, definitions, f"{at}/{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += _unlisted(item, schema["items"], definitions, f"{at}/{index}")
    return found


@pytest.mark.parametrize("revision", REVISIONS)
def test_request_schemas_are_the_ones_the_subsets_name(revision: str) -> None:
    declared = {
        operation.split(" ")[1]: entry["request"]
        for operation, entry in load("operations.json", revision).items()
    }
    assert declared == SCHEMAS
