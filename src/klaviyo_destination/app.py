"""``create_app``: the FastAPI application, its lifespan-owned Klaviyo client and error handlers."""

from __future__ import annotations

import difflib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from pydantic import SecretStr
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__
from .api import routes
from .api.edge import Edge
from .api.exchange import Call
from .api.metrics import EventMetrics, HttpMetrics
from .api.openapi import document_events
from .api.refusals import REFUSED, refused, unexpected
from .api.request_log import RequestLog
from .api.responses import JsonResponse
from .api.routes import pass_through, served_response
from .api.state import State
from .ingest.config import from_settings
from .klaviyo import DeliveryMetrics, KlaviyoClient, KlaviyoSession
from .protocol import klaviyo_lookup
from .protocol.bodies import MAX_ECHO_DEPTH, Limits
from .protocol.front import Front
from .protocol.passthrough import is_transformer_route, upstream_path
from .protocol.upstream import Upstream
from .settings import Settings

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    mounts: dict[str, Any] | None = None,
    emulator_prefix: str | None = None,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """Build the service. ``transport`` replaces the network to Klaviyo (tests, the embedded
    emulator), ``upstream_transport`` the one to the upstream transformer; ``mounts`` adds
    sub-applications, and ``emulator_prefix`` names the one the protocol answers point at."""
    settings = settings or Settings()
    config = from_settings(settings)
    metrics = DeliveryMetrics()
    events = EventMetrics(metrics.registry)

    # Without a token the service is on loopback only; the edge keeps web pages out too.
    loopback_only = settings.webhook_token is None
    http_metrics = HttpMetrics(metrics.registry)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        async with KlaviyoClient(settings, transport=transport, metrics=metrics) as klaviyo:
            key = config.private_api_key or SecretStr("")
            upstream = _upstream(settings, upstream_transport)
            limits = Limits(
                min(settings.max_json_depth, MAX_ECHO_DEPTH),
                settings.max_event_bytes,
                settings.max_protocol_jobs,
                settings.max_echoed_destination_bytes,
            )
            try:
                yield {
                    "settings": settings,
                    "config": config,
                    "klaviyo": klaviyo,
                    "session": KlaviyoSession(klaviyo, key),
                    "front": Front(klaviyo_lookup(klaviyo), limits, upstream),
                    "emulator_prefix": emulator_prefix,
                    "metrics": metrics,
                    "events": events,
                    "http_metrics": http_metrics,
                }
            finally:
                if upstream is not None:
                    await upstream.aclose()

    app = FastAPIOffline(
        title="klaviyo-destination",
        version=__version__,
        description=(
            "Delivers RudderStack events (identify, track, screen, group) to Klaviyo's API at "
            f"revision {settings.revision.name} (KLAVIYO_API_VERSION="
            f"{settings.klaviyo_api_version.value}), and speaks rudder-server's transformer "
            "protocol."
        ),
        lifespan=lifespan,
        default_response_class=JsonResponse,
    )
    app.include_router(routes)
    document_events(app)
    for prefix, sub_app in (mounts or {}).items():
        app.mount(prefix, sub_app)
    app.router.default = _not_matched(app.router.default)
    _install_error_handlers(app)
    app.add_middleware(Edge, loopback_only=loopback_only, body_timeout=settings.body_timeout)
    # outermost: refusals by Edge get their line (and their count) too
    app.add_middleware(RequestLog, metrics=http_metrics)
    return app


def _upstream(settings: Settings, transport: httpx.AsyncBaseTransport | None) -> Upstream | None:
    url = settings.rudder_transformer_url
    if url is None:
        return None
    return Upstream(
        url,
        timeout=settings.rudder_transformer_timeout,
        max_answer_bytes=settings.rudder_transformer_max_answer_bytes,
        transport=transport,
    )


def _not_matched(not_found: ASGIApp) -> ASGIApp:
    """No route matched: rudder-transformer's own routes go to the upstream transformer (or
    get a clear 501 without one); anything else is a 404 that names our nearest route."""

    async def fallback(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await not_found(scope, receive, send)
            return
        call = Call(scope, receive)
        if call.state["settings"].enable_rudder_protocol:
            upstream_path(scope)  # a path that would leave the upstream's base path: a 400
            if is_transformer_route(call.method, call.path):
                response = served_response(await pass_through(call))
                await response(scope, receive, send)
                return
        raise HTTPException(404, _no_route(call.method, call.path))

    return fallback


def _no_route(method: str, path: str) -> str:
    """What a 404 says: the nearest of this service's routes, by path (difflib)."""
    ours = {
        route.path: sorted(route.methods or ())
        for route in routes.routes
        if isinstance(route, APIRoute)
    }
    said = f"no route {method} {path[:200]}"
    nearest = difflib.get_close_matches(path, ours, n=1, cutoff=0.6)
    if not nearest:
        return f"{said}; every route is listed at /docs"
    return f"{said}; did you mean {'/'.join(ours[nearest[0]])} {nearest[0]}? (every route: /docs)"


def _install_error_handlers(app: FastAPI) -> None:
    for kind in REFUSED:
        app.add_exception_handler(kind, refused)
    app.add_exception_handler(Exception, unexpected)
