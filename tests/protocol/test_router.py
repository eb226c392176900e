"""Router protocol rules (§12) beyond the single reference case: chunks, merges, Q1, 299."""

from __future__ import annotations

import asyncio
from typing import Any

from klaviyo_destination.protocol import route
from tests.helpers.conformance import ScriptedLookup

CREATED = {"status": 201, "body": {"data": {"id": "P1", "attributes": {}}}}
CONFIG = {"privateApiKey": "pk_router"}


def _job(job_id: int, user: str, message: dict[str, Any]) -> dict[str, Any]:
    return {
        "message": message,
        "metadata": {"jobId": job_id, "userId": user},
        "destination": {"ID": "d1", "Config": CONFIG},
    }


def _identify(email: str, list_id: str) -> dict[str, Any]:
    props = {"subscribe": True, "listId": list_id}
    return {"type": "identify", "userId": email, "traits": {"email": email, "properties": props}}


def _group(email: str, list_id: str) -> dict[str, Any]:
    traits = {"subscribe": True, "email": email}
    return {"type": "group", "userId": email, "groupId": list_id, "traits": traits}


def _track(name: str) -> dict[str, Any]:
    return {"type": "track", "userId": "u", "event": name, "properties": {}}


def _run(jobs: list[dict[str, Any]], *, filter_code: bool = False) -> list[dict[str, Any]]:
    return asyncio.run(route(jobs, ScriptedLookup([CREATED]), filter_code=filter_code))


def _shape(output: dict[str, Any]) -> tuple[list[int], list[tuple[str, str]]]:
    """(job ids, [(method, path)]) of one output."""
    raw = output.get("batchedRequest", [])
    requests = raw if isinstance(raw, list) else [raw]
    paths = [(r["method"], r["endpoint"].removeprefix("https://a.klaviyo.com")) for r in requests]
    return [m["jobId"] for m in output["metadata"]], paths


def test_each_patch_travels_with_its_own_subscription_q1() -> None:
    # Q1 fixed: with two lists, each identify's PATCH rides in the batched output of its own
    # subscription, not all in the first one.
    outputs = _run(
        [_job(1, "a", _identify("a@b.co", "L1")), _job(2, "b", _identify("b@b.co", "L2"))]
    )
    assert sorted(_shape(o) for o in outputs) == [
        (
            [1],
            [("POST", "/api/profile-subscription-bulk-create-jobs"), ("PATCH", "/api/profiles/P1")],
        ),
        (
            [2],
            [("POST", "/api/profile-subscription-bulk-create-jobs"), ("PATCH", "/api/profiles/P1")],
        ),
    ]


def test_same_list_merges_and_chunks_at_100() -> None:
    jobs = [_job(i, f"u{i}", _group(f"{i}@b.co", "L1")) for i in range(150)]
    outputs = _run(jobs)
    sizes = [
        len(o["batchedRequest"][0]["body"]["JSON"]["data"]["attributes"]["subscriptions"])
        for o in outputs
    ]
    assert sizes == [100, 50]
    assert [m["jobId"] for o in outputs for m in o["metadata"]] == list(range(150))


def test_type_chunks_keep_each_users_order() -> None:
    # §12.2: A:track, A:identify, B:track, B:identify, A:track -> chunks [1,3], [2,4], [5];
    # A's second track is not batched ahead of A's identify.
    jobs = [
        _job(1, "A", _track("one")),
        _job(2, "A", {"type": "identify", "userId": "A", "traits": {"email": "a@b.co"}}),
        _job(3, "B", _track("two")),
        _job(4, "B", {"type": "identify", "userId": "B", "traits": {"email": "b@b.co"}}),
        _job(5, "A", _track("three")),
    ]
    outputs = _run(jobs)
    assert [_shape(o)[0] for o in outputs] == [[1], [3], [2], [4], [5]]


def test_an_invalid_api_version_fails_the_whole_destination_group() -> None:
    job = _job(1, "a", _track("x"))
    job["destination"]["Config"] = {**CONFIG, "apiVersion": "v9"}
    [output] = _run([job, {**job, "metadata": {"jobId": 2, "userId": "b"}}])
    assert output["statusCode"] == 400
    assert output["error"] == "Unsupported Klaviyo apiVersion: v9"
    assert [m["jobId"] for m in output["metadata"]] == [1, 2]


def test_filter_code_marks_a_created_profile_without_subscription_299() -> None:
    identify = {"type": "identify", "userId": "a", "traits": {"email": "a@b.co"}}
    [output] = _run([_job(1, "a", identify)], filter_code=True)
    assert output["statusCode"] == 299
    assert output["error"] == '{"id":"P1","attributes":{}}'
    assert output["batched"] is False
