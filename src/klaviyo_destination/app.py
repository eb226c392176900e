"""``create_app``: the FastAPI application, its lifespan-owned Klaviyo client and error handlers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from prometheus_client import Counter
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__
from .api import routes
from .api.edge import Edge
from .api.exchange import Call
from .api.metrics import HttpMetrics
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
    events = Counter(
        "klaviyo_destination_events",
        "Events handled by /v1/events, by event type and outcome.",
        ["type", "outcome"],
        registry=metrics.registry,
    )

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
    return Upstream(url, timeout=settings.rudder_transformer_timeout, transport=transport)


def _not_matched(not_found: ASGIApp) -> ASGIApp:
    """No route matched: rudder-server's other transformer requests (any POST) go to the
    upstream transformer, or get a clear 501; anything else is a 404."""

    async def fallback(scope: Scope, receive: Receive, send: Send) -> None:
        call = Call(scope, receive)
        if call.state["settings"].enable_rudder_protocol and (
            call.state["front"].upstream is not None or call.method == "POST"
        ):
            response = served_response(await pass_through(call))
            await response(scope, receive, send)
            return
        await not_found(scope, receive, send)

    return fallback


def _install_error_handlers(app: FastAPI) -> None:
    for kind in REFUSED:
        app.add_exception_handler(kind, refused)
    app.add_exception_handler(Exception, unexpected)
