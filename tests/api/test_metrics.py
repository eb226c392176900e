"""What an operator graphs, read from /metrics after real requests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from klaviyo_destination.api.metrics import OTHER_REASON, EventMetrics, error_codes
from klaviyo_destination.emulator import create_emulator
from klaviyo_destination.settings import Settings
from tests.helpers.apps import Build, served

KEY = "pk_metrics"
TRACK = {"type": "track", "event": "E", "userId": "u1", "messageId": "m1", "properties": {}}

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(build: Build) -> AsyncIterator[httpx.AsyncClient]:
    emulator = create_emulator()
    settings = Settings(klaviyo_private_api_key=SecretStr(KEY))
    app = build(settings, transport=httpx.ASGITransport(emulator), mounts={"/emulator": emulator})
    async with served(app) as c:
        yield c


async def samples(client: httpx.AsyncClient, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = (await client.get("/metrics")).text
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def test_requests_and_latency_per_route_template(client: httpx.AsyncClient) -> None:
    job = {
        "message": TRACK,
        "metadata": {"jobId": 1},
        "destination": {"ID": "d", "Config": {"privateApiKey": KEY}},
    }
    assert (await client.post("/v0/destinations/klaviyo", json=[job])).status_code == 200
    assert (await client.post("/v1/events", json=TRACK)).status_code == 200
    assert (await client.get("/nowhere/123")).status_code == 404
    assert (await client.get("/emulator/__emulator/state")).status_code == 200
    counts = await samples(client, "klaviyo_destination_http_requests_total")
    expected = {
        ("/v0/destinations/{destination}", "POST", "200"),
        ("/v1/events", "POST", "200"),
        ("unmatched", "GET", "404"),
        ("/emulator/__emulator/state", "GET", "200"),
    }
    got = {(dict(k)["route"], dict(k)["method"], dict(k)["status"]) for k in counts}
    assert expected <= got
    assert not any("123" in route for route, _, _ in got)  # raw paths never become labels
    latency = await samples(client, "klaviyo_destination_http_request_duration_seconds_count")
    assert latency[(("route", "/v1/events"),)] == 1


async def test_event_outcomes_and_klaviyo_requests(client: httpx.AsyncClient) -> None:
    await client.post("/v1/events", json=[TRACK, {"type": "page", "userId": "u"}])
    outcomes = await samples(client, "klaviyo_destination_events_total")
    assert outcomes[(("outcome", "delivered"), ("type", "track"))] == 1
    assert outcomes[(("outcome", "rejected"), ("type", "page"))] == 1
    requests = await samples(client, "klaviyo_requests_total")
    assert requests[(("endpoint", "/api/events"), ("status", "202"))] == 1


async def test_event_outcomes_count_every_event_of_a_request(client: httpx.AsyncClient) -> None:
    """Counted per (type, outcome) once a request, by how many events had it."""
    tracks = [{**TRACK, "messageId": f"m{i}", "userId": f"u{i}"} for i in range(3)]
    pages = [{"type": "page", "userId": f"p{i}"} for i in range(2)]
    await client.post("/v1/events", json=[tracks[0], pages[0], *tracks[1:], pages[1]])
    outcomes = await samples(client, "klaviyo_destination_events_total")
    assert outcomes[(("outcome", "delivered"), ("type", "track"))] == 3
    assert outcomes[(("outcome", "rejected"), ("type", "page"))] == 2


async def test_the_limiter_budget_and_waits(build: Build) -> None:
    """Free slots per endpoint and window at scrape time, and how long requests waited."""
    emulator = create_emulator()
    settings = Settings(
        klaviyo_private_api_key=SecretStr(KEY), events_rate_burst=2, events_rate_steady=50
    )
    app = build(settings, transport=httpx.ASGITransport(emulator))
    async with served(app) as c:
        before = await samples(c, "klaviyo_rate_limiter_available")
        assert before[(("endpoint", "/api/events"), ("window", "burst"))] == 2
        assert before[(("endpoint", "/api/events"), ("window", "steady"))] == 50
        two = [{**TRACK, "messageId": f"m{i}", "userId": f"u{i}"} for i in range(2)]
        assert (await c.post("/v1/events", json=two)).status_code == 200
        after = await samples(c, "klaviyo_rate_limiter_available")
        assert after[(("endpoint", "/api/events"), ("window", "burst"))] == 0  # both used
        assert after[(("endpoint", "/api/events"), ("window", "steady"))] == 48
        waits = await samples(c, "klaviyo_rate_limiter_wait_seconds_count")
        assert waits[(("endpoint", "/api/events"),)] == 2


async def test_no_created_series(client: httpx.AsyncClient) -> None:
    """prometheus-client adds a ``<name>_created`` gauge (a start timestamp) to every counter
    and histogram by default: twice the series, and nothing an alert reads. They are off
    (``disable_created_metrics()`` in ``klaviyo/metrics.py``; issue 27, first contact 7)."""
    await client.post("/v1/events", json=[TRACK, {"type": "page", "userId": "u"}])
    text = (await client.get("/metrics")).text
    names = {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }
    assert "klaviyo_destination_events_total" in names
    assert "klaviyo_destination_http_request_duration_seconds_count" in names
    assert not [name for name in names if name.endswith("_created")]
    assert "_created" not in text


def test_the_reason_label_is_bounded_by_the_error_tree() -> None:
    """A code outside the error tree (none is, today) is counted as ``other``: the label never
    takes a value from a caller or from Klaviyo."""
    metrics = EventMetrics(CollectorRegistry())
    metrics.count("track", "rejected", "invalid_event")
    metrics.count("track", "failed", "klaviyo_unavailable")
    metrics.count("track", "rejected", "anything a caller wrote")
    metrics.count("track", "delivered", None)
    counted = {
        (sample.labels["outcome"], sample.labels["reason"]): sample.value
        for family in metrics.not_delivered.collect()
        for sample in family.samples
    }
    assert counted == {
        ("rejected", "invalid_event"): 1.0,
        ("failed", "klaviyo_unavailable"): 1.0,
        ("rejected", OTHER_REASON): 1.0,
    }
    assert {"invalid_event", "klaviyo_rejected", "klaviyo_unavailable"} <= error_codes()
