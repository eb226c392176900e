"""KlaviyoClient against respx / MockTransport: retries, waits, 409 two-step, batches, secrecy."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import httpx
import orjson
import pytest
import respx
import stamina
from pydantic import SecretStr

from klaviyo_destination import planned
from klaviyo_destination.emulator import EmulatorStore, create_emulator
from klaviyo_destination.emulator import validation as emulator_validation
from klaviyo_destination.errors import InvalidEvent, KlaviyoRejected, KlaviyoUnavailable
from klaviyo_destination.klaviyo import (
    KlaviyoClient,
    KlaviyoSession,
    Outcome,
    SentRequest,
    klaviyo_headers,
    refusals,
)
from klaviyo_destination.klaviyo.metrics import DeliveryMetrics
from klaviyo_destination.klaviyo.ratelimit import RateLimiter
from klaviyo_destination.planned import PlannedEvent, PlannedRequest
from klaviyo_destination.protocol import klaviyo_lookup
from klaviyo_destination.settings import Settings

from .fakes import FakeClock

pytestmark = pytest.mark.anyio

KEY = "pk_live_SECRET_0123456789abcdef"
BASE = "https://klaviyo.test"
PROFILE_BODY = {"data": {"type": "profile", "attributes": {"email": "a@b.co"}}}
BOTH_IDS_BODY = {
    "data": {"type": "profile", "attributes": {"email": "a@b.co", "phone_number": "+15005550006"}}
}


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    # Backoffs become 0; attempts stay the client's own (cap=True never raises them).
    stamina.set_testing(True, attempts=100, cap=True)
    yield
    stamina.set_testing(False)


@pytest.fixture
def settings() -> Settings:
    return Settings(
        klaviyo_private_api_key=SecretStr(KEY),
        klaviyo_base_url=BASE,
        max_attempts=4,
        delivery_deadline=5.0,
        backoff_initial=0.01,
        backoff_max=0.02,
        delivery_concurrency=4,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def router() -> respx.MockRouter:
    return respx.MockRouter(base_url=BASE, assert_all_called=False)


Factory = Callable[..., KlaviyoClient]


@pytest.fixture
def make_client(settings: Settings, clock: FakeClock) -> Factory:
    def make(transport: httpx.AsyncBaseTransport, **overrides: Any) -> KlaviyoClient:
        s = settings.model_copy(update=overrides)
        limits = RateLimiter.from_settings(s, clock=clock, sleep=clock.sleep)
        return KlaviyoClient(s, transport=transport, rate_limiter=limits)

    return make


@pytest.fixture
async def client(make_client: Factory, router: respx.MockRouter) -> AsyncIterator[KlaviyoClient]:
    async with make_client(httpx.MockTransport(router.async_handler)) as opened:
        yield opened


def error_body(status: int, code: str, detail: str, pointer: str = "/data/") -> dict[str, Any]:
    return {
        "errors": [
            {
                "id": f"err-{status}",
                "status": status,
                "code": code,
                "title": "t",
                "detail": detail,
                "source": {"pointer": pointer},
                "meta": {},
            }
        ]
    }


def conflict(profile_id: str | None) -> httpx.Response:
    body = error_body(409, "duplicate_profile", "A profile already exists", "/data/attributes")
    if profile_id is not None:
        body["errors"][0]["meta"] = {"duplicate_profile_id": profile_id}
    return httpx.Response(409, json=body)


def event(name: str = "Order") -> planned.PlannedRequest:
    attributes = {"profile": {"$email": "a@b.co"}, "metric": {"name": name}, "properties": {}}
    return planned.create_event(attributes)


def subscription(list_id: str, *emails: str) -> planned.PlannedRequest:
    subs = [{"email": email, "channels": {"email": ["MARKETING"]}} for email in emails]
    return planned.subscribe({"list_id": list_id, "subscriptions": subs})


def plan(
    user: str, requests: list[PlannedRequest] | None = None, *, error: InvalidEvent | None = None
) -> PlannedEvent:
    return PlannedEvent(None, "track", user, requests or [], error)


async def deliver_batch(client: KlaviyoClient, events: list[PlannedEvent]) -> list[Outcome]:
    return await KlaviyoSession(client, SecretStr(KEY)).deliver_batch(events)


async def deliver(client: KlaviyoClient, requests: list[PlannedRequest]) -> Outcome:
    """One event's requests through the real batch path."""
    [outcome] = await deliver_batch(client, [plan("u1", requests)])
    return outcome


async def send(client: KlaviyoClient, request: PlannedRequest, *, key: str = KEY) -> None:
    """One request to its final answer; raises what the session raises."""
    deadline = time.monotonic() + 5.0
    await KlaviyoSession(client, SecretStr(key)).run_one(request, deadline, [])


