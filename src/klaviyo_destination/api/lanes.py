"""The hot routes as raw ASGI, ahead of every middleware and FastAPI's routing.

On a one-event request, the layers around a route (Starlette's error middleware, the request log
and the edge as middleware, the router, a ``Request`` and a ``Response`` object) cost more than
the transform does. So the app's middleware stack starts with one dictionary look-up of the
request's ``(method, path)``: a hot route's lane does, in one coroutine, what those layers do
for it (the edge's checks and body deadline, the route's handler, an error's answer, the request
id, the metrics and the log line), with the same functions they use, and sends its answer as two
ASGI messages. Everything else goes on to the middleware and FastAPI, which also describes the
hot routes in the OpenAPI document (its routes call the same handlers).

Served by ``klaviyo-destination serve``, a hot request does not even come this way: the
connection (``api/connections.py``) hands it to :meth:`Lanes.serve` straight from uvicorn's
request cycle, with a :class:`Reply` that writes the answer to the socket in one piece, past
uvicorn's proxy-header middleware, FastAPI's entry and the ASGI messages (with FastAPI's
OpenTelemetry switched on when a connection opens, its requests go FastAPI's way instead, so
they are traced). A protocol route's request whose whole body came with its headers is even run
by the read that brought it, without a task (``Lane.at_once``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .edge import BodyWatch, TimedBody, screen
from .exchange import JSON, Answer, Call
from .metrics import HttpMetrics
from .refusals import refusal, unexpected_answer
from .request_log import REQUEST_ID, StampedSend, logged, request_id_of
from .routes import Handler


class Reply(Protocol):
    """Where a lane writes its answer when it serves a connection's request cycle directly."""

    async def answer(self, answer: Answer, request_id: str, *, close: bool) -> None:
        """Write ``answer`` with its request id; ``close``: the body was not read to its end,
        so the connection closes after it (as :class:`.edge.TimedBody` has it)."""

    async def __call__(self, message: Message) -> None:
        """The ASGI ``send`` of the cycle, for an answer that streams (a pass-through)."""


@dataclass(frozen=True, slots=True)
class Lane:
    handler: Handler
    #: the FastAPI route of the same path: its template labels the request's metrics
    route: BaseRoute | None
    #: the handler may start before any task exists (nothing before its first wait asks for
    #: the current task), so a connection that has the whole request runs it at once
    #: (``api/connections.py``)
    at_once: bool = False


class Lanes:
    """The lanes of one app, with what the edge and the request log need."""

    def __init__(
        self,
        lanes: Mapping[tuple[str, str], Lane],
        *,
        loopback_only: bool,
        body_timeout: float,
        metrics: HttpMetrics | None,
    ) -> None:
        self.lanes = dict(lanes)
        self.loopback_only = loopback_only
        self.body_timeout = body_timeout
        self.metrics = metrics
        self.watch = BodyWatch()
        #: the app the lanes serve for (``scope["app"]``), and whether its OpenTelemetry is on
        self.app: ASGIApp | None = None
        self.traced: Callable[[], bool] = _never

    def ahead_of(self, app: ASGIApp) -> ASGIApp:
        """``app`` with the lanes in front of it."""
        lanes = self.lanes

        async def switch(scope: Scope, receive: Receive, send: Send) -> None:
            lane = (
                lanes.get((scope.get("method", ""), scope["path"]))
                if scope["type"] == "http"
                else None
            )
            if lane is None:
                await app(scope, receive, send)
            else:
                await self.serve(lane, scope, receive, send)

        return switch

    def lane_of(self, scope: Scope) -> Lane | None:
        """The lane of a connection's request: a hot route's, unless the request needs what the
        way through the app adds (uvicorn's proxy headers)."""
        lane = self.lanes.get((scope["method"], scope["path"]))
        if lane is None:
            return None
        for name, _ in scope["headers"]:
            if name in _PROXY_HEADERS:
                return None
        return lane

    async def serve(
        self,
        lane: Lane,
        scope: Scope,
        receive: Receive,
        send: Send,
        reply: Reply | None = None,
        *,
        received: bool = False,
    ) -> None:
        """Serve one request; with ``reply``, ``send`` is the reply's own (see :class:`Reply`).
        ``received``: the whole body has already arrived, so it has no deadline to meet."""
        start = time.perf_counter()
        scope["route"] = lane.route
        request_id = request_id_of(scope)
        status = 500
        body = None
        try:
            edge_refusal, has_body = screen(scope, loopback_only=self.loopback_only)
            if has_body and not received:
                deadline = asyncio.get_running_loop().time() + self.body_timeout
                body = TimedBody(receive, send, deadline, self.watch)
                receive, send = body.receive, body.send
            try:
                if edge_refusal is not None:
                    raise edge_refusal
                served = await lane.handler(Call(scope, receive))
            except Exception as error:  # every error becomes an answer here
                served = refusal(scope, error) or unexpected_answer(error)
            if isinstance(served, Answer):
                status = served.status
                if reply is None:
                    await _send(send, served, request_id)
                else:
                    await reply.answer(served, request_id, close=body is not None and body.pending)
            else:  # a pass-through's streamed answer
                status = served.status_code
                await served(scope, receive, StampedSend(send, request_id))
        finally:
            logged(scope, status, time.perf_counter() - start, request_id, self.metrics)


#: What uvicorn's ``ProxyHeadersMiddleware`` reads (a request with them goes through it).
_PROXY_HEADERS = frozenset({b"x-forwarded-for", b"x-forwarded-proto"})


def _never() -> bool:
    return False


def answer_headers(answer: Answer, request_id: str) -> list[tuple[bytes, bytes]]:
    """The headers a lane's answer goes out with, either way out."""
    return [
        (b"content-type", JSON),
        (b"content-length", b"%d" % len(answer.body)),
        *answer.headers,
        (REQUEST_ID, request_id.encode()),
    ]


async def _send(send: Send, answer: Answer, request_id: str) -> None:
    headers = answer_headers(answer, request_id)
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
