"""What the webhook path delivered at v2/v3, set beside what the protocol routes answer for the
same events: the sample events, the protocol bodies, and both sides as comparable requests.

A request is compared as ``(method, path, headers, body)`` with the headers Klaviyo reads but
the key (``Content-Type``, ``Accept``, ``revision``, and the ``Authorization`` scheme): the
protocol answer carries the destination's key, the webhook ``KLAVIYO_PRIVATE_API_KEY``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from klaviyo_destination.emulator import EmulatorStore, create_emulator
from klaviyo_destination.js import JsonObject
from klaviyo_destination.settings import Settings
from tests.helpers.apps import Build, served

LIST: Final = "XUepkK"
GROUP_LIST: Final = "GroupList9"
KEY: Final = "pk_v23_test"
#: The headers compared, as Klaviyo's clients spell them.
COMPARED: Final = ("Content-Type", "Accept", "revision")

Sent = tuple[str, str, tuple[tuple[str, str], ...], str]


def identify(user: str, *, subscribe: bool | None = True, **traits: Any) -> JsonObject:
    """An identify as on RudderStack's Klaviyo page; ``subscribe=None``: no list job."""
    properties: JsonObject = {"listId": LIST, "consent": ["email"]}
    if subscribe is not None:
        properties["subscribe"] = subscribe
    return {
        "type": "identify",
        "userId": user,
        "messageId": f"identify-{user}-{subscribe}",
        "traits": {
            "email": f"{user}@example.com",
            "firstName": "Ada",
            "city": "London",
            "properties": properties,
            **traits,
        },
        "timestamp": "2026-11-28T12:00:00Z",
    }


def track(user: str, name: str = "Product Added", *, kind: str = "track") -> JsonObject:
    event: JsonObject = {
        "type": kind,
        "userId": user,
        "messageId": f"{kind}-{user}-{name}",
        "properties": {"value": 14, "currency": "EUR", "sku": "G-32"},
        "context": {"traits": {"email": f"{user}@example.com"}},
        "timestamp": "2026-11-28T12:01:00Z",
    }
    event["event" if kind == "track" else "name"] = name
    return event


def group(user: str, *, subscribe: bool = True, list_id: str = GROUP_LIST) -> JsonObject:
    return {
        "type": "group",
        "groupId": list_id,
        "userId": user,
        "messageId": f"group-{user}-{subscribe}",
        "traits": {"subscribe": subscribe, "email": f"{user}@example.com", "consent": "email"},
    }


def every_kind(user: str = "ada") -> list[JsonObject]:
    """Identify with subscribe, track, screen, group, identify with unsubscribe, group leaving."""
    return [
        identify(user),
        track(user),
        track(user, "Home", kind="screen"),
        group(user),
        identify(user, subscribe=False),
        group(user, subscribe=False),
    ]


def destination(api_version: str) -> JsonObject:
    config = {"privateApiKey": KEY, "apiVersion": api_version, "consent": ["email"]}
    return {"ID": "dest-1", "Name": "klaviyo", "Config": config}


def processor_body(events: Sequence[JsonObject], api_version: str) -> list[JsonObject]:
    return [
        {
            "message": event,
            "metadata": {"jobId": number, "userId": event.get("userId")},
            "destination": destination(api_version),
        }
        for number, event in enumerate(events, 1)
    ]


def router_body(events: Sequence[JsonObject], api_version: str) -> JsonObject:
    return {"destType": "klaviyo", "input": processor_body(events, api_version)}


def from_processor(items: Iterable[JsonObject]) -> list[Sent]:
    """The requests of a processor answer, in order (an error item fails the comparison)."""
    return [_envelope(item["output"]) for item in items]


def from_router(outputs: Iterable[JsonObject]) -> list[Sent]:
    """The requests of a router answer, output by output."""
    sent: list[Sent] = []
    for output in outputs:
        batched = output["batchedRequest"]
        sent.extend(_envelope(r) for r in (batched if isinstance(batched, list) else [batched]))
    return sent


