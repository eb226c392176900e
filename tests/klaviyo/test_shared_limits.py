"""Shared rate limits (REDIS_URL) against a real redis-server: one budget per account and
endpoint class across processes, Klaviyo's hints shared, and the local limiter when Redis is
slow, down or back. Each ``SharedRateLimiter`` below stands for one process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
import redis.asyncio

from klaviyo_destination.errors import RateLimited
from klaviyo_destination.klaviyo.client import _limiter
from klaviyo_destination.klaviyo.facts import Endpoint
from klaviyo_destination.klaviyo.ratelimit import RateLimiter, account_of
from klaviyo_destination.klaviyo.redis_link import PROBE_INTERVAL
from klaviyo_destination.klaviyo.shared_limits import LINGER, SPARE, SharedRateLimiter
from klaviyo_destination.settings import Settings
from support.processes import free_port
from support.redis_server import RedisServer
from tests.helpers.redis import NEEDS_REDIS

pytestmark = [pytest.mark.anyio, *NEEDS_REDIS]

KEY = "pk_shared_limits_test_key"
ACCOUNT = account_of(Settings(klaviyo_private_api_key=KEY).klaviyo_private_api_key)  # type: ignore[arg-type]
EVENTS = Endpoint.EVENTS


@asynccontextmanager
async def process(url: str, **settings: object) -> AsyncIterator[SharedRateLimiter]:
    """One process's limiter, started and closed as the client's lifespan does."""
    limits = _limiter(Settings(redis_url=url, redis_timeout=0.5, **settings))  # type: ignore[arg-type]
    assert isinstance(limits, SharedRateLimiter)
    await limits.start()
    try:
        yield limits
    finally:
        await limits.aclose()


async def until(condition: Callable[[], bool], attempts: int = 100) -> None:
    """Wait for ``condition`` (the probe runs every PROBE_INTERVAL), failing after a while."""
    for _ in range(attempts):
        if condition():
            return
        await asyncio.sleep(PROBE_INTERVAL / 10)
    raise AssertionError("condition not reached")


async def test_processes_draw_on_one_burst_budget(redis_server: RedisServer) -> None:
    async with AsyncExitStack() as stack:
        one, two = [
            await stack.enter_async_context(process(redis_server.url, events_rate_burst=5))
            for _ in range(2)
        ]
        assert one.shared
        assert two.shared
        for limits in (one, two, one, two, one):  # five slots held across both processes
            await stack.enter_async_context(limits.of(EVENTS, ACCOUNT).slot(max_wait=5))
        for limits in (one, two):
            with pytest.raises(RateLimited):
                async with limits.of(EVENTS, ACCOUNT).slot(max_wait=0.05):
                    pass
        # Another account, and another endpoint class, have budgets of their own.
        async with two.of(EVENTS, "another-account").slot(max_wait=0.05):
            pass
        async with two.of(Endpoint.PROFILES, ACCOUNT).slot(max_wait=0.05):
            pass


async def test_an_answered_request_still_counts_for_the_window(redis_server: RedisServer) -> None:
    """Steady 2 a minute: two requests in and out, the third waits for the minute, in either
    process (the local limiter's rule: a request counts until a window after its answer)."""
    settings = {"events_rate_burst": 100, "events_rate_steady": 2}
    async with (
        process(redis_server.url, **settings) as one,
        process(redis_server.url, **settings) as two,
    ):
        for limits in (one, two):
            async with limits.of(EVENTS, ACCOUNT).slot(max_wait=1):
                pass
        with pytest.raises(RateLimited) as refused:
            async with two.of(EVENTS, ACCOUNT).slot(max_wait=1):
                pass
        assert 50 < refused.value.wait <= 60


async def test_a_waiter_gets_the_slot_when_it_frees(redis_server: RedisServer) -> None:
    async with (
        process(redis_server.url, events_rate_burst=1) as one,
        process(redis_server.url, events_rate_burst=1) as two,
    ):
        first = one.of(EVENTS, ACCOUNT).slot(max_wait=5)
        await first.__aenter__()
        waiting = asyncio.create_task(_acquire(two, max_wait=10))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await first.__aexit__(None, None, None)
        await waiting  # one second after the first was answered


async def _acquire(limits: RateLimiter, max_wait: float) -> None:
    async with limits.of(EVENTS, ACCOUNT).slot(max_wait=max_wait):
        pass


async def test_klaviyos_retry_after_holds_every_process(redis_server: RedisServer) -> None:
    async with process(redis_server.url) as one, process(redis_server.url) as two:
        one.of(EVENTS, ACCOUNT).hold(30)  # a 429 with Retry-After: 30 in the first process
        for limits in (one, two):
            with pytest.raises(RateLimited) as refused:
                async with limits.of(EVENTS, ACCOUNT).slot(max_wait=1):
                    pass
            assert 25 < refused.value.wait <= 30
        async with two.of(Endpoint.PROFILES, ACCOUNT).slot(max_wait=1):
            pass  # another endpoint class is not held


async def test_redis_holds_a_hash_of_the_account_never_the_key(redis_server: RedisServer) -> None:
    async with process(redis_server.url) as limits, limits.of(EVENTS, ACCOUNT).slot(max_wait=1):
        pass
    client = redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        keys = [str(key) for key in await client.keys("*")]
        values = [await client.zrange(key, 0, -1) for key in keys if not key.endswith(":h")]
    finally:
        await client.aclose()
    assert keys
    assert all(ACCOUNT in key for key in keys)
    assert KEY not in repr(keys) + repr(values)


async def test_unreachable_at_start_local_then_shared_when_redis_comes(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis_server.stop()
    caplog.set_level(logging.INFO, "klaviyo_destination.klaviyo.redis_link")
    async with process(redis_server.url, events_rate_burst=2, replicas=2) as limits:
        assert not limits.shared
        async with limits.of(EVENTS, ACCOUNT).slot(max_wait=1):
            pass  # the local limiter: REPLICAS 2 leaves it 1 of the burst of 2
        with pytest.raises(RateLimited):
            async with limits.of(EVENTS, ACCOUNT).slot(max_wait=0.01):
                pass
        redis_server.start()
        await until(lambda: limits.shared)
        async with limits.of(EVENTS, "another-account").slot(max_wait=1):
            pass
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(" (")[0] for m in messages] == [
        "rate limits local: Redis unreachable",
        "rate limits shared through Redis",
    ]


async def test_redis_stopped_mid_run_deliveries_go_on_locally(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "klaviyo_destination.klaviyo.redis_link")
    async with process(redis_server.url) as limits:
        held = limits.of(EVENTS, ACCOUNT).slot(max_wait=1)
        await held.__aenter__()  # granted by Redis, answered after it went away
        redis_server.stop()
        for _ in range(SPARE + 5):  # past the slots taken ahead: Redis is asked, and fails
            async with limits.of(EVENTS, ACCOUNT).slot(max_wait=1):
                pass
        await held.__aexit__(None, None, None)
        assert not limits.shared
        redis_server.start()  # empty, without the script: loaded again
        await until(lambda: limits.shared)
        async with limits.of(EVENTS, ACCOUNT).slot(max_wait=1):
            pass
        assert limits.shared
    local = [r for r in caplog.records if r.getMessage().startswith("rate limits local")]
    assert len(local) == 1  # once per change, not once per request


async def test_slow_redis_turns_limits_local_within_the_timeout(
    redis_server: RedisServer,
) -> None:
    async with process(redis_server.url) as limits:
        pauser = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            await pauser.client_pause(3000, all=True)
            async with limits.of(EVENTS, ACCOUNT).slot(max_wait=2):
                pass  # the round trip timed out (0.5 s): a local slot, well before 3 s
            assert not limits.shared
        finally:
            await pauser.client_unpause()
            await pauser.aclose()


async def test_a_cancelled_waiter_gives_its_place_back(redis_server: RedisServer) -> None:
    async with process(redis_server.url, events_rate_burst=1) as limits:
        limiter = limits.of(EVENTS, ACCOUNT)
        async with limiter.slot(max_wait=1):
            waiting = asyncio.create_task(_acquire(limits, max_wait=10))
            await asyncio.sleep(0.05)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        assert limiter.throttling() is None  # nobody waits any more


def test_without_redis_url_the_process_keeps_its_own_limiter() -> None:
    limits = _limiter(Settings())
    assert type(limits) is RateLimiter
    assert not limits.shared
    assert limits.of(EVENTS, ACCOUNT) is limits[EVENTS]


async def test_slots_taken_ahead_with_room_and_given_back_when_idle(
    redis_server: RedisServer,
) -> None:
    """With room in the budget one round trip takes SPARE more slots for the next requests
    (they count in Redis from then on); idle, they go back unused."""
    store = redis.asyncio.Redis.from_url(redis_server.url)
    in_flight = f"klaviyo-destination:{{{ACCOUNT}:events}}:f"
    try:
        async with process(redis_server.url) as limits:
            limiter = limits.of(EVENTS, ACCOUNT)
            async with limiter.slot(max_wait=1):
                assert await store.zcard(in_flight) == 1 + SPARE
                calls = limits.redis_calls
                async with limiter.slot(max_wait=1):
                    assert limits.redis_calls == calls  # a spare: no round trip
            for _ in range(100):
                if await store.zcard(in_flight) == 0:
                    break
                await asyncio.sleep(LINGER)
            assert await store.zcard(in_flight) == 0
            assert await store.zcard(in_flight.removesuffix("f") + "d") == 2  # the two used
    finally:
        await store.aclose()


async def test_klaviyos_hold_sends_the_slots_taken_ahead_back(redis_server: RedisServer) -> None:
    async with process(redis_server.url) as limits:
        limiter = limits.of(EVENTS, ACCOUNT)
        async with limiter.slot(max_wait=1):
            pass  # with room in the budget: SPARE more taken ahead
        limiter.hold(30)  # Klaviyo's 429: none of them may go now
        with pytest.raises(RateLimited) as refused:
            async with limiter.slot(max_wait=1):
                pass
        assert 25 < refused.value.wait <= 30


async def test_redis_password_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"redis://:s3cret-redis-pass@127.0.0.1:{free_port()}/0"
    async with process(url) as limits:
        assert not limits.shared
    assert "rate limits local: Redis unreachable" in caplog.text
    assert "s3cret-redis-pass" not in caplog.text
