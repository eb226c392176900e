"""The app with REDIS_URL: its deliveries take their slots from Redis under a hash of the key,
a 429 one app sees holds another on the same account, and /ready and /metrics say whether the
limits are shared. Klaviyo is respx; Redis is a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import redis.asyncio
import respx
from pydantic import SecretStr

from klaviyo_destination.app import create_app
from klaviyo_destination.klaviyo.ratelimit import account_of
from klaviyo_destination.settings import Settings
from support.events import signed_up
from support.processes import free_port
from support.redis_server import RedisServer
from tests.helpers.apps import served
from tests.helpers.redis import NEEDS_REDIS

pytestmark = [pytest.mark.anyio, *NEEDS_REDIS]

KEY = "pk_shared_app_secret"
BASE = "https://a.klaviyo.com"


@asynccontextmanager
async def app(redis_url: str, router: respx.MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    """One process: the app with REDIS_URL, Klaviyo answered by ``router``."""
    settings = Settings(
        klaviyo_private_api_key=SecretStr(KEY),
        redis_url=SecretStr(redis_url),
        max_attempts=2,
        delivery_deadline=2.0,
    )
    transport = httpx.MockTransport(router.async_handler)
    async with served(create_app(settings, transport=transport)) as client:
        yield client


def klaviyo() -> respx.MockRouter:
    return respx.MockRouter(base_url=BASE, assert_all_called=False)


async def shared_gauge(client: httpx.AsyncClient) -> str:
    metrics = (await client.get("/metrics")).text
    [line] = [x for x in metrics.splitlines() if x.startswith("klaviyo_rate_limits_shared ")]
    return line.split()[1]


async def test_deliveries_draw_on_the_accounts_budget_in_redis(
    redis_server: RedisServer,
) -> None:
    router = klaviyo()
    router.post("/api/events").respond(202)
    async with app(redis_server.url, router) as client:
        answer = await client.post("/v1/events", json=signed_up())
        assert answer.json()["results"][0]["status"] == "delivered"
        assert (await client.get("/ready")).json()["rate_limits"] == "shared"
        assert await shared_gauge(client) == "1.0"
        metrics = (await client.get("/metrics")).text
        [calls] = [x for x in metrics.splitlines() if x.startswith("klaviyo_rate_limit_redis_")]
        assert float(calls.split()[1]) >= 1  # its slot (its answer may wait to ride along)
    store = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        keys = sorted(str(key) for key in await store.keys("*"))
    finally:
        await store.aclose()
    account = account_of(SecretStr(KEY))
    # The answered request (none in flight now): under the key's hash, never the key.
    assert keys == [f"klaviyo-destination:{{{account}:events}}:d"]


async def test_a_429_one_process_sees_holds_the_others(redis_server: RedisServer) -> None:
    throttled, waiting = klaviyo(), klaviyo()
    throttled.post("/api/events").respond(429, headers={"Retry-After": "30"})
    sent = waiting.post("/api/events").respond(202)
    async with app(redis_server.url, throttled) as one, app(redis_server.url, waiting) as two:
        first = await one.post("/v1/events", json=signed_up("m1"))
        assert first.status_code == 429
        second = await two.post("/v1/events", json=signed_up("m2"))
    assert second.status_code == 429  # held for 30 s, past its 2 s deadline: handed back
    assert 25 <= int(second.headers["Retry-After"]) <= 30
    assert sent.call_count == 0  # the second process never sent


async def test_redis_unreachable_limits_are_local_and_deliveries_go_on() -> None:
    router = klaviyo()
    sent = router.post("/api/events").respond(202)
    nothing_there = f"redis://127.0.0.1:{free_port()}/0"
    async with app(nothing_there, router) as client:
        assert (await client.get("/ready")).json()["rate_limits"] == "local"
        assert await shared_gauge(client) == "0.0"
        answer = await client.post("/v1/events", json=signed_up())
    assert answer.json()["results"][0]["status"] == "delivered"
    assert sent.call_count == 1
