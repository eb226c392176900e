"""The HTTP API over ASGI: status codes, both body shapes, auth, limits, protocol endpoints."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from klaviyo_destination.settings import Settings
from support.events import signed_up
from support.rudder_server import compact_processor, compact_router
from tests.helpers.apps import Build, served
from tests.helpers.conformance import (
    V2V3_DIR,
    case_files,
    config_of,
    expected_of,
    load,
    lookups_of,
    normalise_processor,
    normalise_router,
    processor_jobs,
    router_jobs,
    unordered,
)

KEY = "pk_api_test_secret"
TOKEN = "hook-token-123"
BASE = "https://a.klaviyo.com"

TRACK = signed_up()
PAGE = {"type": "page", "userId": "u2", "messageId": "m2"}


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "klaviyo_private_api_key": SecretStr(KEY),
        "klaviyo_list_id": "L1",
        "max_attempts": 2,
        "delivery_deadline": 2.0,
        "backoff_initial": 0.01,
        "backoff_max": 0.02,
    }
    values.update(overrides)
    return Settings(**values)


async def _client(
    build: Build, settings: Settings, router: respx.MockRouter
) -> AsyncIterator[httpx.AsyncClient]:
    app = build(settings, transport=httpx.MockTransport(router.async_handler))
    async with served(app) as c:
        yield c


@pytest.fixture
def klaviyo() -> respx.MockRouter:
    return respx.MockRouter(base_url=BASE, assert_all_called=False)


@pytest.fixture
async def client(build: Build, klaviyo: respx.MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(build, _settings(), klaviyo):
        yield c


@pytest.fixture
async def secured(build: Build, klaviyo: respx.MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    async for c in _client(build, _settings(webhook_token=SecretStr(TOKEN)), klaviyo):
        yield c


# --- /v1/events status codes -------------------------------------------------------------------


@pytest.mark.anyio
async def test_single_event_delivered_is_200(
    client: httpx.AsyncClient, klaviyo: respx.MockRouter
) -> None:
    route = klaviyo.post("/api/events").respond(202)
    response = await client.post("/v1/events", json=TRACK)
    assert response.status_code == 200
    assert response.json() == {
        "results": [
            {
                "messageId": "m1",
                "type": "track",
                "status": "delivered",
                "requests": [{"method": "POST", "path": "/api/events", "status": 202}],
            }
        ]
    }
    sent = route.calls.last.request
    assert sent.headers["authorization"] == f"Klaviyo-API-Key {KEY}"
    assert sent.headers["revision"] == "2023-02-22"


@pytest.mark.anyio
async def test_single_event_rejected_by_mapping_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/events", json=PAGE)
    assert response.status_code == 400
    [result] = response.json()["results"]
    assert result["status"] == "rejected"
    assert result["error"]["message"] == "Event type page is not supported"
    assert result["error"]["field"] == "type"


@pytest.mark.anyio
async def test_single_event_rejected_by_klaviyo_carries_klaviyo_reason(
    client: httpx.AsyncClient, klaviyo: respx.MockRouter
) -> None:
    error = {
        "id": "e-1",
        "status": 400,
        "code": "invalid",
        "title": "Invalid input.",
        "detail": "bad metric",
        "source": {"pointer": "/data/attributes/metric"},
    }
    klaviyo.post("/api/events").respond(400, json={"errors": [error]})
    response = await client.post("/v1/events", json=TRACK)
    assert response.status_code == 400
    [result] = response.json()["results"]
    assert result["error"]["klaviyo_errors"] == [
        {
            "id": "e-1",
            "code": "invalid",
            "detail": "bad metric",
            "source": {"pointer": "/data/attributes/metric"},
        }
    ]


@pytest.mark.anyio
async def test_throttled_single_event_is_429_with_retry_after(
    client: httpx.AsyncClient, klaviyo: respx.MockRouter
) -> None:
    # Klaviyo asks for 30 s, more than the 2 s deadline: answer at once instead of sleeping.
    klaviyo.post("/api/events").respond(429, headers={"Retry-After": "30"}, json={"errors": []})
    response = await client.post("/v1/events", json=TRACK)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "30"
    assert response.json()["results"][0]["status"] == "failed"


@pytest.mark.anyio
async def test_unavailable_single_event_is_503_with_retry_after(
    client: httpx.AsyncClient, klaviyo: respx.MockRouter
) -> None:
    route = klaviyo.post("/api/events").respond(503)
    response = await client.post("/v1/events", json=TRACK)
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) >= 1
    assert route.call_count == 2  # max_attempts


@pytest.mark.anyio
async def test_batch_all_delivered_is_200(
    client: httpx.AsyncClient, klaviyo: respx.MockRouter
) -> None:
    klaviyo.post("/api/events").respond(202)
    other = {**TRACK, "messageId": "m3", "userId": "u3"}
    response = await client.post("/v1/events", json={"batch": [TRACK, other]})
    assert response.status_code == 200
    assert [r["messageId"] for r in response.json()["results"]] == ["m1", "m3"]


@pytest.mark.anyio
async def test_batch_mixed_is_207_in_input_order(
    client: httpx.AsyncClient, klaviyo: respx.MockRouter
) -> None:
    klaviyo.post("/api/events").respond(202)
    response = await client.post("/v1/events", json=[PAGE, TRACK])
    assert response.status_code == 207
    assert [r["status"] for r in response.json()["results"]] == ["rejected", "delivered"]


@pytest.mark.anyio
async def test_batch_all_rejected_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/events", json=[PAGE, {**PAGE, "messageId": "m9"}])
    assert response.status_code == 400


@pytest.mark.anyio
async def test_batch_with_a_retryable_failure_is_503(
    client: httpx.AsyncClient, klaviyo: respx.MockRouter
) -> None:
    klaviyo.post("/api/events").respond(500)
    response = await client.post("/v1/events", json=[PAGE, TRACK])
    assert response.status_code == 503
    assert [r["status"] for r in response.json()["results"]] == ["rejected", "failed"]


@pytest.mark.anyio
async def test_identify_created_sends_no_patch(
    client: httpx.AsyncClient, klaviyo: respx.MockRouter
) -> None:
    klaviyo.post("/api/profiles").respond(201, json={"data": {"id": "P1", "attributes": {}}})
    patch = klaviyo.patch("/api/profiles/P1").respond(200, json={"data": {"id": "P1"}})
    identify = {"type": "identify", "userId": "u1", "traits": {"email": "ada@example.com"}}
    response = await client.post("/v1/events", json=identify)
    assert response.status_code == 200
    assert not patch.called


# --- /v1/transform ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_dry_run_masks_the_key_and_sends_nothing(
    client: httpx.AsyncClient, klaviyo: respx.MockRouter
) -> None:
    response = await client.post("/v1/transform", json=TRACK)
    assert response.status_code == 200
    [result] = response.json()["results"]
    [request] = result["requests"]
    assert request["url"] == f"{BASE}/api/events"
    assert request["headers"]["Authorization"] == "Klaviyo-API-Key ***"
    assert request["body"]["data"]["attributes"]["unique_id"] == "m1"
    assert KEY not in response.text
    assert not klaviyo.calls


@pytest.mark.anyio
async def test_dry_run_reports_errors_per_event(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/transform", json=[TRACK, PAGE])
    assert response.status_code == 207
    assert [r["status"] for r in response.json()["results"]] == ["planned", "rejected"]


# --- auth ---------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({}, 401, id="missing"),
        pytest.param({"Authorization": "Bearer wrong"}, 401, id="wrong-bearer"),
        pytest.param({"Authorization": f"Bearer {TOKEN}"}, 200, id="bearer"),
        pytest.param(
            {"Authorization": "Basic " + base64.b64encode(f"rudder:{TOKEN}".encode()).decode()},
            200,
            id="basic-token-as-password",
        ),
        pytest.param(
            {"Authorization": "Basic " + base64.b64encode(b"rudder:nope").decode()},
            401,
            id="wrong-basic",
        ),
        pytest.param({"Authorization": "Basic !!notbase64"}, 401, id="garbled-basic"),
    ],
)
async def test_webhook_token(
    secured: httpx.AsyncClient, headers: dict[str, str], status: int
) -> None:
    response = await secured.post("/v1/transform", json=TRACK, headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.json()["error"]["code"] == "unauthorized"
        assert TOKEN not in response.text


@pytest.mark.anyio
async def test_auth_happens_before_the_body_is_read(secured: httpx.AsyncClient) -> None:
    response = await secured.post("/v1/events", content=b"{not json")
    assert response.status_code == 401


# --- limits and malformed input -----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        pytest.param(b"{nope", 400, "invalid_request", id="invalid-json"),
        pytest.param(
            b'{"type": "track", "event": "\xff"}', 400, "invalid_request", id="invalid-utf8"
        ),
        pytest.param(b"", 400, "invalid_request", id="empty"),
        pytest.param(b"42", 400, "invalid_request", id="not-an-object"),
        pytest.param(b"[]", 400, "invalid_request", id="empty-batch"),
        pytest.param(b'{"batch": {}}', 400, "invalid_request", id="batch-not-array"),
        pytest.param(b"[" * 100 + b"]" * 100, 400, "invalid_request", id="too-deep"),
    ],
)
async def test_malformed_bodies_are_400_json(
    client: httpx.AsyncClient, content: bytes, status: int, code: str
) -> None:
    headers = {"content-type": "application/json"}  # without a token only JSON gets in
    response = await client.post("/v1/events", content=content, headers=headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert "field" in error


@pytest.mark.anyio
async def test_body_over_limit_is_413(build: Build, klaviyo: respx.MockRouter) -> None:
    async for c in _client(build, _settings(max_body_bytes=1000), klaviyo):
        response = await c.post("/v1/events", json={**TRACK, "pad": "x" * 2000})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.anyio
async def test_batch_over_limit_is_413(build: Build, klaviyo: respx.MockRouter) -> None:
    async for c in _client(build, _settings(max_batch_events=3), klaviyo):
        response = await c.post("/v1/events", json=[TRACK] * 4)
        assert response.status_code == 413
        assert response.json()["error"]["field"] == "body"


@pytest.mark.anyio
async def test_unknown_route_is_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "http_404"


# --- health, readiness, metrics ------------------------------------------------------------------


@pytest.mark.anyio
async def test_health_ready_metrics(client: httpx.AsyncClient, klaviyo: respx.MockRouter) -> None:
    klaviyo.post("/api/events").respond(202)
    await client.post("/v1/events", json=TRACK)
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = (await client.get("/ready")).json()
    assert ready == {
        "status": "ready",
        "klaviyo": BASE,
        "revision": "2023-02-22",
        "api_version": "v1",
        "upstream_transformer": None,
        "warning": ready["warning"],
    }
    # Klaviyo's own host at v1: the one line start-up prints too, naming the way to v3
    assert ready["warning"].startswith("Klaviyo retired API revision 2023-02-22")
    assert "KLAVIYO_API_VERSION=v3" in ready["warning"]
    text = (await client.get("/metrics")).text
    assert 'klaviyo_destination_events_total{outcome="delivered",type="track"} 1.0' in text
    assert 'klaviyo_requests_total{endpoint="/api/events",status="202"} 1.0' in text
    assert KEY not in text


# --- rudder-server protocol endpoints against the reference cases --------------------------------


def _scripted(router: respx.MockRouter, responses: list[dict[str, Any]]) -> list[httpx.Request]:
    calls: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        scripted = responses[min(len(calls), len(responses)) - 1]
        body = scripted["body"]
        return (
            httpx.Response(scripted["status"], json=body)
            if body != ""
            else httpx.Response(scripted["status"])
        )

    router.post("/api/profiles").mock(side_effect=answer)
    return calls


def _with_ids(jobs: list[Any]) -> list[Any]:
    """Jobs whose metadata names source and destination, as compaction needs."""
    return [
        {
            **job,
            "metadata": {
                **job["metadata"],
                "sourceId": "s1",
                "destinationId": job["destination"]["ID"],
            },
        }
        for job in jobs
    ]


@pytest.mark.anyio
@pytest.mark.contract
@pytest.mark.parametrize("compacted", [False, True], ids=["plain", "compacted"])
@pytest.mark.parametrize("path", [*case_files(), *case_files(V2V3_DIR)])
async def test_protocol_endpoints_match_reference(
    build: Build, path: Path, compacted: bool, klaviyo: respx.MockRouter
) -> None:
    case = load(path)
    expected = expected_of(case)
    calls = _scripted(klaviyo, case.get("klaviyo_responses", []))
    headers = (
        {"X-Feature-Filter-Code": "?1"}
        if case.get("request_features", {}).get("filter-code")
        else {}
    )
    if compacted:
        headers["X-Content-Format"] = "json+compactedv1"
    async for c in _client(build, _settings(), klaviyo):
        if case["source"] == "processor":
            jobs = processor_jobs(case)
            body: Any = compact_processor(_with_ids(jobs)) if compacted else jobs
            response = await c.post("/v0/destinations/klaviyo", json=body, headers=headers)
            assert response.status_code == 200
            assert response.headers["apiVersion"] == "2"
            got = normalise_processor(response.json(), case["input"], case["destination_config"])
            assert got == {k: v for k, v in expected.items() if k != "lookups"}
        else:
            jobs = router_jobs(case)
            message: Any = {"destType": "klaviyo", "input": jobs}
            if compacted:
                message = compact_router({"destType": "klaviyo", "input": _with_ids(jobs)})
            response = await c.post("/routerTransform", json=message, headers=headers)
            assert response.status_code == 200
            assert response.headers["apiVersion"] == "2"
            messages = {item["job_id"]: item["message"] for item in case["input"]}
            configs = {item["job_id"]: config_of(case, item) for item in case["input"]}
            outputs = normalise_router(response.json()["output"], messages, configs)
            assert unordered(outputs) == unordered(expected["outputs"])
    sent = [
        (httpx_json(call), call.headers["authorization"].removeprefix("Klaviyo-API-Key "))
        for call in calls
    ]
    assert lookups_of(sent) == expected.get("lookups", [])


def httpx_json(request: httpx.Request) -> Any:
    return json.loads(request.content)


@pytest.mark.anyio
async def test_router_with_no_input_is_invalid_event_array(client: httpx.AsyncClient) -> None:
    response = await client.post("/routerTransform", json={"destType": "klaviyo", "input": []})
    assert response.json() == {
        "output": [
            {
                "metadata": [{"destType": "klaviyo"}],
                "batched": False,
                "statusCode": 400,
                "error": "Invalid event array",
            }
        ]
    }


@pytest.mark.anyio
async def test_protocol_endpoints_can_be_switched_off(
    build: Build, klaviyo: respx.MockRouter
) -> None:
    async for c in _client(build, _settings(enable_rudder_protocol=False), klaviyo):
        assert (await c.post("/v0/destinations/klaviyo", json=[])).status_code == 404
        assert (await c.post("/routerTransform", json={"input": []})).status_code == 404


@pytest.mark.anyio
async def test_openapi_shows_the_seed_samples(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in ("/v1/events", "/v1/transform"):
        content = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        assert set(content["examples"]) == {"identify", "track", "screen", "group", "batch"}
    assert (await client.get("/docs")).status_code == 200


@pytest.mark.anyio
async def test_protocol_envelopes_point_at_the_configured_base_url(build: Build) -> None:
    emulator = respx.MockRouter(base_url="http://emulator:8081", assert_all_called=False)
    job = {
        "message": {**TRACK},
        "metadata": {"jobId": 7},
        "destination": {"ID": "d1", "Config": {"privateApiKey": "pk_job"}},
    }
    async for c in _client(build, _settings(klaviyo_base_url="http://emulator:8081"), emulator):
        [item] = (await c.post("/v0/destinations/klaviyo", json=[job])).json()
        assert item["output"]["endpoint"] == "http://emulator:8081/api/events"
        assert item["output"]["headers"]["Authorization"] == "Klaviyo-API-Key pk_job"