# --- identify two-step ------------------------------------------------------------------------


async def test_201_completes_the_profile_without_patch(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    create = router.post("/api/profiles").respond(201, json={"data": {"id": "P1"}})
    outcome = await deliver(client, [planned.create_profile(PROFILE_BODY)])
    assert outcome == Outcome("delivered", [SentRequest("POST", "/api/profiles", 201)])
    assert create.call_count == 1
    assert router.calls.call_count == 1


async def test_any_2xx_with_an_id_is_a_created_profile(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    router.post("/api/profiles").respond(200, json={"data": {"id": "P1"}})
    outcome = await deliver(client, [planned.create_profile(PROFILE_BODY)])
    assert outcome.status == "delivered"
    assert router.calls.call_count == 1


async def test_409_patches_the_duplicate_profile(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    router.post("/api/profiles").mock(return_value=conflict("P9"))
    patch = router.patch("/api/profiles/P9").respond(200, json={"data": {"id": "P9"}})
    outcome = await deliver(client, [planned.create_profile(PROFILE_BODY)])
    assert outcome.status == "delivered"
    assert outcome.requests == [
        SentRequest("POST", "/api/profiles", 409),
        SentRequest("PATCH", "/api/profiles/P9", 200),
    ]
    sent = patch.calls.last.request
    assert httpx.Response(200, content=sent.content).json() == {
        "data": {"type": "profile", "attributes": {"email": "a@b.co"}, "id": "P9"}
    }


async def test_409_without_duplicate_id_is_rejected(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    router.post("/api/profiles").mock(return_value=conflict(None))
    outcome = await deliver(client, [planned.create_profile(PROFILE_BODY)])
    assert outcome.status == "rejected"
    assert outcome.error is not None
    assert outcome.error["code"] == "klaviyo_profile_conflict"
    assert "duplicate_profile_id" in outcome.error["message"]
    assert router.calls.call_count == 1


async def test_409_on_the_patch_names_the_identifiers_to_fix(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    router.post("/api/profiles").mock(return_value=conflict("P9"))
    router.patch("/api/profiles/P9").mock(return_value=conflict(None))
    outcome = await deliver(client, [planned.create_profile(BOTH_IDS_BODY)])
    assert outcome.status == "rejected"
    assert outcome.error is not None
    assert outcome.error["message"].startswith(
        "email and phone_number belong to two different Klaviyo profiles;"
    )
    assert outcome.error["klaviyo_status"] == 409
    assert [r.status_code for r in outcome.requests] == [409, 409]


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


# --- retries and waits ------------------------------------------------------------------------


def retry_waits(caplog: pytest.LogCaptureFixture) -> list[float]:
    return [r.retry_wait for r in caplog.records if hasattr(r, "retry_wait")]


async def test_429_retry_after_is_honoured(
    client: KlaviyoClient,
    router: respx.MockRouter,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="klaviyo_destination")
    router.post("/api/events").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(202)]
    )
    outcome = await deliver(client, [event()])
    assert outcome.status == "delivered"
    assert retry_waits(caplog) == [2.0]
    assert clock.sleeps == [pytest.approx(2.0)]  # the endpoint was held for that long, too


async def test_429_without_retry_after_uses_expected_available_hint(
    client: KlaviyoClient,
    router: respx.MockRouter,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="klaviyo_destination")
    throttled = error_body(
        429, "throttled", "Request was throttled. Expected available in 3 seconds."
    )
    router.post("/api/events").mock(
        side_effect=[httpx.Response(429, json=throttled), httpx.Response(202)]
    )
    outcome = await deliver(client, [event()])
    assert outcome.status == "delivered"
    assert retry_waits(caplog) == [3.0]
    assert clock.sleeps == [pytest.approx(3.0)]


async def test_retry_after_beyond_the_deadline_fails_at_once(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    route = router.post("/api/events").respond(429, headers={"Retry-After": "30"})
    outcome = await deliver(client, [event()])
    assert outcome.status == "failed"
    assert outcome.retry_after == 30.0
    assert outcome.throttled is True
    assert outcome.error is not None
    assert outcome.error["klaviyo_status"] == 429
    assert route.call_count == 1


async def test_deadline_reached_while_throttled_stays_a_throttle(
    make_client: Factory, router: respx.MockRouter
) -> None:
    # A 429, then an answer slower than the time left: callers retry 429 far longer than 5xx,
    # so running out of time during a throttle must still report one.
    calls = 0

    async def answer(_: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(429, headers={"Retry-After": "0"})
        await asyncio.sleep(5)
        return httpx.Response(202)

    router.post("/api/events").mock(side_effect=answer)
    async with make_client(httpx.MockTransport(router.async_handler), delivery_deadline=0.2) as c:
        outcome = await deliver(c, [event()])
    assert outcome.status == "failed"
    assert outcome.throttled is True
    assert outcome.error is not None
    assert outcome.error["klaviyo_status"] == 429
    assert calls == 2


async def test_deadline_reached_while_another_request_was_throttled_is_a_throttle(
    make_client: Factory, router: respx.MockRouter
) -> None:
    # B's answer is still outstanding when the batch's time runs out, but A has just been told
    # to wait: the batch ran out of time because of the throttle, so B is throttled too.
    async def answer(request: httpx.Request) -> httpx.Response:
        if orjson.loads(request.content)["data"]["attributes"]["metric"]["name"] == "A":
            return httpx.Response(429, headers={"Retry-After": "1"})
        await asyncio.sleep(5)
        return httpx.Response(202)

    router.post("/api/events").mock(side_effect=answer)
    async with make_client(httpx.MockTransport(router.async_handler), delivery_deadline=0.2) as c:
        outcomes = await deliver_batch(c, [plan("A", [event("A")]), plan("B", [event("B")])])
    assert [(o.status, o.throttled) for o in outcomes] == [("failed", True), ("failed", True)]
    assert outcomes[1].requests == [SentRequest("POST", "/api/events", None)]
    assert outcomes[1].retry_after is not None


async def test_send_raises_unavailable_with_retry_after(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    router.post("/api/events").respond(429, headers={"Retry-After": "30"})
    with pytest.raises(KlaviyoUnavailable) as caught:
        await send(client, event())
    assert (caught.value.retry_after, caught.value.throttled) == (30.0, True)


async def test_5xx_then_success(client: KlaviyoClient, router: respx.MockRouter) -> None:
    route = router.post("/api/events").mock(
        side_effect=[httpx.Response(503), httpx.Response(500), httpx.Response(202)]
    )
    outcome = await deliver(client, [event()])
    assert outcome == Outcome("delivered", [SentRequest("POST", "/api/events", 202)])
    assert route.call_count == 3


async def test_5xx_until_attempts_run_out(client: KlaviyoClient, router: respx.MockRouter) -> None:
    route = router.post("/api/events").respond(503)
    outcome = await deliver(client, [event()])
    assert outcome.status == "failed"
    assert outcome.requests == [SentRequest("POST", "/api/events", 503)]
    assert outcome.error is not None
    assert outcome.error["klaviyo_status"] == 503
    assert route.call_count == 4  # settings.max_attempts


async def test_408_is_retried(client: KlaviyoClient, router: respx.MockRouter) -> None:
    route = router.post("/api/events").mock(side_effect=[httpx.Response(408), httpx.Response(202)])
    assert (await deliver(client, [event()])).status == "delivered"
    assert route.call_count == 2


async def test_read_timeout_is_retried(client: KlaviyoClient, router: respx.MockRouter) -> None:
    route = router.post("/api/events").mock(
        side_effect=[httpx.ReadTimeout("timed out"), httpx.Response(202)]
    )
    assert (await deliver(client, [event()])).status == "delivered"
    assert route.call_count == 2


async def test_timeouts_until_attempts_run_out(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    route = router.post("/api/events").mock(side_effect=httpx.ReadTimeout("timed out"))
    outcome = await deliver(client, [event()])
    assert outcome.status == "failed"
    assert outcome.requests == [SentRequest("POST", "/api/events", None)]
    assert outcome.error is not None
    assert "ECONNABORTED" in outcome.error["message"]
    assert route.call_count == 4


async def test_connection_errors_are_retried(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    route = router.post("/api/events").mock(
        side_effect=httpx.ConnectError("[Errno 111] Connection refused")
    )
    outcome = await deliver(client, [event()])
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert "[ECONNREFUSED] :: Connection refused" in outcome.error["message"]
    assert route.call_count == 4


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "invalid", "klaviyo_rejected"),
        (401, "not_authenticated", "klaviyo_auth_rejected"),
        (403, "permission_denied", "klaviyo_auth_rejected"),
        (404, "not_found", "klaviyo_rejected"),
    ],
)
async def test_json_4xx_is_not_retried(
    client: KlaviyoClient, router: respx.MockRouter, status: int, code: str, expected: str
) -> None:
    route = router.post("/api/events").respond(status, json=error_body(status, code, "nope"))
    outcome = await deliver(client, [event()])
    assert outcome.status == "rejected"
    assert outcome.error is not None
    assert outcome.error["code"] == expected
    assert "nope" in outcome.error["message"]
    assert route.call_count == 1


async def test_html_403_is_transient(client: KlaviyoClient, router: respx.MockRouter) -> None:
    page = httpx.Response(
        403, html="<html>Just a moment...</html>", headers={"cf-mitigated": "challenge"}
    )
    route = router.post("/api/events").mock(side_effect=[page, httpx.Response(202)])
    assert (await deliver(client, [event()])).status == "delivered"
    assert route.call_count == 2


async def test_410_means_the_revision_is_retired(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    router.post("/api/events").respond(410, json=error_body(410, "gone", "Gone"))
    outcome = await deliver(client, [event()])
    assert outcome.status == "rejected"
    assert outcome.error is not None
    assert outcome.error["code"] == "klaviyo_revision_retired"
    assert "2023-02-22 is retired" in outcome.error["message"]
    assert "emulator" in outcome.error["message"]


async def test_rejection_carries_klaviyos_errors(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    pointer = "/data/attributes/phone_number"
    body = error_body(400, "invalid", "Invalid phone number format", pointer)
    router.post("/api/profiles").respond(400, json=body)
    outcome = await deliver(client, [planned.create_profile(PROFILE_BODY)])
    assert outcome.error == {
        "code": "klaviyo_rejected",
        "message": "Klaviyo rejected the request (400 invalid): Invalid phone number format",
        "field": pointer,
        "klaviyo_status": 400,
        "klaviyo_errors": [
            {
                "id": "err-400",
                "code": "invalid",
                "detail": "Invalid phone number format",
                "source": {"pointer": pointer},
            }
        ],
    }


async def test_send_raises_rejected(client: KlaviyoClient, router: respx.MockRouter) -> None:
    router.post("/api/events").respond(400, json=error_body(400, "invalid", "bad"))
    with pytest.raises(KlaviyoRejected, match="bad"):
        await send(client, event())


# --- headers and metrics ----------------------------------------------------------------------


def test_headers_function() -> None:
    assert klaviyo_headers(SecretStr("k1")) == {
        "Authorization": "Klaviyo-API-Key k1",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "revision": "2023-02-22",
    }


async def test_every_request_carries_auth_and_revision(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    route = router.post("/api/events").respond(202)
    await send(client, event())
    await send(client, event(), key="other-key")
    first, second = (call.request.headers for call in route.calls)
    assert first["authorization"] == f"Klaviyo-API-Key {KEY}"
    assert second["authorization"] == "Klaviyo-API-Key other-key"
    for sent in (first, second):
        assert sent["revision"] == "2023-02-22"
        assert sent["accept"] == "application/json"
        assert sent["content-type"] == "application/json"


async def test_metrics_count_requests_retries_and_429(
    make_client: Factory, router: respx.MockRouter
) -> None:
    router.post("/api/events").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(202)]
    )
    metrics = DeliveryMetrics()
    client = make_client(httpx.MockTransport(router.async_handler))
    client.metrics = metrics
    async with client:
        await deliver(client, [event()])
    sample = metrics.registry.get_sample_value
    labels = {"endpoint": "/api/events"}
    assert sample("klaviyo_requests_total", {**labels, "status": "429"}) == 1
    assert sample("klaviyo_requests_total", {**labels, "status": "202"}) == 1
    assert sample("klaviyo_retries_total", {**labels, "reason": "429"}) == 1
    assert sample("klaviyo_throttled_total", labels) == 1
    assert sample("klaviyo_requests_in_flight", labels) == 0
    assert sample("klaviyo_request_duration_seconds_count", labels) == 2


# --- the inline create call of the rudder-server protocol ------------------------------------


async def test_create_profile_once_returns_status_and_body(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    router.post("/api/profiles").respond(201, json={"data": {"id": "P1"}})
    assert await klaviyo_lookup(client)(PROFILE_BODY, SecretStr(KEY)) == (
        201,
        {"data": {"id": "P1"}},
    )


async def test_create_profile_once_does_not_retry(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    route = router.post("/api/profiles").respond(503)
    assert await klaviyo_lookup(client)(PROFILE_BODY, SecretStr(KEY)) == (503, "")
    assert route.call_count == 1


REFUSED = (500, "[ECONNREFUSED] :: Connection refused")
NOT_FOUND = (400, "[ENOTFOUND] :: DNS lookup failed")
AGAIN = (500, "[EAI_AGAIN] :: Temporary failure in name resolution")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), REFUSED),
        (httpx.ConnectError("[Errno -2] Name or service not known"), NOT_FOUND),
        (httpx.ConnectError("[Errno -3] Temporary failure in name resolution"), AGAIN),
        (httpx.ConnectTimeout("timed out"), (500, "[ETIMEDOUT] :: Operation timed out")),
        (httpx.ReadTimeout("timed out"), (500, "[ECONNABORTED] :: Connection aborted")),
        (httpx.ReadError("reset"), (500, "[ECONNRESET] :: Connection reset by peer")),
    ],
)
async def test_create_profile_once_maps_socket_errors(
    client: KlaviyoClient,
    router: respx.MockRouter,
    error: Exception,
    expected: tuple[int, str],
) -> None:
    router.post("/api/profiles").mock(side_effect=error)
    assert await klaviyo_lookup(client)(PROFILE_BODY, SecretStr(KEY)) == expected


# --- batches ----------------------------------------------------------------------------------

Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


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


def job_sizes(route: respx.Route) -> list[tuple[str, int]]:
    sizes = []
    for call in route.calls:
        attributes = httpx.Response(200, content=call.request.content).json()["data"]["attributes"]
        sizes.append((attributes["list_id"], len(attributes["subscriptions"])))
    return sizes


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


# --- the key stays secret ---------------------------------------------------------------------


async def test_api_key_never_in_logs_errors_or_outcomes(
    client: KlaviyoClient, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "stamina", "klaviyo_destination"):
        caplog.set_level(logging.DEBUG, logger=name)
    router.post("/api/profiles").mock(return_value=conflict("P9"))
    router.patch("/api/profiles/P9").mock(side_effect=[httpx.Response(503), conflict(None)])
    echo = error_body(400, "invalid", f"bad key {KEY}")
    router.post("/api/events").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "0"}),
            httpx.Response(400, json=echo),
        ]
    )
    router.post("/api/profile-subscription-bulk-create-jobs").mock(
        side_effect=httpx.ConnectError("refused")
    )
    outcomes = [
        await deliver(client, [planned.create_profile(BOTH_IDS_BODY)]),
        await deliver(client, [event()]),
        await deliver(client, [subscription("L1", "a@b.co")]),
    ]
    caught: list[KlaviyoRejected | KlaviyoUnavailable] = []
    for request in (event(), subscription("L1", "x")):
        router.post("/api/events").respond(401, json=error_body(401, "not_authenticated", KEY))
        try:
            await send(client, request)
        except (KlaviyoRejected, KlaviyoUnavailable) as exc:
            caught.append(exc)
    assert len(caught) == 2
    assert caplog.records, "the client logged nothing: the check would prove nothing"
    texts = [caplog.text, repr(outcomes), *(f"{e!s} {e!r} {e.to_dict()}" for e in caught)]
    texts += [repr(vars(record)) for record in caplog.records]
    for text in texts:
        assert KEY not in text


