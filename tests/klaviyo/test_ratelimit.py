"""Client-side rate limiter: sliding burst + steady windows, holds, Klaviyo's wait hints."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from klaviyo_destination.errors import RateLimited
from klaviyo_destination.klaviyo.facts import Endpoint, RateLimit
from klaviyo_destination.klaviyo.ratelimit import (
    EndpointLimiter,
    RateLimiter,
    limits_of,
    retry_after,
)
from klaviyo_destination.settings import Settings
from tests.helpers.fakes import FakeClock

pytestmark = pytest.mark.anyio


def max_in_any_window(stamps: Sequence[float], period: float) -> int:
    return max(sum(1 for t in stamps if start <= t < start + period) for start in stamps)


async def acquire(limit: EndpointLimiter, max_wait: float | None = None) -> None:
    """A slot for an instant request."""
    async with limit.slot(max_wait=max_wait):
        pass


def limiter(clock: FakeClock, burst: int, steady: int) -> EndpointLimiter:
    return EndpointLimiter(burst, steady, clock=clock, sleep=clock.sleep)


async def test_never_more_than_burst_or_steady_per_window() -> None:
    clock = FakeClock(1000.0)
    limit = limiter(clock, burst=3, steady=5)
    stamps = []
    for _ in range(17):
        await acquire(limit)
        stamps.append(clock.now)
    assert max_in_any_window(stamps, 1.0) == 3
    assert max_in_any_window(stamps, 60.0) == 5
    # Three minutes of slots took one computed sleep per wait, never a polling loop.
    assert len(clock.sleeps) <= len(stamps)
    assert all(s > 0 for s in clock.sleeps)


async def test_concurrent_waiters_are_all_admitted_within_limits() -> None:
    clock = FakeClock(1000.0)
    limit = limiter(clock, burst=4, steady=1000)
    stamps: list[float] = []

    async def one() -> None:
        await acquire(limit)
        stamps.append(clock.now)

    async with asyncio.TaskGroup() as group:
        for _ in range(13):
            group.create_task(one())
    assert len(stamps) == 13
    assert max_in_any_window(stamps, 1.0) == 4


async def test_slots_go_first_come_first_served() -> None:
    clock = FakeClock(1000.0)
    limit = limiter(clock, burst=1, steady=1000)
    await acquire(limit)  # the window is full until 1001
    admitted: list[str] = []

    async def one(name: str) -> None:
        await acquire(limit)
        admitted.append(name)

    async with asyncio.TaskGroup() as group:
        group.create_task(one("first"))
        group.create_task(one("second"))
        await asyncio.sleep(0)  # both queued; the first sleeps (the clock moves to 1001)
        await asyncio.sleep(0)
        # Two are waiting: a newcomer queues behind them.
        group.create_task(one("newcomer"))
    assert admitted == ["first", "second", "newcomer"]


async def test_max_wait_raises_with_the_wait_instead_of_sleeping() -> None:
    clock = FakeClock(1000.0)
    limit = limiter(clock, burst=1, steady=100)
    await acquire(limit)
    with pytest.raises(RateLimited) as caught:
        await acquire(limit, max_wait=0.5)
    assert caught.value.wait == pytest.approx(1.0)
    assert clock.sleeps == []


async def test_remaining_zero_holds_the_endpoint_until_reset() -> None:
    clock = FakeClock(1000.0)
    limit = limiter(clock, burst=100, steady=100)
    limit.observe(httpx.Headers({"RateLimit-Remaining": "0", "RateLimit-Reset": "7"}))
    await acquire(limit)
    assert clock.sleeps == [pytest.approx(7.0)]


@pytest.mark.parametrize(
    "headers",
    [
        {"RateLimit-Remaining": "12", "RateLimit-Reset": "7"},
        {"RateLimit-Remaining": "0"},
        {"RateLimit-Remaining": "zero", "RateLimit-Reset": "7"},
        {},
    ],
)
async def test_other_ratelimit_headers_do_not_hold(headers: dict[str, str]) -> None:
    clock = FakeClock(1000.0)
    limit = limiter(clock, burst=100, steady=100)
    limit.observe(httpx.Headers(headers))
    await acquire(limit)
    assert clock.sleeps == []


async def test_hold_is_honoured_and_ignores_nonsense() -> None:
    clock = FakeClock(1000.0)
    limit = limiter(clock, burst=100, steady=100)
    limit.hold(float("nan"))
    limit.hold(-3)
    limit.hold(2.5)
    await acquire(limit)
    assert clock.sleeps == [pytest.approx(2.5)]


async def test_one_limiter_per_endpoint_from_settings() -> None:
    clock = FakeClock(1000.0)
    settings = Settings(profiles_rate_burst=1, events_rate_burst=2)
    limits = RateLimiter.from_settings(settings, clock=clock, sleep=clock.sleep)
    await acquire(limits[Endpoint.PROFILES])
    await acquire(limits[Endpoint.SUBSCRIPTIONS])
    await acquire(limits[Endpoint.EVENTS])
    await acquire(limits[Endpoint.EVENTS])
    assert clock.sleeps == []  # separate quotas: nobody waited
    await acquire(limits[Endpoint.PROFILES])
    assert clock.sleeps == [pytest.approx(1.0)]


@pytest.mark.parametrize(
    ("replicas", "events", "profiles"),
    [
        (None, {"burst": 40, "steady": 3500}, {"burst": 75, "steady": 700}),  # the whole
        (1, {"burst": 40, "steady": 3500}, {"burst": 75, "steady": 700}),
        (3, {"burst": 13, "steady": 1166}, {"burst": 25, "steady": 233}),  # a third, rounded down
        (100, {"burst": 1, "steady": 35}, {"burst": 1, "steady": 7}),  # never below one
    ],
)
def test_replicas_gives_each_process_its_share(
    replicas: int | None, events: dict[str, int], profiles: dict[str, int]
) -> None:
    limits = RateLimiter.from_settings(Settings(replicas=replicas, events_rate_burst=40))
    assert limits[Endpoint.EVENTS].available() == events
    assert limits[Endpoint.PROFILES].available() == profiles


def test_retry_after_header_in_seconds() -> None:
    assert retry_after(httpx.Headers({"Retry-After": "3"}), "") == 3.0


def test_retry_after_http_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    wait = retry_after(httpx.Headers({"Retry-After": when}), "")
    assert wait is not None
    assert 25 <= wait <= 31


def test_retry_after_from_expected_available_detail() -> None:
    body = {"errors": [{"code": "throttled", "detail": "Expected available in 1 second."}]}
    assert retry_after(httpx.Headers(), body) == 1.0


def test_retry_after_absent() -> None:
    assert (
        retry_after(httpx.Headers({"Retry-After": "soon"}), {"errors": [{"detail": "x"}]}) is None
    )
    assert retry_after(httpx.Headers(), "<html>") is None


async def test_a_slot_counts_until_a_period_after_the_request_completes() -> None:
    # Klaviyo sees a request somewhere between admission and answer: a slow request must keep
    # its slot until a whole period after the answer, or a late departure crowds a window.
    clock = FakeClock(1000.0)
    limit = limiter(clock, burst=2, steady=100)
    async with limit.slot(), limit.slot():
        await clock.sleep(0.5)  # both requests take half a second
    admitted_at = clock.now  # 1000.5: both answered now
    await acquire(limit)
    assert clock.now == pytest.approx(admitted_at + 1.0)


async def test_unanswered_requests_fill_the_window() -> None:
    clock = FakeClock(1000.0)
    limit = limiter(clock, burst=1, steady=100)
    async with limit.slot():
        with pytest.raises(RateLimited):
            await acquire(limit, max_wait=0.005)


async def test_held_within_remembers_klaviyos_wait() -> None:
    clock = FakeClock(1000.0)
    limits = RateLimiter.from_settings(Settings(), clock=clock, sleep=clock.sleep)
    assert not limits.held_within(25)
    limits[Endpoint.EVENTS].hold(2)
    await clock.sleep(10)
    assert limits.held_within(25)
    assert limits[Endpoint.EVENTS].held_within(10)
    assert not limits[Endpoint.PROFILES].held_within(25)
    await clock.sleep(20)
    assert not limits.held_within(25)


@pytest.mark.parametrize(
    ("version", "profile_tier"),
    [("v1", RateLimit(75, 700)), ("v2", RateLimit(75, 700)), ("v3", RateLimit(75, 750))],
)
def test_each_endpoint_class_gets_the_revisions_tier(version: str, profile_tier: RateLimit) -> None:
    """Unset, the settings give way to the revision's tiers (v3: 750 a minute for
    profile-import and both list jobs); create-profile, which only v1 has, keeps v1's."""
    limits = limits_of(Settings(klaviyo_api_version=version))
    assert set(limits) == set(Endpoint)
    assert limits[Endpoint.PROFILES] == RateLimit(75, 700)
    assert limits[Endpoint.EVENTS] == RateLimit(350, 3500)
    for endpoint in (Endpoint.PROFILE_IMPORT, Endpoint.SUBSCRIPTIONS, Endpoint.UNSUBSCRIPTIONS):
        assert limits[endpoint] == profile_tier


