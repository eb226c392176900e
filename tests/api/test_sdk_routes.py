"""The RudderStack HTTP API on the service, in process: /v1/batch and /v1/<type>, the SDKs'
Basic auth, compressed bodies, and answers an SDK can act on (Klaviyo played by respx)."""

from __future__ import annotations

import base64
import gzip
import logging
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import respx
from pydantic import SecretStr

from klaviyo_destination.settings import Settings
from support.events import signed_up
from tests.helpers.apps import Build, served

TOKEN = "write-key-SECRET-1"
KEY = "pk_sdk_routes"
BASE = "https://a.klaviyo.com"
TRACK = signed_up()
FORM = "application/x-www-form-urlencoded"  # how the Node SDK labels its gzip bodies

pytestmark = pytest.mark.anyio


def basic(username: str, password: str = "") -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


SDK_AUTH = basic(TOKEN)  # the write key as username, empty password


@pytest.fixture
def klaviyo() -> respx.MockRouter:
    router = respx.MockRouter(base_url=BASE, assert_all_called=False)
    router.post("/api/events").respond(202)
    return router


@pytest.fixture
async def client(build: Build, klaviyo: respx.MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        klaviyo_private_api_key=SecretStr(KEY),
        webhook_token=SecretStr(TOKEN),
        max_body_bytes=5 * 1024 * 1024,
        max_attempts=2,
        delivery_deadline=2.0,
        backoff_initial=0.01,
        backoff_max=0.02,
    )
    app = build(settings, transport=httpx.MockTransport(klaviyo.async_handler))
    async with served(app, "http://s") as c:
        yield c


async def test_batch_as_the_sdks_send_it(client: httpx.AsyncClient) -> None:
    body = {"batch": [TRACK, {**TRACK, "messageId": "m2"}], "sentAt": "2026-12-02T00:00:00Z"}
    response = await client.post("/v1/batch", json=body, headers=SDK_AUTH)
    assert response.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == ["delivered", "delivered"]


async def test_a_batch_with_permanent_rejections_is_not_resent(
    client: httpx.AsyncClient,
) -> None:
    """SDKs resend on anything but 2xx: a rejected event must not bring its batch back."""
    batch = [TRACK, {"type": "page", "userId": "u1", "messageId": "p1"}]
    response = await client.post("/v1/batch", json={"batch": batch}, headers=SDK_AUTH)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["delivered", "rejected"]
    assert results[1]["error"]["message"] == "Event type page is not supported"
    metrics = (await client.get("/metrics")).text
    assert 'klaviyo_destination_events_total{outcome="rejected",type="page"} 1.0' in metrics


EMAIL = "ada.private@example.com"
PHONE = "+14155550123"
NOT_DELIVERED = "klaviyo_destination_events_not_delivered_total"


def _undelivered(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.endswith("webhook") and r.msg == "event %s: %s"]