# --- one subscription Klaviyo refuses never sinks the others (issue 15, item 1) ---------------


def entry_job(list_id: str, **entry: Any) -> PlannedRequest:
    """A subscription job of one entry, as the mapping plans it for one event."""
    return planned.subscribe(
        {"list_id": list_id, "subscriptions": [{**entry, "channels": {"email": ["MARKETING"]}}]}
    )


@pytest.fixture
def emulator_store() -> EmulatorStore:
    return EmulatorStore(rate_limits=None)


@pytest.fixture
async def emulated(
    make_client: Factory, emulator_store: EmulatorStore
) -> AsyncIterator[KlaviyoClient]:
    """The client against the bundled emulator, whose validation is the reference here."""
    transport = httpx.ASGITransport(app=create_emulator(emulator_store))
    async with make_client(transport) as opened:
        yield opened


def list_emails(store: EmulatorStore, list_id: str) -> list[str]:
    return sorted(store.profiles[pid].fields["email"] for pid in store.lists.get(list_id, {}))


async def test_one_bad_email_is_rejected_alone_and_the_others_are_subscribed(
    emulated: KlaviyoClient, emulator_store: EmulatorStore
) -> None:
    emails = [f"user{i}@example.com" for i in range(10)]
    emails[4] = "not-an-email"
    events = [plan(f"u{i}", [entry_job("L1", email=email)]) for i, email in enumerate(emails)]
    outcomes = await deliver_batch(emulated, events)
    assert [o.status for o in outcomes] == ["delivered"] * 4 + ["rejected"] + ["delivered"] * 5
    error = outcomes[4].error
    assert error is not None
    assert (error["code"], error["field"]) == (
        "invalid_event",
        "/data/attributes/subscriptions/0/email",
    )
    assert "Invalid email address" in error["message"]
    assert outcomes[4].requests == []  # never sent
    assert list_emails(emulator_store, "L1") == sorted(e for e in emails if "@" in e)
    assert [r.status for r in emulator_store.requests] == [202]  # the nine in one job


