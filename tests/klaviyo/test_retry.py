"""The retry policy (``klaviyo/retry.py``): what is retried, how often, how long it waits, and
what running out of time or attempts means."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import orjson
import pytest
import respx
import stamina

from klaviyo_destination.errors import KlaviyoRedirected, KlaviyoRejected, KlaviyoUnavailable
from klaviyo_destination.klaviyo import KlaviyoClient, Outcome, SentRequest
from klaviyo_destination.klaviyo.facts import Endpoint
from klaviyo_destination.klaviyo.metrics import DeliveryMetrics
from klaviyo_destination.klaviyo.retry import RetryHook
from klaviyo_destination.settings import Settings
from tests.helpers.fakes import FakeClock
from tests.klaviyo.helpers import Factory, deliver, deliver_batch, error_body, event, plan, send

pytestmark = pytest.mark.anyio


def retry_waits(caplog: pytest.LogCaptureFixture, field: str = "retry_wait") -> list[float]:
    return [getattr(r, field) for r in caplog.records if hasattr(r, field)]


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


# --- one backoff, stamina's: the hook decides, and keeps the deadline -------------------------


def hook(settings: Settings, deadline_in: float) -> RetryHook:
    deadline = time.monotonic() + deadline_in
    return RetryHook(settings, DeliveryMetrics(), Endpoint.EVENTS, deadline)


def test_an_ordinary_failure_leaves_the_wait_to_stamina(settings: Settings) -> None:
    retry = hook(settings, 5.0)
    assert retry(httpx.ReadTimeout("timed out")) is True
    assert retry(KlaviyoUnavailable("Klaviyo answered 503: no detail", klaviyo_status=503)) is True


def test_a_wait_klaviyo_names_is_returned_to_stamina(settings: Settings) -> None:
    retry = hook(settings, 5.0)
    assert retry(KlaviyoUnavailable("throttled", retry_after=2.0, throttled=True)) == 2.0
    assert retry(KlaviyoUnavailable("throttled", retry_after=0.0, throttled=True)) == 0.1


def test_what_is_not_retried(settings: Settings) -> None:
    retry = hook(settings, 5.0)
    assert retry(KlaviyoRedirected("Klaviyo answered 302", klaviyo_status=302)) is False
    assert retry(KlaviyoRejected("Klaviyo rejected the request (400)")) is False
    assert retry(ValueError("a bug")) is False


def test_no_backoff_may_end_past_the_deadline(settings: Settings) -> None:
    """stamina's timeout does not count the coming sleep: the hook retries only when even the
    longest wait stamina may pick (initial * 2 ** retries + jitter, at most the max) fits."""
    slow = settings.model_copy(update={"backoff_initial": 1.0, "backoff_max": 5.0})
    assert hook(slow, 1.5)(httpx.ReadTimeout("t")) is False  # up to 1 + 1 s
    retry = hook(slow, 2.5)
    assert retry(httpx.ReadTimeout("t")) is True
    assert retry(httpx.ReadTimeout("t")) is False  # up to 2 + 1 s now


async def test_stamina_computes_the_backoff_from_the_settings(settings: Settings) -> None:
    stamina.set_testing(False)  # the fixture's instant backoffs would report 0
    waits = []
    async for attempt in hook(settings, 5.0).attempts(5.0):
        with attempt:
            waits.append(attempt.next_wait)  # stamina's wait after this try, before jitter
    assert waits == [settings.backoff_initial]


async def test_the_retry_line_gives_the_longest_backoff(
    client: KlaviyoClient, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="klaviyo_destination")
    router.post("/api/events").mock(side_effect=[httpx.Response(503), httpx.Response(202)])
    assert (await deliver(client, [event()])).status == "delivered"
    # min(BACKOFF_MAX, 0.01 + a jitter of up to 0.01): the most stamina may draw, named so
    assert retry_waits(caplog, "retry_wait_max") == [0.02]
    assert retry_waits(caplog) == []


async def test_the_first_failure_is_retried_by_stamina_like_any_other(
    client: KlaviyoClient, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    """The first try runs outside stamina's loop (klaviyo/retry.py ``after_first``): its
    failure must still reach stamina as retry 1, with the same hook, log line and count."""
    caplog.set_level(logging.INFO, logger="klaviyo_destination")
    seen: list[stamina.instrumentation.RetryDetails] = []
    saved = stamina.instrumentation.get_on_retry_hooks()

    def record(details: stamina.instrumentation.RetryDetails) -> None:
        seen.append(details)

    stamina.instrumentation.set_on_retry_hooks([record])
    try:
        route = router.post("/api/events").mock(
            side_effect=[httpx.Response(503), httpx.ReadTimeout("timed out"), httpx.Response(202)]
        )
        assert (await deliver(client, [event()])).status == "delivered"
    finally:
        stamina.instrumentation.set_on_retry_hooks(saved)
    assert route.call_count == 3
    assert [d.retry_num for d in seen] == [1, 2]
    first, second = (d.caused_by for d in seen)
    assert isinstance(first, KlaviyoUnavailable)
    assert first.klaviyo_status == 503
    assert isinstance(second, httpx.ReadTimeout)
    lines = [r.__dict__ for r in caplog.records if r.getMessage() == "klaviyo retry scheduled"]
    assert [line["attempt"] for line in lines] == [1, 2]