async def test_each_event_an_sdk_batch_rejects_or_fails_is_logged_once_and_counted(
    client: httpx.AsyncClient, klaviyo: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    """The SDKs log "uploaded successfully" on the 200 of a batch with rejections: the log
    and the metrics are where they show (issue 27, first contact 2). No value of the event
    (its email, phone, properties) and no error message reaches the line."""
    caplog.set_level(logging.DEBUG)
    klaviyo.post("/api/profiles").respond(
        400, json={"errors": [{"code": "invalid", "detail": f"bad {EMAIL}", "status": 400}]}
    )
    traits = {"email": EMAIL, "phone": PHONE}
    batch = [
        TRACK,
        {"type": "page", "userId": "u1", "messageId": "p1", "context": {"traits": traits}},
        {"type": "identify", "userId": "u2", "messageId": "i1", "traits": traits},
        {"type": "track", "userId": "u3", "messageId": "t1", "event": "", "properties": traits},
    ]

    response = await client.post("/v1/batch", json={"batch": batch}, headers=SDK_AUTH)

    assert response.status_code == 200
    records = _undelivered(caplog)
    assert [(r.levelno, vars(r)["message_id"]) for r in records] == [
        (logging.WARNING, "p1"),
        (logging.WARNING, "i1"),
        (logging.WARNING, "t1"),
    ]
    said = [(vars(r)["type"], vars(r)["error"], vars(r)["field"]) for r in records]
    assert said == [
        ("page", "unsupported_event", "type"),
        ("identify", "klaviyo_rejected", None),
        ("track", "invalid_event", "event"),
    ]
    for record in caplog.records:
        text = record.getMessage() + repr(vars(record))
        assert EMAIL not in text
        assert PHONE not in text
    metrics = (await client.get("/metrics")).text
    for reason in ("unsupported_event", "klaviyo_rejected", "invalid_event"):
        labels = f'{{outcome="rejected",reason="{reason}"}}'
        assert f"{NOT_DELIVERED}{labels} 1.0" in metrics


async def test_a_failed_event_is_logged_and_counted_by_its_reason(
    client: httpx.AsyncClient, klaviyo: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    klaviyo.post("/api/events").respond(503)
    response = await client.post("/v1/batch", json={"batch": [TRACK]}, headers=SDK_AUTH)

    assert response.status_code == 503
    [record] = _undelivered(caplog)
    assert record.levelno == logging.WARNING
    assert (record.getMessage(), vars(record)["message_id"]) == (
        "event failed: klaviyo_unavailable",
        TRACK["messageId"],
    )
    metrics = (await client.get("/metrics")).text
    labels = '{outcome="failed",reason="klaviyo_unavailable"}'
    assert f"{NOT_DELIVERED}{labels} 1.0" in metrics


async def test_a_retryable_failure_asks_for_a_resend_in_the_sdks_terms(
    client: httpx.AsyncClient, klaviyo: respx.MockRouter
) -> None:
    klaviyo.post("/api/events").respond(503)
    response = await client.post("/v1/batch", json={"batch": [TRACK]}, headers=SDK_AUTH)
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert body["code"] == "klaviyo_unavailable"  # rudder-sdk-python reads payload['code']
    assert body["message"]
    assert body["results"][0]["status"] == "failed"


@pytest.mark.parametrize("event_type", ["identify", "track", "screen", "group"])
async def test_single_event_routes_take_the_type_from_the_path(
    client: httpx.AsyncClient, klaviyo: respx.MockRouter, event_type: str
) -> None:
    klaviyo.post("/api/profiles").respond(201, json={"data": {"id": "P1"}})
    klaviyo.post("/api/profile-subscription-bulk-create-jobs").respond(202)
    specific: dict[str, dict[str, Any]] = {
        "identify": {"traits": {"email": "ada@example.com"}},
        "track": {"event": "Signed Up"},
        "screen": {"event": "Home"},
        "group": {"groupId": "L1", "traits": {"subscribe": True, "email": "ada@example.com"}},
    }
    event = {"userId": "u1", "messageId": "m1", "properties": {"n": 1}, **specific[event_type]}
    response = await client.post(f"/v1/{event_type}", json=event, headers=SDK_AUTH)
    assert response.status_code == 200
    [result] = response.json()["results"]
    assert (result["type"], result["status"]) == (event_type, "delivered")


@pytest.mark.parametrize("event_type", ["page", "alias"])
async def test_page_and_alias_are_rejected_per_event(
    client: httpx.AsyncClient, event_type: str
) -> None:
    response = await client.post(
        f"/v1/{event_type}", json={"userId": "u1", "previousId": "u0"}, headers=SDK_AUTH
    )
    assert response.status_code == 200
    [result] = response.json()["results"]
    assert result["status"] == "rejected"
    assert result["error"]["message"] == f"Event type {event_type} is not supported"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (basic(TOKEN), 200),
        (basic("", TOKEN), 200),
        ({"Authorization": f"Bearer {TOKEN}"}, 200),
        (basic("wrong"), 401),
        (basic("wrong", "also-wrong"), 401),
        ({}, 401),
    ],
    ids=["sdk-username", "password", "bearer", "wrong-username", "wrong-both", "none"],
)
async def test_the_write_key_as_basic_username(
    client: httpx.AsyncClient, headers: dict[str, str], status: int
) -> None:
    response = await client.post("/v1/batch", json={"batch": [TRACK]}, headers=headers)
    assert response.status_code == status
    if status == 401:
        body = response.json()
        assert (body["code"], body["error"]["code"]) == ("unauthorized", "unauthorized")
        assert TOKEN not in response.text


