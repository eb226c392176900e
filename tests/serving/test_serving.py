"""``serving``: the app with the lanes and without reads the same, byte for byte; the plain app
takes middleware and exception handlers as FastAPI has it; the connection limits need the
uvicorn minor they were written for.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import httpx
import orjson
import pytest
from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from starlette.middleware.cors import CORSMiddleware

from klaviyo_destination.app import create_app
from klaviyo_destination.serving.connection import UNENFORCED, UVICORN_MINOR, serve_options
from klaviyo_destination.serving.refusals import NoWebSockets
from klaviyo_destination.settings import Settings
from support.events import signed_up
from tests.helpers.apps import WAYS, served, served_way

KEY: Final = "pk_serving_secret"
TOKEN: Final = "serving-token"
UPSTREAM: Final = "http://upstream.test"
JOB: Final = {
    "message": signed_up(),
    "metadata": {"jobId": 1, "userId": "u1"},
    "destination": {"ID": "d1", "Config": {"privateApiKey": KEY}},
}
JSON: Final = {"content-type": "application/json"}
AUTH: Final = {"authorization": f"Bearer {TOKEN}", **JSON}


def klaviyo(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/api/profiles":
        return httpx.Response(201, json={"data": {"id": "P1", "type": "profile"}})
    return httpx.Response(202)


def upstream(request: httpx.Request) -> httpx.Response:
    if b'"down"' in request.content:
        raise httpx.ConnectError("refused", request=request)
    got = orjson.loads(request.content) if request.content else None
    body = orjson.dumps({"method": request.method, "path": request.url.path, "got": got})
    headers = {"apiVersion": "2", "content-type": "application/json", "x-upstream": "1"}
    # a stream, as a server's answer is (the service streams it back)
    return httpx.Response(200, headers=headers, stream=httpx.ByteStream(body))


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "klaviyo_private_api_key": SecretStr(KEY),
        "rudder_transformer_url": UPSTREAM,
        "max_body_bytes": 2000,
        "max_attempts": 1,
    }
    return Settings(**(values | overrides))


Step = tuple[str, str, bytes, dict[str, str]]


def post(path: str, body: Any, headers: dict[str, str] = AUTH) -> Step:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return ("POST", path, raw, headers)


#: Successes, refusals, errors and pass-throughs, on hot routes and others, with a token.
SECURED: Final[dict[str, Step]] = {
    "events": post("/v1/events", signed_up()),
    "events, a batch with a rejection": post("/v1/events", [signed_up(), {"type": "page"}]),
    "batch": post("/v1/batch", {"batch": [signed_up()]}),
    "one track": post("/v1/track", signed_up()),
    "processor": post("/v0/destinations/klaviyo", [JOB]),
    "router": post("/routerTransform", {"destType": "klaviyo", "input": [JOB]}),
    "dry run": post("/v1/transform", signed_up()),
    "no token": post("/v1/events", signed_up(), JSON),
    "wrong token": post("/v1/events", signed_up(), {**AUTH, "authorization": "Bearer no"}),
    "not JSON": post("/v1/events", b"{"),
    "too large": post("/v1/events", {**signed_up(), "pad": "x" * 3000}),
    "processor, not an array": post("/v0/destinations/klaviyo", {"jobs": []}),
    "router pass-through": post("/routerTransform", {"destType": "webhook", "input": []}),
    "router, upstream down": post("/routerTransform", {"destType": "down", "input": []}),
    "processor pass-through": post("/v0/destinations/webhook", [JOB]),
    "health": ("GET", "/health", b"", {}),
    "unknown route": ("GET", "/nowhere", b"", {}),  # not rudder-transformer's either: a 404
}
#: Without a token: the edge's Host and Content-Type screen.
LOOPBACK: Final[dict[str, Step]] = {
    "foreign host": post("/v1/events", signed_up(), {**JSON, "host": "evil.example"}),
    "form post": post("/v0/destinations/klaviyo", [JOB], {"content-type": "text/plain"}),
    "loopback processor": post("/v0/destinations/klaviyo", [JOB], JSON),
    "loopback foreign host, not hot": post("/v1/transform", signed_up(), {"host": "evil.example"}),
}
#: Each case's settings, its requests, and the statuses they cover between them.
CASES: Final = [
    (settings(webhook_token=TOKEN), SECURED, {200, 207, 400, 401, 404, 413, 502}),
    (settings(), LOOPBACK, {200, 415, 421}),
]

Answered = tuple[int, list[tuple[bytes, bytes]], bytes]


async def answers(way: str, service: Settings, steps: dict[str, Step]) -> dict[str, Answered]:
    app = create_app(
        service,
        transport=httpx.MockTransport(klaviyo),
        upstream_transport=httpx.MockTransport(upstream),
    )
    got: dict[str, Answered] = {}
    async with served(served_way(way, app, service)) as client:
        for name, (method, path, body, headers) in steps.items():
            fixed = {"x-request-id": f"id-{len(got)}", **headers}
            answer = await client.request(method, path, content=body, headers=fixed)
            got[name] = (answer.status_code, answer.headers.raw, await answer.aread())
    return got


def request_lines(records: list[logging.LogRecord]) -> list[dict[str, Any]]:
    """The request log lines' fields, less their durations."""
    return [
        {k: v for k, v in r.__dict__.items() if k not in ("created", "msecs", "relativeCreated")}
        | {"duration_ms": None, "msg": r.getMessage()}
        for r in records
        if r.name == "klaviyo_destination.requests"
    ]


