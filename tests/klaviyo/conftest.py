"""Shared fixtures for the delivery tests: settings, a fake clock for the limiter, a respx
router, and clients on an injected transport; stamina's backoffs are instant."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import respx
import stamina
from pydantic import SecretStr

from klaviyo_destination.klaviyo import KlaviyoClient
from klaviyo_destination.klaviyo.ratelimit import RateLimiter
from klaviyo_destination.settings import Settings
from tests.helpers.fakes import FakeClock
from tests.klaviyo.helpers import BASE, KEY, Factory


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
