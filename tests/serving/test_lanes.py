"""The lanes: the hot routes served as raw ASGI in front of FastAPI (``serving/lanes.py``).

A lane must answer exactly as the FastAPI route of the same handler does. The processor route
gives a natural twin: ``/v0/destinations/klaviyo`` is a lane, ``/v0/destinations/KLAVIYO``
goes through FastAPI's routing to the same handler. (``tests/serving/test_serving.py`` compares
whole apps, lanes on and off.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr
from starlette.responses import PlainTextResponse
from starlette.types import Message, Receive, Scope, Send

from klaviyo_destination import serving
from klaviyo_destination.api.exchange import Answer, Call
from klaviyo_destination.app import create_app
from klaviyo_destination.errors import BadRequest
from klaviyo_destination.serving.lanes import Lane, Lanes
from klaviyo_destination.settings import Settings
from support.events import signed_up
from tests.helpers.apps import served

pytestmark = pytest.mark.anyio

KEY = "pk_lanes_secret"
LANE = "/v0/destinations/klaviyo"
TWIN = "/v0/destinations/KLAVIYO"  # not a lane: FastAPI's route, the same handler


def job(message: Any, job_id: int = 1) -> dict[str, Any]:
    return {
        "message": message,
        "metadata": {"jobId": job_id, "destinationId": "d1"},
        "destination": {"ID": "d1", "Config": {"privateApiKey": KEY, "listId": "L1"}},
    }


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(klaviyo_private_api_key=SecretStr(KEY), body_timeout=0.3)
    async with served(serving.wrap(create_app(settings), settings)) as c:
        yield c


TWIN_CASES = {
    "one track event": orjson.dumps([job(signed_up())]),
    "three jobs, one not an object": orjson.dumps(
        [job(signed_up(), 1), job("not an event", 2), job({"type": "page"}, 3)]
    ),
    "not JSON": b"[{",
    "not an array": b'{"jobs": []}',
    "an empty array": b"[]",
}


@pytest.mark.parametrize("body", TWIN_CASES.values(), ids=TWIN_CASES.keys())
async def test_a_lane_answers_as_fastapis_route_of_the_same_handler(
    client: httpx.AsyncClient, body: bytes
) -> None:
    headers = {"content-type": "application/json"}
    lane = await client.post(LANE, content=body, headers=headers)
    twin = await client.post(TWIN, content=body, headers=headers)
    assert lane.status_code == twin.status_code
    assert lane.content == twin.content
    for answer in (lane, twin):
        assert answer.headers["apiversion"] == "2"
        assert answer.headers["content-type"] == "application/json"
        assert int(answer.headers["content-length"]) == len(answer.content)
        assert len(answer.headers["x-request-id"]) == 32
    assert lane.headers["x-request-id"] != twin.headers["x-request-id"]


async def test_an_edge_refusal_reads_the_same_in_a_lane_and_through_fastapi(
    client: httpx.AsyncClient,
) -> None:
    # no WEBHOOK_TOKEN: a page's Host is refused before anything is read
    headers = {"host": "evil.example", "content-type": "application/json"}
    lane = await client.post(LANE, content=b"[]", headers=headers)
    twin = await client.post(TWIN, content=b"[]", headers=headers)
    assert lane.status_code == twin.status_code == 421
    assert lane.json() == twin.json()
    assert lane.json()["error"]["field"] == "Host"


async def test_a_lane_keeps_the_callers_request_id(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        LANE, content=b"[]", headers={"content-type": "application/json", "x-request-id": "r-1"}
    )
    assert answer.headers["x-request-id"] == "r-1"


async def test_a_lane_request_gets_its_log_line_and_its_metrics(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = orjson.dumps([job(signed_up()), job(signed_up(), 2)])
    with caplog.at_level(logging.INFO, logger="klaviyo_destination.requests"):
        answer = await client.post(LANE, content=body, headers={"content-type": "application/json"})
    [line] = [r for r in caplog.records if r.name == "klaviyo_destination.requests"]
    assert (line.status, line.path, line.jobs) == (200, LANE, 2)  # type: ignore[attr-defined]
    assert line.request_id == answer.headers["x-request-id"]  # type: ignore[attr-defined]
    metrics = (await client.get("/metrics")).text
    assert (
        'klaviyo_destination_http_requests_total{method="POST",'
        'route="/v0/destinations/{destination}",status="200"} 1.0'
    ) in metrics


# --- the lanes on their own, around a stand-in app ---------------------------------------------


async def inner(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("inner")(scope, receive, send)


async def echo(call: Call) -> Answer:
    body = b"".join([chunk async for chunk in call.stream()])
    return Answer.json({"path": call.path, "body": body.decode()}, headers={"X-Extra": "1"})


async def refusing(_: Call) -> Answer:
    raise BadRequest("no", field="body")


async def crashing(_: Call) -> Answer:
    raise RuntimeError("boom")


async def streaming(_: Call) -> PlainTextResponse:
    return PlainTextResponse("streamed", status_code=202)


def lanes_client(*, loopback_only: bool = False, body_timeout: float = 5.0) -> httpx.AsyncClient:
    lanes = Lanes(
        inner,
        {
            ("POST", "/echo"): Lane(echo, None),
            ("POST", "/refused"): Lane(refusing, None),
            ("POST", "/crash"): Lane(crashing, None),
            ("POST", "/stream"): Lane(streaming, None),
        },
        loopback_only=loopback_only,
        body_timeout=body_timeout,
    )
    transport = httpx.ASGITransport(lanes)
    return httpx.AsyncClient(transport=transport, base_url="http://localhost")


async def test_a_hot_route_is_answered_by_its_lane_and_the_rest_by_the_app() -> None:
    async with lanes_client() as c:
        answer = await c.post("/echo", content=b"hello")
        assert answer.json() == {"path": "/echo", "body": "hello"}
        assert answer.headers["x-extra"] == "1"
        assert (await c.get("/echo")).text == "inner"  # another method: not the lane
        assert (await c.post("/other")).text == "inner"


async def test_a_lanes_refusal_is_the_json_error_naming_the_field() -> None:
    async with lanes_client() as c:
        answer = await c.post("/refused")
    assert answer.status_code == 400
    assert answer.json()["error"] == {"code": "invalid_request", "message": "no", "field": "body"}
    assert "apiversion" not in answer.headers  # not a protocol route


async def test_an_unexpected_error_is_a_500_and_one_logged_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR):
        async with lanes_client() as c:
            answer = await c.post("/crash")  # answered, not raised into the server
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "internal_error"
    assert "boom" not in answer.text
    [record] = [r for r in caplog.records if r.exc_info]
    assert "RuntimeError: boom" in caplog.text
    assert record.levelno == logging.ERROR


async def test_a_handlers_streamed_response_gets_the_request_id() -> None:
    async with lanes_client() as c:
        answer = await c.post("/stream", headers={"x-request-id": "s-1"})
    assert (answer.status_code, answer.text) == (202, "streamed")
    assert answer.headers["x-request-id"] == "s-1"


async def test_a_body_that_stops_arriving_is_a_408_that_closes_the_connection() -> None:
    app = Lanes(inner, {("POST", "/echo"): Lane(echo, None)}, loopback_only=False, body_timeout=0.2)
    sent: list[Message] = []
    first = [{"type": "http.request", "body": b"part", "more_body": True}]

    async def receive() -> Message:
        if first:
            return first.pop()
        await asyncio.sleep(10)  # the rest never comes
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/echo",
        "headers": [(b"host", b"localhost"), (b"content-length", b"100")],
        "query_string": b"",
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=3)
    start = sent[0]
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]
    assert orjson.loads(sent[1]["body"])["error"]["field"] == "body"


# --- serving.wrap: the switch, and the handlers a benchmark's instrument gives --------------------

JSON_TYPE = {"content-type": "application/json"}


async def mine(_: Call) -> Answer:
    return Answer.json({"mine": True})


def test_with_the_lanes_off_the_app_is_served_as_it_is() -> None:
    settings = Settings(serve_lanes="off")
    app = create_app(settings)
    assert serving.wrap(app, settings) is app


def test_the_lanes_are_the_hot_routes_with_their_handlers_and_templates() -> None:
    settings = Settings()
    app = create_app(settings)
    wrapped = serving.wrap(app, settings)
    assert isinstance(wrapped, Lanes)
    assert wrapped.app is app
    assert set(wrapped.lanes) == set(serving.HOT_ROUTES)
    for key, lane in wrapped.lanes.items():
        handler, template = serving.HOT_ROUTES[key]
        assert lane.handler is handler
        assert getattr(lane.route, "path", None) == template


async def test_a_handler_given_to_wrap_serves_its_lane_and_leaves_the_route_table_alone() -> None:
    settings = Settings(klaviyo_private_api_key=SecretStr(KEY))
    table = dict(serving.HOT_ROUTES)
    app = serving.wrap(create_app(settings), settings, handlers={("POST", LANE): mine})
    async with served(app) as c:
        assert (await c.post(LANE, content=b"[]", headers=JSON_TYPE)).json() == {"mine": True}
        assert (await c.post(TWIN, content=b"[]", headers=JSON_TYPE)).json() == []
    assert dict(serving.HOT_ROUTES) == table


def test_a_handler_for_a_route_without_a_lane_is_refused() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="not hot routes"):
        serving.wrap(create_app(settings), settings, handlers={("GET", "/health"): mine})


def test_handlers_need_the_lanes() -> None:
    settings = Settings(serve_lanes="off")
    with pytest.raises(ValueError, match="SERVE_LANES=on"):
        serving.wrap(create_app(settings), settings, handlers={("POST", LANE): mine})


def test_the_hot_route_table_is_read_only() -> None:
    table: Any = serving.HOT_ROUTES
    with pytest.raises(TypeError):
        table[("POST", LANE)] = (mine, LANE)


@pytest.mark.parametrize("value", ["on", "off", "OFF", " On "])
def test_serve_lanes_is_on_or_off(value: str) -> None:
    assert Settings(serve_lanes=value).serve_lanes == value.strip().lower()
