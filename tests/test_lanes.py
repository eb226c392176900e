"""The lanes: the hot routes served as raw ASGI ahead of FastAPI (``api/lanes.py``).

A lane must answer exactly as the FastAPI route of the same handler does. The processor route
gives a natural twin: ``/v0/destinations/klaviyo`` is a lane, ``/v0/destinations/KLAVIYO``
goes through FastAPI's routing to the same handler.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import httpx
import orjson
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from pydantic import SecretStr
from starlette.responses import PlainTextResponse
from starlette.types import Message, Receive, Scope, Send
from uvicorn.server import ServerState

from klaviyo_destination.api.connections import EdgeProtocol
from klaviyo_destination.api.exchange import Answer, Call
from klaviyo_destination.api.lanes import Lane, Lanes
from klaviyo_destination.api.routes import HOT_ROUTES, Handler
from klaviyo_destination.app import create_app
from klaviyo_destination.errors import BadRequest
from klaviyo_destination.settings import Settings
from support.events import signed_up
from support.transport import RecordingTransport

from .apps import served

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
    async with served(create_app(settings)) as c:
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
        {
            ("POST", "/echo"): Lane(echo, None),
            ("POST", "/refused"): Lane(refusing, None),
            ("POST", "/crash"): Lane(crashing, None),
            ("POST", "/stream"): Lane(streaming, None),
        },
        loopback_only=loopback_only,
        body_timeout=body_timeout,
        metrics=None,
    )
    transport = httpx.ASGITransport(lanes.ahead_of(inner))
    return httpx.AsyncClient(transport=transport, base_url="http://localhost")


def echo_lanes(
    handler: Handler = echo,
    *,
    at_once: bool = False,
    body_timeout: float = 1,
    kind: type[Lanes] = Lanes,
) -> Lanes:
    """Lanes of ``kind`` with one lane, ``POST /echo``, served by ``handler``."""
    lane = Lane(handler, None, at_once=at_once)
    return kind(
        {("POST", "/echo"): lane}, loopback_only=False, body_timeout=body_timeout, metrics=None
    )


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
    app = echo_lanes(body_timeout=0.2).ahead_of(inner)
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


# --- which requests the connections hand to a lane (api/connections.py) ------------------------


def http_scope(path: str, *headers: tuple[bytes, bytes]) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": path, "headers": list(headers)}


def test_a_connection_hands_only_hot_routes_to_their_lanes() -> None:
    lane = Lane(echo, None)
    lanes = Lanes({("POST", "/echo"): lane}, loopback_only=False, body_timeout=1, metrics=None)
    assert lanes.lane_of(http_scope("/echo", (b"host", b"localhost"))) is lane
    assert lanes.lane_of(http_scope("/other")) is None
    assert lanes.lane_of({**http_scope("/echo"), "method": "GET"}) is None


@pytest.mark.parametrize("header", [b"x-forwarded-for", b"x-forwarded-proto"])
def test_a_request_with_proxy_headers_goes_through_uvicorns_middleware(header: bytes) -> None:
    assert echo_lanes().lane_of(http_scope("/echo", (header, b"https"))) is None


async def test_the_app_binds_its_lanes_to_fastapis_opentelemetry_check() -> None:
    app = create_app(Settings(klaviyo_private_api_key=SecretStr(KEY)))
    async with LifespanManager(app) as manager:
        lanes = manager._state["lanes"]  # what the connections read (uvicorn's app_state)
    assert isinstance(lanes, Lanes)
    assert lanes.app is app
    # FastAPI's own check (a private attribute of the pinned FastAPI: this fails if it goes)
    assert lanes.traced == app._native_telemetry.enabled


class BrokenLanes(Lanes):
    async def serve(self, *_: Any, **__: Any) -> None:
        raise RuntimeError("a bug in the lane")


ECHO_REQUEST: Final = b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}"


def connection(lanes: Lanes) -> tuple[EdgeProtocol, RecordingTransport]:
    """``serve``'s protocol on a recording transport, its app ``inner``, with these lanes."""
    config = uvicorn.Config(inner, log_config=None, http=EdgeProtocol)
    config.load()
    protocol = EdgeProtocol(config, ServerState(), {"lanes": lanes})
    transport = RecordingTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    return protocol, transport


async def answered(protocol: EdgeProtocol, transport: RecordingTransport, data: bytes) -> bytes:
    protocol.data_received(data)
    await asyncio.wait_for(asyncio.gather(*protocol.tasks), timeout=3)
    protocol.connection_lost(None)
    return transport.written


@pytest.mark.parametrize("traced", [False, True], ids=["untraced", "traced"])
async def test_a_traced_connection_sends_hot_requests_through_the_app(traced: bool) -> None:
    lanes = echo_lanes()
    lanes.traced = lambda: traced
    written = await answered(*connection(lanes), ECHO_REQUEST)
    body = written.partition(b"\r\n\r\n")[2]
    assert body == (b"inner" if traced else b'{"path":"/echo","body":"{}"}')


