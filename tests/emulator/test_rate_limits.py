"""Emulator rate limits: RateLimit-* headers, burst and steady 429s, Retry-After, disabling."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from klaviyo_destination.emulator import EmulatorStore, EndpointClass, RateLimit, create_emulator
from tests.emulator.helpers import (
    HEADERS,
    FakeClock,
    connect,
    event_body,
    only_error,
    profile_body,
)

pytestmark = pytest.mark.anyio


def limited(clock: FakeClock, limit: RateLimit) -> FastAPI:
    store = EmulatorStore(clock=clock)
    return create_emulator(store, rate_limits={EndpointClass.PROFILES: limit})


async def test_success_carries_steady_window_headers(clock: FakeClock) -> None:
    async with connect(limited(clock, RateLimit(burst=5, steady=50)), HEADERS) as client:
        first = await client.get("/api/profiles/01GW3PHVY0MTCDGS0A1612HARX")
        second = await client.post("/api/profiles", json=profile_body(email="a@b.co"))

    # 20.25 s into the minute: the steady window resets in 39.75 s, rounded up.
    assert first.status_code == 404  # a counted request that failed for another reason
    assert (first.headers["RateLimit-Limit"], first.headers["RateLimit-Remaining"]) == ("50", "49")
    assert second.headers["RateLimit-Remaining"] == "48"
    assert second.headers["RateLimit-Reset"] == "40"


async def test_burst_exhaustion_is_429_until_the_next_second(clock: FakeClock) -> None:
    async with connect(limited(clock, RateLimit(burst=2, steady=50)), HEADERS) as client:
        ok = [await client.get("/api/profiles/x") for _ in range(2)]
        refused = await client.get("/api/profiles/x")
        other_class = await client.post("/api/events", json=event_body({"$email": "a@b.co"}))
        clock.advance(0.75)
        again = await client.get("/api/profiles/x")

    assert [r.status_code for r in ok] == [404, 404]
    assert await only_error(refused, 429) == {
        "status": 429,
        "code": "throttled",
        "title": "Request was throttled.",
        "detail": "Request was throttled. Expected available in 0 seconds.",
        "source": {"pointer": "/data/"},
        "links": {
            "type": "https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling"
            "#rate-limits"
        },
        "meta": {},
    }
    assert refused.headers["Retry-After"] == "1"
    assert "RateLimit-Limit" not in refused.headers
    assert other_class.status_code == 202
    assert (again.status_code, again.headers["RateLimit-Remaining"]) == (404, "47")


async def test_steady_exhaustion_waits_for_the_minute(clock: FakeClock) -> None:
    async with connect(limited(clock, RateLimit(burst=10, steady=2)), HEADERS) as client:
        for _ in range(2):
            await client.get("/api/profiles/x")
        refused = await client.get("/api/profiles/x")

    assert refused.headers["Retry-After"] == "40"
    detail = (await only_error(refused, 429))["detail"]
    assert detail == "Request was throttled. Expected available in 39 seconds."


async def test_retry_after_can_be_omitted_like_in_2023(clock: FakeClock) -> None:
    async with connect(limited(clock, RateLimit(burst=1, steady=50)), HEADERS) as client:
        switched = await client.post("/__emulator/rate-limits", json={"send_retry_after": False})
        await client.get("/api/profiles/x")
        refused = await client.get("/api/profiles/x")

    assert switched.json()["send_retry_after"] is False
    assert refused.status_code == 429
    assert "Retry-After" not in refused.headers


async def test_refused_requests_use_no_quota(clock: FakeClock) -> None:
    app = limited(clock, RateLimit(burst=1, steady=50))
    async with connect(app) as bare, connect(app, HEADERS) as client:
        assert (await bare.get("/api/profiles/x")).status_code == 401
        allowed = await client.get("/api/profiles/x")

    assert allowed.status_code == 404


async def test_rate_limits_can_be_disabled(clock: FakeClock) -> None:
    store = EmulatorStore(clock=clock, rate_limits={EndpointClass.PROFILES: RateLimit(1, 1)})
    async with connect(create_emulator(store, rate_limits=False), HEADERS) as client:
        responses = [await client.get("/api/profiles/x") for _ in range(3)]

    assert [r.status_code for r in responses] == [404, 404, 404]
    assert "RateLimit-Limit" not in responses[0].headers
