"""The fast lane: the hot routes answered without FastAPI's routing, with FastAPI's handlers."""

from __future__ import annotations

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from klaviyo_destination.api.fast_lane import FastLane, Lane
from klaviyo_destination.errors import BadRequest

pytestmark = pytest.mark.anyio


async def inner(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("inner")(scope, receive, send)


async def hot(request: Request) -> Response:
    return PlainTextResponse(f"lane {request.url.path}")


async def refusing(_: Request) -> Response:
    raise BadRequest("no", field="body")


async def crashing(_: Request) -> Response:
    raise RuntimeError("boom")


def client() -> httpx.AsyncClient:
    lanes = {
        ("POST", "/hot"): Lane(hot, None),
        ("POST", "/refused"): Lane(refusing, None),
        ("POST", "/crash"): Lane(crashing, None),
    }
    app = FastLane(inner, lanes)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://localhost")


async def test_a_hot_route_is_answered_by_its_lane_and_the_rest_by_the_app() -> None:
    async with client() as c:
        assert (await c.post("/hot")).text == "lane /hot"
        assert (await c.get("/hot")).text == "inner"  # another method: not the lane
        assert (await c.post("/other")).text == "inner"


async def test_a_lanes_error_gets_the_same_answer_as_through_fastapi() -> None:
    async with client() as c:
        answer = await c.post("/refused")
    assert answer.status_code == 400
    assert answer.json()["error"] == {"code": "invalid_request", "message": "no", "field": "body"}


async def test_an_unexpected_error_goes_on_to_the_500_handler() -> None:
    async with client() as c:
        with pytest.raises(RuntimeError, match="boom"):
            await c.post("/crash")  # ServerErrorMiddleware, around it in the app, answers 500