@pytest.mark.anyio
@pytest.mark.parametrize(("service", "steps", "statuses"), CASES, ids=["token", "loopback"])
async def test_the_lanes_answer_and_log_byte_for_byte_as_the_plain_app(
    service: Settings,
    steps: dict[str, Step],
    statuses: set[int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    got = {}
    lines = {}
    for way in WAYS:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="klaviyo_destination.requests"):
            got[way] = await answers(way, service, steps)
        lines[way] = request_lines(caplog.records)
    plain, lanes = (got[way] for way in WAYS)
    for name in steps:
        assert lanes[name] == plain[name], name
    assert lines["lanes"] == lines["plain"]
    assert len(lines["plain"]) == len(steps)
    assert {status for status, _, _ in plain.values()} == statuses


# --- the plain app takes middleware and exception handlers (the issue's "done when") ---------


def test_the_issues_done_when_command() -> None:
    app = create_app(Settings())
    app.add_middleware(CORSMiddleware, allow_origins=["*"])
    assert app.middleware_stack is None  # built by Starlette, lazily, at the first call


class Teapot(Exception):
    pass


async def teapot(_: Request, __: Exception) -> JSONResponse:
    return JSONResponse({"teapot": True}, status_code=418)


@asynccontextmanager
async def with_cors(serve_lanes: str) -> AsyncIterator[httpx.AsyncClient]:
    service = Settings(serve_lanes=serve_lanes)
    app = create_app(service)
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["POST"])
    app.add_exception_handler(Teapot, teapot)

    @app.get("/teapot")
    async def brew() -> None:
        raise Teapot

    async with served(served_way("lanes", app, service)) as client:
        yield client


PREFLIGHT: Final = {
    "origin": "http://app.example",
    "access-control-request-method": "POST",
    "access-control-request-headers": "content-type",
}


@pytest.mark.anyio
async def test_middleware_added_to_the_app_serves_the_hot_routes_with_the_lanes_off() -> None:
    async with with_cors("off") as client:
        preflight = await client.options("/v0/destinations/klaviyo", headers=PREFLIGHT)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert "POST" in preflight.headers["access-control-allow-methods"]
        answer = await client.post(
            "/v0/destinations/klaviyo", content=b"[]", headers={"origin": "x", **JSON}
        )
        assert (answer.status_code, answer.json()) == (200, [])
        assert answer.headers["access-control-allow-origin"] == "*"
        teapot = await client.get("/teapot")
        assert (teapot.status_code, teapot.json()) == (418, {"teapot": True})


@pytest.mark.anyio
async def test_with_the_lanes_on_only_the_hot_routes_pass_the_apps_middleware_by() -> None:
    async with with_cors("on") as client:
        hot = await client.post("/v0/destinations/klaviyo", content=b"[]", headers=JSON)
        assert "access-control-allow-origin" not in hot.headers  # documented: SERVE_LANES=off
        health = await client.get("/health", headers={"origin": "x"})
        assert health.headers["access-control-allow-origin"] == "*"
        assert (await client.get("/teapot")).status_code == 418


# --- the connection limits and the uvicorn they were written for ------------------------------


def test_the_installed_uvicorn_gets_the_edge_protocol() -> None:
    from klaviyo_destination.serving.edge_protocol import EdgeProtocol

    service = Settings(keepalive_timeout=7, shutdown_timeout=41)
    options, warning = serve_options(service, uvicorn_version=f"{UVICORN_MINOR}.9")
    assert options == {
        "http": EdgeProtocol,
        "ws": NoWebSockets,
        "timeout_keep_alive": 7,
        "timeout_graceful_shutdown": 41,
    }
    assert warning is None
    assert serve_options(service)[1] is None  # what pyproject pins is what is installed


@pytest.mark.parametrize("version", ["0.55.0", "0.53.1", "1.54.0"])
def test_another_uvicorn_gets_its_own_protocol_and_a_warning(version: str) -> None:
    options, warning = serve_options(Settings(), uvicorn_version=version)
    assert options["http"] == "auto"
    assert options["ws"] is NoWebSockets  # upgrades are refused either way
    assert warning is not None
    assert version in warning
    assert f"{UNENFORCED} are not enforced" in warning
    assert "\n" not in warning
