"""Emulator fault injection: status faults, HTML 403/410, path prefixes, latency, error rate,
dropped connections and unusable fault specs.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from klaviyo_destination.emulator import EmulatorStore
from tests.emulator.helpers import (
    HEADERS,
    FakeSleep,
    Json,
    connect,
    event_body,
    only_error,
    profile_body,
)

pytestmark = pytest.mark.anyio


async def test_status_fault_answers_the_next_n_requests(client: httpx.AsyncClient) -> None:
    fault = {"status": 503, "count": 2, "retry_after": 2}
    assert (await client.post("/__emulator/faults", json=fault)).status_code == 201

    faulted = [await client.post("/api/profiles", json=profile_body(email="a@b.co")) for _ in "ab"]
    passed = await client.post("/api/profiles", json=profile_body(email="a@b.co"))

    for response in faulted:
        assert response.headers["Retry-After"] == "2"
        assert (await only_error(response, 503))["code"] == "service_unavailable"
    assert passed.status_code == 201
    recorded = (await client.get("/__emulator/requests")).json()["requests"]
    assert [(r["status"], r["fault"]) for r in recorded] == [
        (503, "status:503"),
        (503, "status:503"),
        (201, None),
    ]


async def test_proxy_html_403_and_retired_revision_410(client: httpx.AsyncClient) -> None:
    html = "<html><body>Attention Required! | Cloudflare</body></html>"
    await client.post(
        "/__emulator/faults",
        json={"status": 403, "body": html, "content_type": "text/html; charset=UTF-8"},
    )
    await client.post("/__emulator/faults", json={"status": 410})

    blocked = await client.get("/api/profiles")
    gone = await client.get("/api/profiles")

    assert (blocked.status_code, blocked.text) == (403, html)
    assert blocked.headers["content-type"] == "text/html; charset=UTF-8"
    assert (await only_error(gone, 410))["code"] == "gone"


async def test_fault_with_path_prefix_skips_other_paths(client: httpx.AsyncClient) -> None:
    await client.post("/__emulator/faults", json={"status": 500, "path": "/api/events"})

    profile = await client.post("/api/profiles", json=profile_body(email="a@b.co"))
    event = await client.post("/api/events", json=event_body({"$email": "a@b.co"}))
    control = await client.get("/__emulator/state")

    assert (profile.status_code, event.status_code, control.status_code) == (201, 500, 200)


async def test_latency_applies_until_cleared(client: httpx.AsyncClient, sleep: FakeSleep) -> None:
    await client.post("/__emulator/faults", json={"latency_ms": 50})
    await client.get("/api/profiles")
    await client.get("/api/events")
    await client.delete("/__emulator/faults")
    await client.get("/api/profiles")

    assert sleep.calls == [0.05, 0.05]


@pytest.mark.parametrize(("rate", "expected"), [(0.0, {200}), (1.0, {500})])
async def test_error_rate_extremes(
    client: httpx.AsyncClient, rate: float, expected: set[int]
) -> None:
    await client.post("/__emulator/faults", json={"error_rate": rate, "status": 500, "seed": 1})

    statuses = {(await client.get("/api/events")).status_code for _ in range(20)}

    assert statuses == expected


async def test_error_rate_is_repeatable_with_a_seed(app: FastAPI, store: EmulatorStore) -> None:
    runs = []
    async with connect(app, HEADERS) as client:
        for _ in range(2):
            store.reset()
            await client.post(
                "/__emulator/faults", json={"error_rate": 0.5, "status": 500, "seed": 3}
            )
            runs.append([(await client.get("/api/events")).status_code for _ in range(30)])

    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 500}


async def test_drop_connection_in_process_is_a_transport_error(client: httpx.AsyncClient) -> None:
    await client.post("/__emulator/faults", json={"drop_connection": True, "count": 1})

    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/api/profiles", json=profile_body(email="a@b.co"))
    retried = await client.post("/api/profiles", json=profile_body(email="a@b.co"))

    assert retried.status_code == 201  # the dropped request was not applied
    recorded = (await client.get("/__emulator/requests")).json()["requests"]
    assert [(r["status"], r["fault"]) for r in recorded] == [(None, "drop_connection"), (201, None)]


async def test_drop_after_processing_applies_the_request(client: httpx.AsyncClient) -> None:
    await client.post(
        "/__emulator/faults", json={"drop_connection": True, "after_processing": True}
    )

    with pytest.raises(httpx.TransportError):
        await client.post("/api/profiles", json=profile_body(email="a@b.co"))
    retried = await client.post("/api/profiles", json=profile_body(email="a@b.co"))

    assert retried.status_code == 409


@pytest.mark.parametrize(
    "spec",
    [{}, {"status": 503, "drop_connection": True}, {"error_rate": 0.5}, {"status": 99},
     {"status": 500, "surprise": 1}],
    ids=["empty", "status-and-drop", "rate-without-status", "status-99", "unknown-member"],
)  # fmt: skip
async def test_unusable_fault_spec_is_400(client: httpx.AsyncClient, spec: Json) -> None:
    response = await client.post("/__emulator/faults", json=spec)

    assert (await only_error(response, 400))["code"] == "invalid"
    assert (await client.get("/__emulator/faults")).json()["queued"] == []


async def test_status_fault_with_headers_answers_with_them(client: httpx.AsyncClient) -> None:
    location = "https://elsewhere.example/api/events"
    await client.post("/__emulator/faults", json={"status": 302, "headers": {"Location": location}})

    response = await client.post("/api/events", json=event_body({"$email": "a@b.co"}))

    assert (response.status_code, response.headers["location"]) == (302, location)


async def test_status_fault_after_processing_applies_the_request_first(
    client: httpx.AsyncClient,
) -> None:
    # What a corrupt gzip answer from a proxy looks like: Klaviyo did it, the answer is junk.
    spec = {
        "status": 201,
        "after_processing": True,
        "body": "this is not gzip",
        "headers": {"Content-Encoding": "gzip"},
    }
    await client.post("/__emulator/faults", json=spec)

    with pytest.raises(httpx.DecodingError):
        await client.post("/api/profiles", json=profile_body(email="a@b.co"))
    retried = await client.post("/api/profiles", json=profile_body(email="a@b.co"))

    assert retried.status_code == 409  # the faulted request was applied


async def test_status_fault_with_a_body_size_streams_that_many_bytes(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await client.post("/__emulator/faults", json={"status": 202, "body_size": 3_000_000})
    request = orjson.dumps(event_body({"$email": "a@b.co"}))
    received = [{"type": "http.request", "body": request, "more_body": False}]
    sent: list[Json] = []

    async def receive() -> Json:
        return received.pop() if received else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    headers = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
    scope = {"type": "http", "method": "POST", "path": "/api/events", "headers": headers}
    await app({**scope, "query_string": b"", "root_path": ""}, receive, send)

    assert sent[0]["status"] == 202
    sizes = [len(m["body"]) for m in sent if m["type"] == "http.response.body"]
    assert sum(sizes) == 3_000_000
    assert len(sizes) > 1  # streamed, not built in memory first


@pytest.mark.parametrize(
    "spec",
    [{"status": 202, "body": "x", "body_size": 10}, {"drop_connection": True, "headers": {}}],
    ids=["body-and-size", "drop-with-headers"],
)
async def test_fault_spec_with_members_that_cannot_go_together_is_400(
    client: httpx.AsyncClient, spec: Json
) -> None:
    response = await client.post("/__emulator/faults", json=spec)

    assert (await only_error(response, 400))["code"] == "invalid"