@pytest.mark.parametrize("phone", ["+12 345 678 900", "+1 (415) 555-0100", "+1.415.555.0101"])
async def test_a_phone_number_klaviyo_accepts_stays_in_the_merged_job(
    emulated: KlaviyoClient, emulator_store: EmulatorStore, phone: str
) -> None:
    events = [
        plan("u1", [entry_job("L1", email="a@example.com", phone_number=phone)]),
        plan("u2", [entry_job("L1", email="b@example.com")]),
    ]
    outcomes = await deliver_batch(emulated, events)
    assert [o.status for o in outcomes] == ["delivered", "delivered"]
    assert [r.status for r in emulator_store.requests] == [202]
    assert list_emails(emulator_store, "L1") == ["a@example.com", "b@example.com"]


@pytest.mark.parametrize("phone", ["0123", "14155550100", "+1 415 555 0100 ext 7", "+12"])
async def test_a_phone_number_that_is_not_e164_is_rejected_alone(
    emulated: KlaviyoClient, emulator_store: EmulatorStore, phone: str
) -> None:
    events = [
        plan("u1", [entry_job("L1", email="a@example.com")]),
        plan("u2", [entry_job("L1", email="b@example.com", phone_number=phone)]),
        plan("u3", [entry_job("L1", email="c@example.com")]),
    ]
    outcomes = await deliver_batch(emulated, events)
    assert [o.status for o in outcomes] == ["delivered", "rejected", "delivered"]
    error = outcomes[1].error
    assert error is not None
    assert error["field"] == "/data/attributes/subscriptions/0/phone_number"
    assert "Invalid phone number format" in error["message"]
    assert list_emails(emulator_store, "L1") == ["a@example.com", "c@example.com"]


