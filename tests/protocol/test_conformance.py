"""Every reference case through the mapping (plan + the identify look-up), compared whole, and
the normalisation that undoes the documented differences (and nothing else) before comparing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from klaviyo_destination.js import JsonObject
from klaviyo_destination.protocol import process, route
from tests.helpers.conformance import (
    V2V3_DIR,
    ScriptedLookup,
    as_reference,
    case_files,
    config_of,
    expected_of,
    load,
    lookups_of,
    normalise_processor,
    normalise_router,
    processor_jobs,
    router_jobs,
    unordered,
)

pytestmark = pytest.mark.contract


@pytest.mark.anyio
@pytest.mark.parametrize("path", [*case_files(), *case_files(V2V3_DIR)])
async def test_reference_case(path: Path) -> None:
    case = load(path)
    expected = expected_of(case)
    lookup = ScriptedLookup(case.get("klaviyo_responses", []))
    filter_code = bool(case.get("request_features", {}).get("filter-code"))
    if case["source"] == "processor":
        items = await process(processor_jobs(case), lookup, filter_code=filter_code)
        got = normalise_processor(items, case["input"], case["destination_config"])
        want = {k: v for k, v in expected.items() if k != "lookups"}
        assert got == want
    else:
        outputs = await route(router_jobs(case), lookup, filter_code=filter_code)
        messages = {item["job_id"]: item["message"] for item in case["input"]}
        configs = {item["job_id"]: config_of(case, item) for item in case["input"]}
        assert unordered(normalise_router(outputs, messages, configs)) == unordered(
            expected["outputs"]
        )
    assert lookups_of(lookup.calls) == expected.get("lookups", [])


# --- the normalisation undoes exactly the documented differences, nowhere else ---------------
ISO = "2025-11-28T10:00:00.000Z"
#: sha256(b'{"type":"track"}'), first 32 hex digits
DIGEST = "338932d384008b853f6dd3d47fa582d3"


def _event_request(**attributes: Any) -> JsonObject:
    body = {"data": {"type": "event", "attributes": {"metric": {"name": "E"}, **attributes}}}
    return {"method": "POST", "endpoint_path": "/api/events", "body": body}


def _attributes(request: JsonObject) -> JsonObject:
    attributes: JsonObject = request["body"]["data"]["attributes"]
    return attributes


@pytest.mark.parametrize(
    ("sent", "message", "config", "reference"),
    [
        # D1: unique_id equal to the messageId, and only then
        ({"unique_id": "m1"}, {"messageId": "m1"}, {}, {}),
        ({"unique_id": "m2"}, {"messageId": "m1"}, {}, {"unique_id": "m2"}),
        ({"unique_id": "m1"}, {}, {}, {"unique_id": "m1"}),
        ({"unique_id": "7"}, {"messageId": 7}, {}, {}),
        # D1 without a usable messageId: the digest of exactly this input
        ({"unique_id": DIGEST}, {"type": "track"}, {}, {}),
        ({"unique_id": DIGEST}, {"type": "track", "messageId": ""}, {}, {"unique_id": DIGEST}),
        ({"unique_id": DIGEST}, {"type": "screen"}, {}, {"unique_id": DIGEST}),
        # event_properties_always: {} where the input had none, unless flattening sends {} too
        ({"properties": {}}, {}, {}, {}),
        ({"properties": {}}, {"properties": None}, {}, {}),
        ({"properties": {}}, {}, {"flattenProperties": True}, {"properties": {}}),
        ({"properties": {}}, {"properties": {}}, {}, {"properties": {}}),
        ({"properties": {"a": 1}}, {}, {}, {"properties": {"a": 1}}),
        # event_time_iso: the ISO text of exactly the input's number
        ({"time": ISO}, {"timestamp": 1764324000000}, {}, {"time": 1764324000000}),
        ({"time": ISO}, {"timestamp": 1764324000}, {}, {"time": 1764324000}),
        ({"time": ISO}, {"timestamp": 1764324001}, {}, {"time": ISO}),
        ({"time": ISO}, {"timestamp": ISO}, {}, {"time": ISO}),
        ({"time": ISO}, {}, {}, {"time": ISO}),
    ],
)
def test_as_reference_undoes_only_documented_differences(
    sent: JsonObject, message: JsonObject, config: JsonObject, reference: JsonObject
) -> None:
    got = as_reference(_event_request(**sent), message, config)
    assert _attributes(got) == {"metric": {"name": "E"}, **reference}


def test_as_reference_leaves_other_requests_alone() -> None:
    request = {"method": "POST", "endpoint_path": "/api/profiles", "body": {"data": {}}}
    assert as_reference(request, {"messageId": "m1"}, {}) is request