def _deflate(data: bytes, *, raw: bool) -> bytes:
    compressor = zlib.compressobj(wbits=-15 if raw else 15)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", lambda d: _deflate(d, raw=False)),
        ("deflate", lambda d: _deflate(d, raw=True)),
        ("GZIP", gzip.compress),
    ],
    ids=["gzip", "deflate-zlib", "deflate-raw", "case"],
)
@pytest.mark.parametrize("path", ["/v1/batch", "/v1/events", "/v1/transform"])
async def test_compressed_bodies_whatever_the_content_type(
    client: httpx.AsyncClient, path: str, encoding: str, encode: Any
) -> None:
    body = encode(orjson.dumps({"batch": [TRACK]}))
    headers = {**SDK_AUTH, "Content-Encoding": encoding, "Content-Type": FORM}
    response = await client.post(path, content=body, headers=headers)
    assert response.status_code == 200, response.text


async def test_an_unknown_encoding_is_a_415_naming_it(client: httpx.AsyncClient) -> None:
    headers = {**SDK_AUTH, "Content-Encoding": "br"}
    response = await client.post("/v1/batch", content=b"...", headers=headers)
    assert response.status_code == 415
    body = response.json()
    assert body["code"] == "unsupported_encoding"
    assert "'br'" in body["message"]
    assert body["error"]["field"] == "Content-Encoding"


@pytest.mark.parametrize(
    "body",
    [b"not gzip at all", gzip.compress(orjson.dumps({"batch": [TRACK]}))[:-12]],
    ids=["corrupt", "truncated"],
)
async def test_broken_gzip_is_a_400(client: httpx.AsyncClient, body: bytes) -> None:
    headers = {**SDK_AUTH, "Content-Encoding": "gzip"}
    response = await client.post("/v1/batch", content=body, headers=headers)
    assert response.status_code == 400
    assert "gzip" in response.json()["message"]


async def test_a_decompression_bomb_is_a_413_that_costs_no_memory(
    client: httpx.AsyncClient,
) -> None:
    bomb = gzip.compress(b" " * (200 * 1024 * 1024), compresslevel=9)  # 200 MB of spaces
    assert len(bomb) < 1024 * 1024
    headers = {**SDK_AUTH, "Content-Encoding": "gzip"}
    tracemalloc.start()
    try:
        response = await client.post("/v1/batch", content=bomb, headers=headers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 413
    assert "decompressed" in response.json()["message"]
    assert peak < 40 * 1024 * 1024  # the 5 MB limit, a few copies of it, never the 200 MB


async def test_without_a_token_an_encoded_body_passes_whatever_its_type(build: Build) -> None:
    """No token: loopback only, and a POST must be JSON, or content-encoded (no web page can
    send ``Content-Encoding`` without a preflight), as the Node SDK's gzip forms are."""
    klaviyo = respx.MockRouter(base_url=BASE, assert_all_called=False)
    klaviyo.post("/api/events").respond(202)
    settings = Settings(klaviyo_private_api_key=SecretStr(KEY))
    app = build(settings, transport=httpx.MockTransport(klaviyo.async_handler))
    body = orjson.dumps({"batch": [TRACK]})
    async with served(app) as client:
        encoded = {"Content-Encoding": "gzip", "Content-Type": FORM}
        answer = await client.post("/v1/batch", content=gzip.compress(body), headers=encoded)
        assert answer.status_code == 200
        refused = await client.post("/v1/batch", content=body, headers={"Content-Type": FORM})
        assert refused.status_code == 415
        assert refused.json()["error"]["field"] == "Content-Type"