async def test_a_refused_entry_klaviyo_points_at_is_rejected_and_the_rest_resent(
    emulated: KlaviyoClient, emulator_store: EmulatorStore
) -> None:
    # Not a string: nothing checks that before sending, so the emulator's 400 names the entry.
    emails: list[Any] = ["a@example.com", "b@example.com", 12345, "d@example.com"]
    events = [plan(f"u{i}", [entry_job("L1", email=email)]) for i, email in enumerate(emails)]
    outcomes = await deliver_batch(emulated, events)
    assert [o.status for o in outcomes] == ["delivered", "delivered", "rejected", "delivered"]
    error = outcomes[2].error
    assert error is not None
    assert (error["code"], error["klaviyo_status"]) == ("klaviyo_rejected", 400)
    # The pointer names the entry in the event's own request, as /v1/transform shows it.
    assert error["field"] == "/data/attributes/subscriptions/0/email"
    assert [e["source"]["pointer"] for e in error["klaviyo_errors"]] == [error["field"]]
    assert [r.status for r in emulator_store.requests] == [400, 202]
    jobs = SentRequest("POST", "/api/profile-subscription-bulk-create-jobs", 400)
    assert outcomes[0].requests == [jobs, SentRequest(jobs.method, jobs.path, 202)]
    assert outcomes[2].requests == [jobs]
    assert list_emails(emulator_store, "L1") == ["a@example.com", "b@example.com", "d@example.com"]


