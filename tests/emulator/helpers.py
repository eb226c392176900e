"""Helpers for the emulator tests: Klaviyo request-body builders, a controllable clock, an
in-process client and error unpacking, and a loopback uvicorn server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

import httpx
import uvicorn
from fastapi import FastAPI

KEY: Final = "pk_0123456789abcdef0123456789abcdef01"
HEADERS: Final = {
    "Authorization": f"Klaviyo-API-Key {KEY}",
    "revision": "2023-02-22",
    "Accept": "application/json",
}
#: 2023-11-14T22:13:20.25Z: a quarter into a burst second, 20.25 s into a steady minute.
EPOCH: Final = 1_700_000_000.25
ULID: Final = r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$"

Json = dict[str, Any]

INVALID = {"status": 400, "code": "invalid", "title": "Invalid input.", "links": {}, "meta": {}}


class FakeClock:
    def __init__(self, now: float = EPOCH) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSleep:
    """Records what injected latency asked for instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def profile_body(**attributes: Any) -> Json:
    return {"data": {"type": "profile", "attributes": attributes}}


def patch_body(profile_id: str, **attributes: Any) -> Json:
    return {"data": {"type": "profile", "id": profile_id, "attributes": attributes}}


def event_body(profile: Json, metric: str = "Order Completed", **attributes: Any) -> Json:
    body: Json = {"metric": {"name": metric}, "properties": {}, "profile": profile}
    return {"data": {"type": "event", "attributes": body | attributes}}


def subscription_body(list_id: str | None, *subscriptions: Json) -> Json:
    attributes: Json = {"subscriptions": list(subscriptions)}
    if list_id is not None:
        attributes["list_id"] = list_id
    return {"data": {"type": "profile-subscription-bulk-create-job", "attributes": attributes}}


def without_id(error: Json) -> Json:
    """An error object minus its random ``id`` (checked separately), for whole-object asserts."""
    assert isinstance(error.pop("id"), str)
    return error


@contextmanager
def loopback_server(app: FastAPI) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free 127.0.0.1 port in a thread; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # log_config=None: leave the test run's logging alone.
    config = uvicorn.Config(app, lifespan="off", log_config=None, log_level="critical")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:  # readiness poll, not a timing assertion
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def connect(app: FastAPI, headers: Mapping[str, str] | None = None) -> httpx.AsyncClient:
    """An in-process client; without ``headers`` it sends no auth or revision."""
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://emulator", headers=headers)


async def create(client: httpx.AsyncClient, **attributes: Any) -> str:
    response = await client.post("/api/profiles", json=profile_body(**attributes))
    assert response.status_code == 201, response.text
    profile_id: str = response.json()["data"]["id"]
    return profile_id


async def events(client: httpx.AsyncClient) -> list[Json]:
    data: list[Json] = (await client.get("/api/events")).json()["data"]
    return [e["attributes"] for e in data]


async def only_error(response: httpx.Response, status: int) -> Json:
    assert response.status_code == status, response.text
    errors: list[Json] = response.json()["errors"]
    assert len(errors) == 1, errors
    return without_id(errors[0])


def revision_headers(revision: str) -> dict[str, str]:
    return HEADERS | {"revision": revision}


def import_body(profile_id: str | None = None, meta: Json | None = None, **attributes: Any) -> Json:
    """A profile-import (upsert) body of the revisions after 2023-02-22."""
    data: Json = {"type": "profile", "attributes": attributes}
    if profile_id is not None:
        data["id"] = profile_id
    if meta is not None:
        data["meta"] = meta
    return {"data": data}


def newer_event_body(profile: Json, metric: str = "Order Completed", **attributes: Any) -> Json:
    """An event in the newer shape: ``metric.data.attributes.name``, ``profile.data``."""
    body: Json = {
        "properties": {},
        "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
        "profile": {"data": {"type": "profile", "attributes": profile}},
    }
    return {"data": {"type": "event", "attributes": body | attributes}}


def job_body(kind: str, list_id: str | None, *profiles: Json) -> Json:
    """A bulk subscribe (``create``) or unsubscribe (``delete``) job of the newer revisions."""
    data: Json = {
        "type": f"profile-subscription-bulk-{kind}-job",
        "attributes": {
            "profiles": {"data": [{"type": "profile", "attributes": p} for p in profiles]}
        },
    }
    if list_id is not None:
        data["relationships"] = {"list": {"data": {"type": "list", "id": list_id}}}
    return {"data": data}


def marketing(consent: str, *channels: str) -> Json:
    """``subscriptions`` granting or revoking marketing consent on ``channels``."""
    return {channel: {"marketing": {"consent": consent}} for channel in channels}