@pytest.mark.parametrize(
    ("overrides", "profiles", "events"),
    [
        ({"profiles_rate_steady": 100}, RateLimit(75, 100), RateLimit(350, 3500)),
        ({"profiles_rate_burst": 5}, RateLimit(5, 750), RateLimit(350, 3500)),
        ({"events_rate_burst": 9, "events_rate_steady": 90}, RateLimit(75, 750), RateLimit(9, 90)),
    ],
)
def test_the_rate_settings_override_the_tier_they_name(
    overrides: dict[str, int], profiles: RateLimit, events: RateLimit
) -> None:
    limits = limits_of(Settings.model_validate({"klaviyo_api_version": "v3", **overrides}))
    assert limits[Endpoint.PROFILE_IMPORT] == limits[Endpoint.UNSUBSCRIPTIONS] == profiles
    assert limits[Endpoint.EVENTS] == events


def test_a_blank_rate_setting_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROFILES_RATE_STEADY", "")
    monkeypatch.setenv("KLAVIYO_API_VERSION", "v3")
    assert limits_of(Settings())[Endpoint.SUBSCRIPTIONS] == RateLimit(75, 750)


async def test_a_v3_limiter_paces_profile_import_at_its_tier() -> None:
    clock = FakeClock(1000.0)
    settings = Settings(klaviyo_api_version="v3", profiles_rate_burst=2)
    limits = RateLimiter.from_settings(settings, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        await acquire(limits[Endpoint.PROFILE_IMPORT])
    assert clock.sleeps == [pytest.approx(1.0)]