def refusing(refused: str, pointer: str | None) -> Handler:
    """Klaviyo refusing any job that holds ``refused``: the 400 points at ``pointer``, or at
    the refused entry itself (``/data/attributes/subscriptions/<i>/email``) when it is None."""

    async def handle(request: httpx.Request) -> httpx.Response:
        subs = orjson.loads(request.content)["data"]["attributes"]["subscriptions"]
        emails = [sub.get("email") for sub in subs]
        if refused not in emails:
            return httpx.Response(202)
        where = pointer or f"/data/attributes/subscriptions/{emails.index(refused)}/email"
        return httpx.Response(400, json=error_body(400, "invalid", "Refused", where))

    return handle


async def test_a_400_pointing_at_one_entry_resends_the_others_without_it(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    jobs = router.post("/api/profile-subscription-bulk-create-jobs").mock(
        side_effect=refusing("2@b.co", None)
    )
    events = [plan(f"u{i}", [subscription("L1", f"{i}@b.co")]) for i in range(4)]
    outcomes = await deliver_batch(client, events)
    assert [o.status for o in outcomes] == ["delivered", "delivered", "rejected", "delivered"]
    assert job_sizes(jobs) == [("L1", 4), ("L1", 3)]
    error = outcomes[2].error
    assert error is not None
    assert error["field"] == "/data/attributes/subscriptions/0/email"
    assert error["message"] == "Klaviyo rejected the request (400 invalid): Refused"


@pytest.mark.parametrize("pointer", ["/data", "/data/", "/data/attributes/subscriptions/99/email"])
async def test_a_400_without_a_usable_pointer_splits_the_job_in_halves(
    client: KlaviyoClient, router: respx.MockRouter, pointer: str
) -> None:
    jobs = router.post("/api/profile-subscription-bulk-create-jobs").mock(
        side_effect=refusing("3@b.co", pointer)
    )
    events = [plan(f"u{i}", [subscription("L1", f"{i}@b.co")]) for i in range(5)]
    outcomes = await deliver_batch(client, events)
    assert [o.status for o in outcomes] == ["delivered"] * 3 + ["rejected", "delivered"]
    # 5 fails; halves 2 (sent) and 3 (fails); 1 (sent) and 2 (fails); 1 (refused), 1 (sent).
    assert [size for _, size in job_sizes(jobs)] == [5, 2, 3, 1, 2, 1, 1]
    assert outcomes[3].error is not None
    assert outcomes[3].error["klaviyo_status"] == 400


async def test_splitting_is_bounded_when_klaviyo_refuses_every_job(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    jobs = router.post("/api/profile-subscription-bulk-create-jobs").respond(
        400, json=error_body(400, "invalid", "The payload provided in the request is invalid.")
    )
    events = [plan(f"u{i}", [subscription("L1", f"{i}@b.co")]) for i in range(8)]
    outcomes = await deliver_batch(client, events)
    assert [o.status for o in outcomes] == ["rejected"] * 8
    assert jobs.call_count == 2 * 8 - 1  # every member ends alone, at most once each


@pytest.mark.parametrize(
    ("status", "pointer"),
    [(400, "/data/attributes/list_id"), (401, "/data/"), (410, "/data/")],
)
async def test_a_refusal_of_the_job_itself_rejects_every_event_at_once(
    client: KlaviyoClient, router: respx.MockRouter, status: int, pointer: str
) -> None:
    jobs = router.post("/api/profile-subscription-bulk-create-jobs").respond(
        status, json=error_body(status, "invalid", "no", pointer)
    )
    events = [plan(f"u{i}", [subscription("L1", f"{i}@b.co")]) for i in range(3)]
    outcomes = await deliver_batch(client, events)
    assert [o.status for o in outcomes] == ["rejected"] * 3
    assert jobs.call_count == 1


SAMPLE_EMAILS = [
    "a@b.co", "first.last+tag@sub.example.com", "a@b", "a@.co", "a@b..co", "@b.co", "a b@c.co",
    "a@b.c@d.co", "not-an-email", "", " a@b.co", "ü@exämple.de", "a@b.co.", "a@-b.co",
]  # fmt: skip
SAMPLE_PHONES = [
    "+12345678900", "+12 345 678 900", "+1 (415) 555-0100", "+1.415.555.0101", "+1234567",
    "+1234567890123456", "14155550100", "+1 415 555 0100 ext 7", "+", "", "+1_415_555_0100",
    "+\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669", "+1\t415\n555 0100",
]  # fmt: skip


@pytest.mark.parametrize("email", SAMPLE_EMAILS)
def test_the_email_check_is_the_emulators(email: str) -> None:
    """No stricter than Klaviyo: refused before sending exactly when the emulator refuses."""
    assert refusals.is_email(email) == emulator_validation.is_email(email)


@pytest.mark.parametrize("phone", SAMPLE_PHONES)
def test_the_phone_check_is_the_emulators(phone: str) -> None:
    assert refusals.is_phone(phone) == (emulator_validation.normalize_phone(phone) is not None)


# --- odd answers are retryable failures, never a crash (issue 15, item 5) ---------------------


def corrupt_gzip(status: int) -> httpx.Response:
    """An answer whose body says gzip and is not (a stream, so that only the client reads it)."""
    stream = httpx.ByteStream(b"not gzip")
    return httpx.Response(status, headers={"Content-Encoding": "gzip"}, stream=stream)


async def test_a_redirect_is_not_followed_and_fails_retryably(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    elsewhere = "https://elsewhere.example/api/events"
    route = router.post("/api/events").respond(302, headers={"Location": elsewhere})
    outcome = await deliver(client, [event()])
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert (outcome.error["code"], outcome.error["klaviyo_status"]) == ("klaviyo_unavailable", 302)
    assert f"redirect to {elsewhere} not followed" in outcome.error["message"]
    assert route.call_count == 1  # the same request would meet the same redirect
    assert {call.request.url.host for call in router.calls} == {"klaviyo.test"}


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (lambda: httpx.Response(301, headers={"Location": "https://elsewhere.example/"}), "301"),
        (lambda: corrupt_gzip(201), "DecodingError"),
        (lambda: httpx.Response(201, content=b" " * 5 * 2**20), "MAX_ANSWER_BYTES"),
    ],
    ids=["redirect", "corrupt-gzip", "over-the-cap"],
)
async def test_the_protocols_create_call_reports_an_odd_answer_as_retryable(
    client: KlaviyoClient,
    router: respx.MockRouter,
    answer: Callable[[], httpx.Response],
    why: str,
) -> None:
    router.post("/api/profiles").mock(side_effect=lambda _: answer())
    status, reason = await klaviyo_lookup(client)(PROFILE_BODY, SecretStr(KEY))
    assert status == 500  # rudder-server retries 5xx; it drops a 3xx and a 400
    assert reason.startswith("[ERR_BAD_RESPONSE] :: Klaviyo's answer could not be read (")
    assert why in reason


@pytest.mark.parametrize("status", [200, 201, 202, 400, 503])
async def test_a_corrupt_gzip_answer_is_retried_and_then_fails_retryably(
    client: KlaviyoClient, router: respx.MockRouter, status: int
) -> None:
    route = router.post("/api/events").mock(side_effect=lambda _: corrupt_gzip(status))
    outcome = await deliver(client, [event()])
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error["code"] == "klaviyo_unavailable"
    assert "answer could not be read" in outcome.error["message"]
    assert route.call_count == 4  # retried like a dropped connection: Klaviyo may have it


async def test_a_corrupt_answer_then_a_good_one_is_delivered(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    router.post("/api/events").mock(side_effect=[corrupt_gzip(202), httpx.Response(202)])
    assert (await deliver(client, [event()])).status == "delivered"


async def test_an_answer_over_the_cap_is_not_read_past_it(make_client: Factory) -> None:
    chunks = 0

    async def huge() -> AsyncIterator[bytes]:
        nonlocal chunks
        for _ in range(500):  # 32 MB, streamed without a Content-Length
            chunks += 1
            yield b" " * 65536

    async def handle(_: httpx.Request) -> httpx.Response:
        return httpx.Response(202, content=huge())

    async with make_client(
        httpx.MockTransport(handle), max_answer_bytes=100_000, max_attempts=1
    ) as c:
        outcome = await deliver(c, [event()])
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert "over MAX_ANSWER_BYTES (100000 bytes)" in outcome.error["message"]
    assert chunks <= 3


async def test_a_declared_length_over_the_cap_is_not_read_at_all(
    make_client: Factory, router: respx.MockRouter
) -> None:
    router.post("/api/events").respond(202, content=b" " * 200_000)
    async with make_client(
        httpx.MockTransport(router.async_handler), max_answer_bytes=100_000, max_attempts=1
    ) as c:
        outcome = await deliver(c, [event()])
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert "over MAX_ANSWER_BYTES" in outcome.error["message"]


async def test_an_answer_in_an_undecodable_charset_is_still_read(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    page = httpx.Response(
        400, headers={"Content-Type": "text/plain; charset=utf-32"}, content=b"\xff\xfe bad"
    )
    router.post("/api/events").mock(return_value=page)
    outcome = await deliver(client, [event()])
    assert outcome.status == "rejected"
    assert outcome.error is not None
    assert "bad" in outcome.error["message"]


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


# --- a long Retry-After holds an endpoint no longer than the cap (issue 15, item 6) -----------


async def test_a_retry_after_over_the_cap_fails_at_once_and_holds_only_for_the_cap(
    client: KlaviyoClient, router: respx.MockRouter, clock: FakeClock
) -> None:
    route = router.post("/api/events").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "86400"}), httpx.Response(202)]
    )
    first = await deliver(client, [event()])
    assert (first.status, first.retry_after, first.throttled) == ("failed", 86400.0, True)
    clock.now += 60.0  # MAX_RETRY_AFTER's default
    second = await deliver(client, [event()])
    assert second.status == "delivered"
    assert route.call_count == 2


