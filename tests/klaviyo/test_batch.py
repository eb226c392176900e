"""A batch of planned events (``klaviyo/batch.py``): per-user order, bounded concurrency, merged
subscription jobs, one outcome per event."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
import respx

from klaviyo_destination import planned
from klaviyo_destination.errors import InvalidEvent
from klaviyo_destination.klaviyo import KlaviyoClient, SentRequest
from tests.klaviyo.helpers import (
    PROFILE_BODY,
    Factory,
    Handler,
    deliver,
    deliver_batch,
    error_body,
    event,
    job_sizes,
    plan,
    subscription,
)

pytestmark = pytest.mark.anyio


async def test_identify_with_subscription_sends_both_in_order(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    router.post("/api/profiles").respond(201, json={"data": {"id": "P1"}})
    router.post("/api/profile-subscription-bulk-create-jobs").respond(202)
    plan = [planned.create_profile(PROFILE_BODY), subscription("L1", "a@b.co")]
    outcome = await deliver(client, plan)
    assert [r.path for r in outcome.requests] == [
        "/api/profiles",
        "/api/profile-subscription-bulk-create-jobs",
    ]


async def test_stops_at_the_first_failure(client: KlaviyoClient, router: respx.MockRouter) -> None:
    router.post("/api/profiles").respond(400, json=error_body(400, "invalid", "Invalid email"))
    subscribe = router.post("/api/profile-subscription-bulk-create-jobs").respond(202)
    outcome = await deliver(client, [planned.create_profile(PROFILE_BODY), subscription("L1", "x")])
    assert outcome.status == "rejected"
    assert subscribe.call_count == 0


def recording(log: list[tuple[str, str]], status: int = 202) -> Handler:
    """A transport handler that records (path, what) in arrival order and yields once."""

    async def handle(request: httpx.Request) -> httpx.Response:
        body = httpx.Response(200, content=request.content).json()
        attributes = body["data"].get("attributes", {})
        what = attributes.get("metric", {}).get("name") or attributes.get("list_id") or ""
        log.append((request.url.path, what))
        await asyncio.sleep(0.001)
        if request.url.path == "/api/profiles":
            return httpx.Response(201, json={"data": {"id": "P"}})
        return httpx.Response(status)

    return handle


async def test_batch_keeps_each_users_order(make_client: Factory) -> None:
    log: list[tuple[str, str]] = []
    events = [
        plan("A", [event("a1")]),
        plan("B", [event("b1")]),
        plan("A", [event("a2")]),
        plan("B", [event("b2")]),
        plan("A", [event("a3")]),
    ]
    async with make_client(httpx.MockTransport(recording(log))) as client:
        outcomes = await deliver_batch(client, events)
    assert [o.status for o in outcomes] == ["delivered"] * 5
    names = [what for _, what in log]
    assert [n for n in names if n.startswith("a")] == ["a1", "a2", "a3"]
    assert [n for n in names if n.startswith("b")] == ["b1", "b2"]


async def test_batch_subscription_never_overtakes_the_users_later_event(
    make_client: Factory,
) -> None:
    log: list[tuple[str, str]] = []
    events = [
        plan("A", [planned.create_profile(PROFILE_BODY), subscription("L1", "a@b.co")]),
        plan("A", [event("after")]),
        plan("B", [planned.create_profile(PROFILE_BODY), subscription("L1", "b@b.co")]),
    ]
    async with make_client(httpx.MockTransport(recording(log))) as client:
        outcomes = await deliver_batch(client, events)
    assert [o.status for o in outcomes] == ["delivered"] * 3
    assert log.index(("/api/profile-subscription-bulk-create-jobs", "L1")) < log.index(
        ("/api/events", "after")
    )
    assert sum(path.endswith("jobs") for path, _ in log) == 1  # A and B merged


async def test_batch_runs_users_concurrently_but_bounded(make_client: Factory) -> None:
    in_flight = peak = 0

    async def handle(_: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return httpx.Response(202)

    events = [plan(f"user-{i}", [event()]) for i in range(7)]
    async with make_client(httpx.MockTransport(handle), delivery_concurrency=3) as client:
        outcomes = await deliver_batch(client, events)
    assert len(outcomes) == 7
    assert peak == 3


async def test_batch_merges_subscriptions_of_one_list(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    router.post("/api/profiles").respond(201, json={"data": {"id": "P"}})
    jobs = router.post("/api/profile-subscription-bulk-create-jobs").respond(202)
    events = [
        plan(f"u{i}", [planned.create_profile(PROFILE_BODY), subscription("L1", f"{i}@b.co")])
        for i in range(3)
    ]
    outcomes = await deliver_batch(client, events)
    assert job_sizes(jobs) == [("L1", 3)]
    for outcome in outcomes:
        assert outcome.status == "delivered"
        assert outcome.requests == [
            SentRequest("POST", "/api/profiles", 201),
            SentRequest("POST", "/api/profile-subscription-bulk-create-jobs", 202),
        ]


async def test_batch_splits_jobs_at_100_profiles(
    make_client: Factory, router: respx.MockRouter
) -> None:
    jobs = router.post("/api/profile-subscription-bulk-create-jobs").respond(202)
    events = [plan(f"u{i}", [subscription("L1", f"{i}@b.co")]) for i in range(150)]
    async with make_client(httpx.MockTransport(router.async_handler)) as client:
        outcomes = await deliver_batch(client, events)
    assert sorted(job_sizes(jobs)) == [("L1", 50), ("L1", 100)]
    assert [o.status for o in outcomes] == ["delivered"] * 150


async def test_batch_makes_one_job_per_list(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    jobs = router.post("/api/profile-subscription-bulk-create-jobs").respond(202)
    events = [
        plan("u1", [subscription("L1", "1@b.co")]),
        plan("u2", [subscription("L2", "2@b.co")]),
        plan("u3", [subscription("L1", "3@b.co")]),
    ]
    await deliver_batch(client, events)
    assert sorted(job_sizes(jobs)) == [("L1", 2), ("L2", 1)]


async def test_a_subscription_without_email_or_phone_is_not_merged(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    # Klaviyo rejects a whole job for one entry naming nobody; it must not sink the others.
    def answer(request: httpx.Request) -> httpx.Response:
        subs = orjson.loads(request.content)["data"]["attributes"]["subscriptions"]
        if any("email" not in sub for sub in subs):
            return httpx.Response(400, json=error_body(400, "invalid", "needs an email"))
        return httpx.Response(202)

    jobs = router.post("/api/profile-subscription-bulk-create-jobs").mock(side_effect=answer)
    nobody = planned.subscribe({"list_id": "L1", "subscriptions": [{"channels": {}}]})
    events = [
        plan("u1", [subscription("L1", "1@b.co")]),
        plan("u2", [nobody]),
        plan("u3", [subscription("L1", "3@b.co")]),
    ]
    outcomes = await deliver_batch(client, events)
    assert [o.status for o in outcomes] == ["delivered", "rejected", "delivered"]
    assert sorted(job_sizes(jobs)) == [("L1", 1), ("L1", 2)]


@pytest.mark.parametrize(("status", "expected"), [(400, "rejected"), (503, "failed")])
async def test_failed_merged_job_fails_each_of_its_events(
    client: KlaviyoClient, router: respx.MockRouter, status: int, expected: str
) -> None:
    router.post("/api/profile-subscription-bulk-create-jobs").respond(
        status, json=error_body(status, "invalid", "bad list")
    )
    events = [plan(f"u{i}", [subscription("L1", f"{i}@b.co")]) for i in range(3)]
    outcomes = await deliver_batch(client, events)
    assert [o.status for o in outcomes] == [expected] * 3
    assert all(o.error is not None and o.error["klaviyo_status"] == status for o in outcomes)


async def test_batch_precomputed_error_is_rejected_without_sending(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    router.post("/api/events").respond(202)
    events = [
        plan("A", error=InvalidEvent("bad event", field="type")),
        plan("A", [event()]),
    ]
    outcomes = await deliver_batch(client, events)
    assert outcomes[0].status == "rejected"
    assert outcomes[0].error is not None
    assert outcomes[0].error["field"] == "type"
    assert outcomes[1].status == "delivered"
    assert router.calls.call_count == 1


async def test_batch_holds_a_users_later_events_after_a_retryable_failure(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    route = router.post("/api/events").respond(503)
    outcomes = await deliver_batch(client, [plan("A", [event("1")]), plan("A", [event()])])
    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert outcomes[1].requests == []
    assert outcomes[1].error is not None
    assert outcomes[1].error["message"].startswith("not sent: an earlier event")
    assert route.call_count == 4  # only the first event's attempts


async def test_an_unexpected_error_fails_its_events_retryably(make_client: Factory) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if b"boom" in request.content:
            raise ValueError("a bug below the client")
        return httpx.Response(202)

    async with make_client(httpx.MockTransport(handle)) as c:
        outcomes = await deliver_batch(
            c, [plan("A", [event("boom")]), plan("B", [event("fine")]), plan("A", [event()])]
        )
    assert [o.status for o in outcomes] == ["failed", "delivered", "failed"]
    assert outcomes[0].error is not None
    assert outcomes[0].error["message"] == "unexpected error while delivering (ValueError)"
