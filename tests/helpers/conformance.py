"""Loading the reference's conformance cases (tests/reference_cases) and comparing against them.

The cases are a byte-identical copy of ../shared/conformance/cases (v1) and cases-v2v3
(``reference_cases/v2v3``; see the README there), so a clone without ../shared still runs them;
tests/test_shared_sync.py keeps the copies in step.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from klaviyo_destination.js import JsonObject

CASES_DIR = Path(__file__).resolve().parents[1] / "reference_cases"
V2V3_DIR = CASES_DIR / "v2v3"
#: The apiVersions of the profile-import path, whose events Part A changes differently.
IMPORT_VERSIONS = ("v2", "v3")


def case_files(folder: Path = CASES_DIR) -> list[Any]:
    """Parameters for pytest: one per case file, or a single skipped parameter."""
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        reason = f"no reference cases found at {folder}"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="no-cases")]
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
    """Each input item at the case's destination, or at its own ``destination_id`` and
    ``destination_config`` when it names them (the cases-v2v3 layout)."""
    return [
        {
            "message": item["message"],
            "metadata": {"jobId": item["job_id"], "userId": item["user_id"]},
            "destination": {
                "ID": item.get("destination_id", "d1"),
                "Name": "klaviyo",
                "Config": config_of(case, item),
            },
        }
        for item in case["input"]
    ]


def config_of(case: JsonObject, item: JsonObject) -> JsonObject:
    """The config of one router input item: its own, or the case's."""
    config: JsonObject = (
        item["destination_config"] if "destination_config" in item else case["destination_config"]
    )
    return config


def as_reference(request: JsonObject, message: JsonObject, config: JsonObject) -> JsonObject:
    """A planned event request back to what the reference sent for the same input.

    Undoes exactly the documented differences, each only where its input condition holds:
    D1's ``unique_id``, when it equals the input's messageId or, for an input without a usable
    messageId, the digest of the input (``_unique_id_of``); ``event_properties_always``'s
    ``properties: {}`` where the input had no properties and flattening (which makes the
    reference send ``{}`` too, Q10) is off; ``event_time_iso``'s ISO ``time`` where the input's
    ``timestamp`` is a number that converts to exactly that text. Anything else stays, so any
    other difference fails the comparison.
    """
    if request["endpoint_path"] != "/api/events":
        return request
    # At v2/v3 the reference sends the messageId as it is, and the first kept of timestamp,
    # originalTimestamp as ``time`` (docs/mapping.md §20.1, §24).
    at_v2v3 = config.get("apiVersion") in IMPORT_VERSIONS
    attributes = dict(request["body"]["data"]["attributes"])
    if "unique_id" in attributes and attributes["unique_id"] == _unique_id_of(message):
        if at_v2v3 and "messageId" in message:
            attributes["unique_id"] = message["messageId"]
        else:
            del attributes["unique_id"]
    if (
        message.get("properties") is None
        and not config.get("flattenProperties")
        and attributes.get("properties") == {}
    ):
        del attributes["properties"]
    sources = ("timestamp", "originalTimestamp") if at_v2v3 else ("timestamp",)
    sent = next((message[k] for k in sources if message.get(k) not in (None, "")), None)
    if "time" in attributes and attributes["time"] == _iso_of_unix(sent):
        attributes["time"] = sent
    data = {**request["body"]["data"], "attributes": attributes}
    return {**request, "body": {**request["body"], "data": data}}


def _unique_id_of(message: JsonObject) -> str:
    """D1 computed independently of the service (standard library JSON, not orjson)."""
    message_id = message.get("messageId")
    if isinstance(message_id, str) and message_id:
        return message_id
    if isinstance(message_id, int) and not isinstance(message_id, bool):
        return str(message_id)
    canonical = json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def _iso_of_unix(timestamp: Any) -> str | None:
    """``event_time_iso`` computed independently of the service, within datetime's years."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float) or not timestamp:
        return None
    ms = timestamp if abs(timestamp) >= 1e11 else timestamp * 1000
    try:
        moment = datetime(1970, 1, 1) + timedelta(milliseconds=int(ms))
    except OverflowError:
        return None
    return moment.isoformat(timespec="milliseconds") + "Z"


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


def normalise_processor(
    items: list[JsonObject], message: JsonObject, config: JsonObject
) -> JsonObject:
    """Processor response items → the case's ``expected`` shape (without lookups)."""
    if len(items) == 1 and "error" in items[0] and "output" not in items[0]:
        return {"error": error_of(items[0])}
    result: JsonObject = {
        "requests": [as_reference(from_envelope(item["output"]), message, config) for item in items]
    }
    marked = [item["output"] for item in items if item["output"].get("statusCode") == 299]
    if marked:
        result["suppressed"] = {"status": 299, "error": marked[0]["error"]}
    return result


def normalise_router(
    outputs: list[JsonObject], messages: dict[int, JsonObject], configs: dict[int, JsonObject]
) -> list[JsonObject]:
    """Router outputs → the case's ``outputs`` shape; ``configs`` is each job's config."""
    normalised = []
    for out in outputs:
        job_ids = [m["jobId"] for m in out["metadata"]]
        if "batchedRequest" not in out:
            normalised.append({"job_ids": job_ids, "error": error_of(out)})
            continue
        raw = out["batchedRequest"]
        requests = raw if isinstance(raw, list) else [raw]
        message, config = messages[job_ids[0]], configs[job_ids[0]]
        item: JsonObject = {
            "job_ids": job_ids,
            "batched": out["batched"],
            "status": out["statusCode"],
            "requests": [as_reference(from_envelope(r), message, config) for r in requests],
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
