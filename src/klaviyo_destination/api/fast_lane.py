"""The hot routes served straight from ASGI, ahead of FastAPI's routing.

Matching a path against every route, building FastAPI's request context and solving a route's
parameters cost more than a one-event transform does. So the routes that carry traffic are
found by one dictionary look-up on ``(method, path)`` and their endpoints called directly, with
the same functions, answers and error handlers as through FastAPI (which still describes them
in the OpenAPI document). Everything else goes on to FastAPI. It sits inside the request log
and the edge middleware, so every request still gets its log line and the edge's checks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from .refusals import HANDLERS

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Lane:
    endpoint: Endpoint
    #: the FastAPI route of the same path: its template labels the request's metrics
    route: BaseRoute | None


class FastLane:
    def __init__(self, app: ASGIApp, lanes: Mapping[tuple[str, str], Lane]) -> None:
        self.app = app
        self.lanes = dict(lanes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self.lanes.get((scope.get("method", ""), scope.get("path", "")))
        if lane is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope["route"] = lane.route
        request = Request(scope, receive)
        try:
            response = await lane.endpoint(request)
        except Exception as error:  # the same handlers as FastAPI's, else FastAPI's 500 path
            handler = next((h for kind, h in HANDLERS if isinstance(error, kind)), None)
            if handler is None:
                raise
            response = await handler(request, error)
        await response(scope, receive, send)