def from_dry_run(requests: Iterable[JsonObject]) -> list[Sent]:
    """The requests ``/v1/transform`` shows for one event (the key masked)."""
    return [_envelope({**r, "endpoint": r["url"], "body": {"JSON": r["body"]}}) for r in requests]


def from_emulator(recorded: Iterable[JsonObject]) -> list[Sent]:
    """What arrived at the emulator (``/__emulator/requests``' entries), in order."""
    sent = []
    for entry in recorded:
        headers = {name.lower(): value for name, value in entry["headers"].items()}
        shown = {name: headers.get(name.lower(), "") for name in COMPARED}
        scheme = headers.get("authorization", "").partition(" ")[0]
        sent.append(_sent(entry["method"], entry["path"], shown, scheme, entry["body"]))
    return sent


def _envelope(output: JsonObject) -> Sent:
    shown = {name: output["headers"][name] for name in COMPARED}
    scheme = output["headers"]["Authorization"].partition(" ")[0]
    path = urlsplit(output["endpoint"]).path
    return _sent(output["method"], path, shown, scheme, output["body"]["JSON"])


def _sent(method: str, path: str, shown: dict[str, str], scheme: str, body: Any) -> Sent:
    headers = (*sorted(shown.items()), ("Authorization", scheme))
    return method, path, headers, json.dumps(body, sort_keys=True)


def unordered(sent: Iterable[Sent]) -> list[Sent]:
    return sorted(sent)


@dataclass
class Rig:
    """The service delivering to the emulator in process, and the emulator's control surface."""

    service: httpx.AsyncClient
    emulator: httpx.AsyncClient
    store: EmulatorStore

    async def deliver(self, events: Any) -> httpx.Response:
        return await self.service.post("/v1/events", json=events)

    async def arrived(self) -> list[JsonObject]:
        """What reached the emulator since the last call (its recorded requests, forgotten)."""
        recorded: list[JsonObject] = (await self.emulator.get("/__emulator/requests")).json()[
            "requests"
        ]
        await self.emulator.delete("/__emulator/requests")
        return recorded

    async def state(self) -> JsonObject:
        state: JsonObject = (await self.emulator.get("/__emulator/state")).json()
        return state

    async def fault(self, **spec: Any) -> None:
        (await self.emulator.post("/__emulator/faults", json=spec)).raise_for_status()

    async def processor_items(self, events: list[JsonObject], api_version: str) -> list[JsonObject]:
        """The processor route's answer for ``events``: one item per request, or an error."""
        body = processor_body(events, api_version)
        response = await self.service.post("/v0/destinations/klaviyo", json=body)
        assert response.status_code == 200, response.text
        items: list[JsonObject] = response.json()
        return items

    async def processor(self, events: list[JsonObject], api_version: str) -> list[JsonObject]:
        items = await self.processor_items(events, api_version)
        assert all(item["statusCode"] == 200 for item in items), items
        return items

    async def router(self, events: list[JsonObject], api_version: str) -> list[JsonObject]:
        body = router_body(events, api_version)
        response = await self.service.post("/routerTransform", json=body)
        assert response.status_code == 200, response.text
        outputs: list[JsonObject] = response.json()["output"]
        assert all(output["statusCode"] == 200 for output in outputs), outputs
        return outputs


def settings_at(api_version: str, **overrides: Any) -> Settings:
    return Settings(
        klaviyo_private_api_key=SecretStr("pk_webhook_v23"),
        klaviyo_base_url="http://emulator.embedded",
        klaviyo_api_version=api_version,
        **overrides,
    )


@contextlib.asynccontextmanager
async def rig(build: Build, settings: Settings) -> AsyncIterator[Rig]:
    """The service built with ``settings`` delivering to a fresh emulator in process (its rate
    limits off: the service's own limiter is what is under test)."""
    store = EmulatorStore(seed=11, rate_limits=None)
    transport = httpx.ASGITransport(app=create_emulator(store))
    async with (
        served(build(settings, transport=transport)) as service,
        httpx.AsyncClient(transport=transport, base_url="http://emulator.embedded") as control,
    ):
        yield Rig(service, control, store)