async def test_a_lane_that_fails_is_a_logged_500_on_the_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    protocol, transport = connection(echo_lanes(kind=BrokenLanes))
    with caplog.at_level(logging.ERROR, logger="klaviyo_destination.edge"):
        written = await answered(protocol, transport, ECHO_REQUEST)
    assert written.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert transport.closed
    [record] = [r for r in caplog.records if r.name == "klaviyo_destination.edge"]
    assert record.exc_info is not None


# --- a lane run at once, by the read that brought its whole request (api/connections.py) -------

SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")


async def waiting_echo(call: Call) -> Answer:
    """Waits for the loop before it answers, and says whether it then runs in a task."""
    body = b"".join([chunk async for chunk in call.stream()])
    SEEN.set("set by the lane")
    await asyncio.sleep(0)
    in_task = asyncio.current_task() is not None
    return Answer.json({"body": body.decode(), "in_task": in_task, "seen": SEEN.get()})


async def stuck(_: Call) -> Answer:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def head(length: int) -> bytes:
    return b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % length


def body_of(written: bytes) -> Any:
    return orjson.loads(written.partition(b"\r\n\r\n")[2])


@pytest.mark.parametrize("at_once", [True, False], ids=["at-once", "in-a-task"])
async def test_a_whole_request_is_answered_before_the_read_that_brought_it_returns(
    at_once: bool,
) -> None:
    protocol, transport = connection(echo_lanes(at_once=at_once))
    protocol.data_received(ECHO_REQUEST)
    if at_once:  # no task, no turn of the loop: answered (and logged) inside the read
        assert not protocol.tasks
        assert body_of(transport.written) == {"path": "/echo", "body": "{}"}
    else:
        assert transport.written == b""
        assert len(protocol.tasks) == 1
    assert body_of(await answered(protocol, transport, b"")) == {"path": "/echo", "body": "{}"}


async def test_a_body_still_arriving_is_read_in_a_task_and_answered_at_its_end() -> None:
    protocol, transport = connection(echo_lanes(at_once=True))
    protocol.data_received(head(10) + b"01234")
    assert transport.written == b""
    assert len(protocol.tasks) == 1
    written = await answered(protocol, transport, b"56789")
    assert body_of(written) == {"path": "/echo", "body": "0123456789"}


async def test_a_body_that_stops_arriving_still_meets_its_deadline() -> None:
    protocol, transport = connection(echo_lanes(at_once=True, body_timeout=0.2))
    protocol.data_received(head(10) + b"01234")
    await asyncio.wait_for(asyncio.gather(*protocol.tasks), timeout=3)
    assert transport.written.startswith(b"HTTP/1.1 408 ")
    assert transport.closed


async def test_a_lane_that_waits_goes_on_in_a_task_with_its_own_context() -> None:
    protocol, transport = connection(echo_lanes(waiting_echo, at_once=True))
    SEEN.set("the connection's")
    protocol.data_received(head(2) + b"hi")
    assert transport.written == b""  # it waits for the loop: not answered yet
    assert len(protocol.tasks) == 1  # the task that goes on with it, which shutdown waits for
    assert SEEN.get() == "the connection's"  # what the lane set stayed in its own context
    written = await answered(protocol, transport, b"")
    assert body_of(written) == {"body": "hi", "in_task": True, "seen": "set by the lane"}
    assert not protocol.tasks


async def test_cancelling_a_lane_that_waits_is_a_logged_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    protocol, transport = connection(echo_lanes(stuck, at_once=True))
    protocol.data_received(ECHO_REQUEST)
    [task] = protocol.tasks
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="klaviyo_destination.edge"):
        task.cancel()  # as the server's shutdown does once its grace is over
        await asyncio.gather(task, return_exceptions=True)
    assert transport.written.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert "unexpected error in a lane" in caplog.text


async def test_pipelined_requests_run_at_once_are_answered_in_order() -> None:
    protocol, transport = connection(echo_lanes(at_once=True))
    second = ECHO_REQUEST.replace(b"{}", b"[]")
    written = await answered(protocol, transport, ECHO_REQUEST + second)
    first_answer, _, rest = written.partition(b"HTTP/1.1 200 OK\r\n")[2].partition(b"HTTP/1.1")
    assert b'"body":"{}"' in first_answer
    assert b'"body":"[]"' in rest


async def test_a_lane_run_at_once_that_fails_is_a_logged_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    protocol, transport = connection(echo_lanes(at_once=True, kind=BrokenLanes))
    with caplog.at_level(logging.ERROR, logger="klaviyo_destination.edge"):
        protocol.data_received(ECHO_REQUEST)
    assert transport.written.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert "unexpected error in a lane" in caplog.text


def test_only_the_protocol_routes_run_at_once() -> None:
    at_once = {key for key, (_, _, now) in HOT_ROUTES.items() if now}
    assert at_once == {("POST", "/v0/destinations/klaviyo"), ("POST", "/routerTransform")}
