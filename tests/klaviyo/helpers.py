"""Helpers for the delivery tests: Klaviyo answers, planned requests and events, and one-line
ways through the session (a batch, one event, one request)."""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

import httpx
import respx
from pydantic import SecretStr

from klaviyo_destination import planned
from klaviyo_destination.errors import InvalidEvent
from klaviyo_destination.klaviyo import KlaviyoClient, KlaviyoSession, Outcome
from klaviyo_destination.planned import PlannedEvent, PlannedRequest

KEY: Final = "pk_live_SECRET_0123456789abcdef"
BASE: Final = "https://klaviyo.test"
PROFILE_BODY: Final = {"data": {"type": "profile", "attributes": {"email": "a@b.co"}}}
BOTH_IDS_BODY: Final = {
    "data": {"type": "profile", "attributes": {"email": "a@b.co", "phone_number": "+15005550006"}}
}

#: ``make_client(transport, **settings overrides)``, the fixture of ``conftest.py``.
Factory = Callable[..., KlaviyoClient]
Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


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


def corrupt_gzip(status: int) -> httpx.Response:
    """An answer whose body says gzip and is not (a stream, so that only the client reads it)."""
    stream = httpx.ByteStream(b"not gzip")
    return httpx.Response(status, headers={"Content-Encoding": "gzip"}, stream=stream)


def event(name: str = "Order") -> PlannedRequest:
    attributes = {"profile": {"$email": "a@b.co"}, "metric": {"name": name}, "properties": {}}
    return planned.create_event(attributes)


def subscription(list_id: str, *emails: str) -> PlannedRequest:
    subs = [{"email": email, "channels": {"email": ["MARKETING"]}} for email in emails]
    return planned.subscribe({"list_id": list_id, "subscriptions": subs})


def plan(
    user: str, requests: list[PlannedRequest] | None = None, *, error: InvalidEvent | None = None
) -> PlannedEvent:
    return PlannedEvent(None, "track", user, requests or [], error)


def job_sizes(route: respx.Route) -> list[tuple[str, int]]:
    """``(list_id, entries)`` of each subscription job the route received."""
    sizes = []
    for call in route.calls:
        attributes = httpx.Response(200, content=call.request.content).json()["data"]["attributes"]
        sizes.append((attributes["list_id"], len(attributes["subscriptions"])))
    return sizes


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