async def test_a_retry_after_within_the_deadline_but_over_the_cap_is_not_waited_for(
    make_client: Factory, router: respx.MockRouter, clock: FakeClock
) -> None:
    route = router.post("/api/events").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "90"}), httpx.Response(202)]
    )
    async with make_client(
        httpx.MockTransport(router.async_handler), delivery_deadline=300.0, max_retry_after=60.0
    ) as c:
        outcome = await deliver(c, [event()])
    assert (outcome.status, outcome.retry_after) == ("failed", 90.0)
    assert route.call_count == 1
    assert clock.sleeps == []


async def test_a_retry_after_up_to_the_cap_is_waited_for(
    make_client: Factory, router: respx.MockRouter, clock: FakeClock
) -> None:
    router.post("/api/events").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "60"}), httpx.Response(202)]
    )
    async with make_client(
        httpx.MockTransport(router.async_handler), delivery_deadline=300.0, max_retry_after=60.0
    ) as c:
        outcome = await deliver(c, [event()])
    assert outcome.status == "delivered"
    assert clock.sleeps == [pytest.approx(60.0)]


async def test_a_long_ratelimit_reset_holds_only_for_the_cap(
    client: KlaviyoClient, router: respx.MockRouter, clock: FakeClock
) -> None:
    exhausted = {"RateLimit-Limit": "700", "RateLimit-Remaining": "0", "RateLimit-Reset": "86400"}
    router.post("/api/events").mock(
        side_effect=[httpx.Response(202, headers=exhausted), httpx.Response(202)]
    )
    assert (await deliver(client, [event()])).status == "delivered"
    clock.now += 60.0
    assert (await deliver(client, [event()])).status == "delivered"
