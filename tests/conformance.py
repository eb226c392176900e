"""Loading the reference's conformance cases (tests/reference_cases) and comparing against them.

The cases are a byte-identical copy of ../shared/conformance/cases (see the README there), so a
clone without ../shared still runs them; tests/test_shared_sync.py keeps the copy in step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from klaviyo_destination.js import JsonObject

CASES_DIR = Path(__file__).resolve().parent / "reference_cases"
SKIP_REASON = f"no reference cases found at {CASES_DIR}"


def case_files() -> list[Any]:
    """Parameters for pytest: one per case file, or a single skipped parameter."""
    files = sorted(CASES_DIR.glob("*.json")) if CASES_DIR.is_dir() else []
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason=SKIP_REASON), id="no-cases")]
    return [pytest.param(path, id=path.stem) for path in files]


def load(path: Path) -> JsonObject:
    case: JsonObject = json.loads(path.read_text(encoding="utf-8"))
    return case


def expected_of(case: JsonObject) -> JsonObject:
    """Part A: where a quirk fix applies, its expected result is ours."""
    expected: JsonObject = case.get("expected_if_fixed") or case["expected"]
    return expected


@dataclass
class ScriptedLookup:
    """Answers create-profile calls from the case's ``klaviyo_responses``, recording each call."""

    responses: list[JsonObject]
    calls: list[tuple[JsonObject, str]] = field(default_factory=list)

    async def __call__(self, body: JsonObject, key: SecretStr) -> tuple[int, Any]:
        self.calls.append((body, key.get_secret_value()))
        answer = self.responses[min(len(self.calls), len(self.responses)) - 1]
        return int(answer["status"]), answer["body"]


def processor_jobs(case: JsonObject) -> list[JsonObject]:
    return [
        {
            "message": case["input"],
            "metadata": {"jobId": 1, "userId": "u1", "destinationId": "d1", "workspaceId": "w1"},
            "destination": {"ID": "d1", "Name": "klaviyo", "Config": case["destination_config"]},
        }
    ]


def router_jobs(case: JsonObject) -> list[JsonObject]:
    return [
        {
            "message": item["message"],
            "metadata": {"jobId": item["job_id"], "userId": item["user_id"]},
            "destination": {"ID": "d1", "Name": "klaviyo", "Config": case["destination_config"]},
        }
        for item in case["input"]
    ]


def strip_unique_id(request: JsonObject, message: JsonObject) -> JsonObject:
    """D1: ignore a ``unique_id`` equal to the input's messageId, and nothing else."""
    attributes = request["body"].get("data", {}).get("attributes", {})
    if "unique_id" in attributes and attributes["unique_id"] == message.get("messageId"):
        attributes = {k: v for k, v in attributes.items() if k != "unique_id"}
        data = {**request["body"]["data"], "attributes": attributes}
        return {**request, "body": {**request["body"], "data": data}}
    return request


def from_envelope(output: JsonObject) -> JsonObject:
    """A reference REST envelope back to the case files' request object."""
    return {
        "method": output["method"],
        "endpoint": output["endpoint"],
        "endpoint_path": output["endpointPath"],
        "headers": output["headers"],
        "body": output["body"]["JSON"],
    }


def error_of(item: JsonObject) -> JsonObject:
    tags = item["statTags"]
    error = {"status": item["statusCode"], "message": item["error"]}
    error["category"] = tags["errorCategory"]
    if "errorType" in tags:
        error["type"] = tags["errorType"]
    return error


def normalise_processor(items: list[JsonObject], message: JsonObject) -> JsonObject:
    """Processor response items → the case's ``expected`` shape (without lookups)."""
    if len(items) == 1 and "error" in items[0] and "output" not in items[0]:
        return {"error": error_of(items[0])}
    result: JsonObject = {
        "requests": [strip_unique_id(from_envelope(item["output"]), message) for item in items]
    }
    marked = [item["output"] for item in items if item["output"].get("statusCode") == 299]
    if marked:
        result["suppressed"] = {"status": 299, "error": marked[0]["error"]}
    return result


def normalise_router(
    outputs: list[JsonObject], messages: dict[int, JsonObject]
) -> list[JsonObject]:
    normalised = []
    for out in outputs:
        job_ids = [m["jobId"] for m in out["metadata"]]
        if "batchedRequest" not in out:
            normalised.append({"job_ids": job_ids, "error": error_of(out)})
            continue
        raw = out["batchedRequest"]
        requests = raw if isinstance(raw, list) else [raw]
        message = messages[job_ids[0]]
        item: JsonObject = {
            "job_ids": job_ids,
            "batched": out["batched"],
            "status": out["statusCode"],
            "requests": [strip_unique_id(from_envelope(r), message) for r in requests],
        }
        if out["statusCode"] == 299:
            item["suppressed_error"] = out["error"]
        normalised.append(item)
    return normalised


def lookups_of(calls: list[tuple[JsonObject, str]]) -> list[JsonObject]:
    return [
        {
            "method": "POST",
            "endpoint": "https://a.klaviyo.com/api/profiles",
            "headers": {
                "Accept": "application/json",
                "Content-Type": "application/json",
                "Authorization": f"Klaviyo-API-Key {key}",
                "revision": "2023-02-22",
            },
            "body": body,
        }
        for body, key in calls
    ]


def unordered(outputs: list[JsonObject]) -> list[str]:
    """Router outputs compare as an unordered collection (the reference's order has no meaning)."""
    return sorted(json.dumps(o, sort_keys=True) for o in outputs)
