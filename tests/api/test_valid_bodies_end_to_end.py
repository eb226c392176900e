"""Events the reference would send in a form Klaviyo refuses reach the in-process emulator, which
validates like Klaviyo's 2023-02-22 schema, and are stored (docs/mapping.md §8.4, §8.7, D1).

The service is wired as ``make run`` wires it without a key: ``/v1/events`` delivering to the
emulator through an ASGI transport, nothing on the network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from klaviyo_destination.emulator import EmulatorStore, create_emulator
from klaviyo_destination.emulator.models import EventRecord
from klaviyo_destination.settings import Settings
from tests.helpers.apps import Build, served

#: The emulator's clock: 2025-11-28T10:05:00Z, so the events' times are in its accepted window.
NOW = 1_764_324_300.0
ACCEPTED = {"method": "POST", "path": "/api/events", "status": 202}


@pytest.fixture
def store() -> EmulatorStore:
    return EmulatorStore(clock=lambda: NOW, seed=7, rate_limits=None)


@pytest.fixture
async def service(build: Build, store: EmulatorStore) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        klaviyo_private_api_key=SecretStr("pk_emulated"),
        klaviyo_base_url="http://emulator.embedded",
        max_attempts=1,
    )
    transport = httpx.ASGITransport(app=create_emulator(store))
    app = build(settings, transport=transport)
    async with served(app) as client:
        yield client


async def _deliver(service: httpx.AsyncClient, event: dict[str, Any]) -> None:
    response = await service.post("/v1/events", json=event)
    [result] = response.json()["results"]
    assert (response.status_code, result["status"]) == (200, "delivered"), result
    assert result["requests"] == [ACCEPTED]


def _only(store: EmulatorStore) -> EventRecord:
    [event] = store.events
    return event


@pytest.mark.anyio
async def test_track_without_properties(service: httpx.AsyncClient, store: EmulatorStore) -> None:
    """event_properties_always: the most basic track call there is."""
    await _deliver(
        service, {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "m1"}
    )
    event = _only(store)
    assert (event.metric_name, event.properties, event.unique_id) == ("Signed Up", {}, "m1")


@pytest.mark.anyio
@pytest.mark.parametrize("timestamp", [1764324000000, 1764324000, 1764324000.5])
async def test_numeric_timestamp(
    service: httpx.AsyncClient, store: EmulatorStore, timestamp: float
) -> None:
    """event_time_iso: Unix ms or seconds arrive as a date-time (Klaviyo keeps whole seconds)."""
    await _deliver(
        service,
        {"type": "track", "event": "E", "userId": "u1", "messageId": "m1", "timestamp": timestamp},
    )
    assert _only(store).time == datetime(2025, 11, 28, 10, 0, 0, tzinfo=UTC)


@pytest.mark.anyio
async def test_string_value(service: httpx.AsyncClient, store: EmulatorStore) -> None:
    """event_value_number: "12.5" arrives as the number 12.5."""
    await _deliver(
        service,
        {"type": "track", "event": "E", "userId": "u1", "messageId": "m1",
         "properties": {"value": "12.5", "plan": "pro"}},
    )  # fmt: skip
    event = _only(store)
    assert (event.value, event.properties) == (12.5, {"plan": "pro"})


@pytest.mark.anyio
async def test_screen_named_at_top_level(service: httpx.AsyncClient, store: EmulatorStore) -> None:
    """screen_top_level_name: a screen as RudderStack's and Segment's SDKs send it."""
    await _deliver(service, {"type": "screen", "name": "Home", "userId": "u1", "messageId": "m1"})
    assert _only(store).metric_name == "Home"


@pytest.mark.anyio
async def test_resent_event_without_message_id_is_stored_once(
    service: httpx.AsyncClient, store: EmulatorStore
) -> None:
    """D1: the digest is the same on every resend, so Klaviyo keeps one event."""
    event = {"type": "track", "event": "E", "userId": "u1", "timestamp": 1764324000000}
    await _deliver(service, event)
    await _deliver(service, event)
    await _deliver(service, {**event, "properties": {"n": 2}})
    assert len(store.events) == 2
    assert len({stored.unique_id for stored in store.events}) == 2
