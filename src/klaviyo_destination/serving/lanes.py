"""The hot routes as raw ASGI, in front of the app (``serving.wrap`` with ``SERVE_LANES=on``).

On a one-event request the layers around a route (Starlette's error middleware, the request log
and the edge as middleware, FastAPI's routing and parameter solving, a ``Request`` and a
``Response``) cost more than the transform does; skipping them is the largest gain measured
(bench/optimisations.md: the "fast lane" and "raw ASGI lanes" rows, and "What the serving layers
cost"). So a request's ``(method, path)`` is looked up first: a hot route's lane does, in one
coroutine, what those layers do for it (the edge's checks and body deadline, the route's
handler, an error's answer, the request id, the metrics and the log line) with the same
functions they use, and sends its answer as two ASGI messages. Everything else goes on to the
app, whose routes call the same handlers and describe the hot routes in the OpenAPI document.

What a lane skips it skips for every hot request: middleware added to the app (CORS, Sentry)
and FastAPI's OpenTelemetry tracing never see one. ``SERVE_LANES=off`` serves every request
FastAPI's whole way, for tracing, debugging or such middleware, with the same bytes on the wire.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from ..api import routes
from ..api.edge import BodyWatch, TimedBody, screen
from ..api.exchange import JSON, Answer, Call, state_of
from ..api.refusals import refusal, unexpected_answer
from ..api.request_log import StampedSend, logged, request_id_of
from ..api.routes import Handler, batch, events, processor, router

Route = tuple[str, str]
#: Handlers by route, to replace a hot route's own (``serving.wrap(..., handlers=...)``).
Handlers = Mapping[Route, Handler]

#: The routes that carry traffic: each one's handler, and the template of its FastAPI route
#: (which serves it with SERVE_LANES=off, describes it in the OpenAPI document and labels its
#: metrics).
HOT_ROUTES: Final[Mapping[Route, tuple[Handler, str]]] = MappingProxyType(
    {
        ("POST", "/v0/destinations/klaviyo"): (processor, "/v0/destinations/{destination}"),
        ("POST", "/routerTransform"): (router, "/routerTransform"),
        ("POST", "/v1/events"): (events, "/v1/events"),
        ("POST", "/v1/batch"): (batch, "/v1/batch"),
    }
)


@dataclass(frozen=True, slots=True)
class Lane:
    handler: Handler
    #: the FastAPI route of the same path: its template labels the request's metrics
    route: BaseRoute | None


def hot_lanes(handlers: Handlers | None = None) -> dict[Route, Lane]:
    """The hot routes' lanes; ``handlers`` replaces the handlers of the routes it names."""
    replaced = dict(handlers or {})
    if unknown := sorted(set(replaced) - set(HOT_ROUTES)):
        raise ValueError(f"not hot routes, so no lane to give a handler: {unknown}")
    templates = {getattr(route, "path", None): route for route in routes.routes}
    return {
        key: Lane(replaced.get(key, handler), templates.get(template))
        for key, (handler, template) in HOT_ROUTES.items()
    }


class Lanes:
    """``app`` with the lanes in front of it."""

    def __init__(
        self,
        app: ASGIApp,
        lanes: Mapping[Route, Lane],
        *,
        loopback_only: bool,
        body_timeout: float,
    ) -> None:
        self.app = app
        self.lanes = dict(lanes)
        self.loopback_only = loopback_only
        self.body_timeout = body_timeout
        self.watch = BodyWatch()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = (
            self.lanes.get((scope.get("method", ""), scope["path"]))
            if scope["type"] == "http"
            else None
        )
        if lane is None:
            await self.app(scope, receive, send)
        else:
            await self.serve(lane, scope, receive, send)

    async def serve(self, lane: Lane, scope: Scope, receive: Receive, send: Send) -> None:
        """One request, answered as the request log, the edge and the route answer it (in
        that order, outermost first, so that their headers come in the same order)."""
        start = time.perf_counter()
        scope["route"] = lane.route
        request_id = request_id_of(scope)
        send = stamped = StampedSend(send, request_id)
        try:
            edge_refusal, has_body = screen(scope, loopback_only=self.loopback_only)
            if has_body:
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
                await _send(send, served)
            else:  # a pass-through's streamed answer
                await served(scope, receive, send)
        finally:
            # the lifespan's metrics, when the server ran it (a stand-in app's has none)
            metrics = state_of(scope).get("http_metrics")
            logged(scope, stamped.status, time.perf_counter() - start, request_id, metrics)


async def _send(send: Send, answer: Answer) -> None:
    # In the order Starlette's ``Response`` gives them: the same bytes with SERVE_LANES=off.
    headers = [(b"content-length", b"%d" % len(answer.body)), (b"content-type", JSON)]
    headers += answer.headers
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
