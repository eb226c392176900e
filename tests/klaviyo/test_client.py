"""The client (``klaviyo/client.py``): the headers every call carries, its metrics, and answers
it cannot use (corrupt, or over ``MAX_ANSWER_BYTES``) as retryable failures, never a crash."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import respx
from pydantic import SecretStr

from klaviyo_destination.klaviyo import KlaviyoClient, klaviyo_headers
from klaviyo_destination.klaviyo.metrics import DeliveryMetrics
from tests.klaviyo.helpers import KEY, Factory, corrupt_gzip, deliver, event, send

pytestmark = pytest.mark.anyio


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
