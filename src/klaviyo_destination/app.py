"""``create_app``: the FastAPI application, its lifespan-owned Klaviyo client and error handlers."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict, cast

import httpx
from fastapi import FastAPI, Request
from fastapi_offline import FastAPIOffline
from prometheus_client import Counter
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__
from .api import routes
from .api.edge import Edge
from .api.exchange import Call
from .api.lanes import Lane, Lanes
from .api.metrics import HttpMetrics
from .api.openapi import document_events
from .api.refusals import REFUSED, refused, unexpected
from .api.request_log import RequestLog
from .api.responses import JsonResponse
from .api.routes import HOT_ROUTES, pass_through, served_response
from .ingest.config import DestinationConfig, from_settings
from .klaviyo import DeliveryMetrics, KlaviyoClient, KlaviyoSession
from .protocol import klaviyo_lookup
from .protocol.bodies import Limits
from .protocol.front import Front
from .protocol.upstream import Upstream
from .settings import Settings

logger = logging.getLogger(__name__)

#: gen-0 threshold raised from CPython's 700; p99 at 100 events a request fell from 74 to 22 ms.
GC_THRESHOLDS = (50_000, 20, 20)


class State(TypedDict):
    settings: Settings
    #: the settings as a destination config, built once: for /v1/events and the dry run
    config: DestinationConfig
    klaviyo: KlaviyoClient
    #: the client bound to KLAVIYO_PRIVATE_API_KEY, for /v1/events
    session: KlaviyoSession
    #: the protocol routes' look-up, limits and upstream transformer
    front: Front
    #: in embedded mode, where the emulator is mounted (protocol answers point there)
    emulator_prefix: str | None
    metrics: DeliveryMetrics
    events: Counter
    #: the hot routes, which the connections hand their requests to (api/connections.py)
    lanes: Lanes


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
    lanes = Lanes(
        _lanes(),
        loopback_only=loopback_only,
        body_timeout=settings.body_timeout,
        metrics=http_metrics,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        async with KlaviyoClient(settings, transport=transport, metrics=metrics) as klaviyo:
            # Start-up objects never die: keep them out of every collection, and collect the
            # young generation less often (requests allocate many short-lived dicts).
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
            key = config.private_api_key or SecretStr("")
            upstream = _upstream(settings, upstream_transport)
            limits = Limits(settings.max_json_depth, settings.max_event_bytes)
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
                    "lanes": lanes,
                }
            finally:
                if upstream is not None:
                    await upstream.aclose()

    app = FastAPIOffline(
        title="klaviyo-destination",
        version=__version__,
        description=(
            "Delivers RudderStack events (identify, track, screen, group) to Klaviyo's API at "
            "revision 2023-02-22, and speaks rudder-server's transformer protocol."
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
    # The hot routes are served by their lanes before any of it (api/lanes.py).
    app.middleware_stack = lanes.ahead_of(app.build_middleware_stack())
    lanes.app = app
    # With an OpenTelemetry SDK installed, FastAPI's entry traces requests: the connections
    # then send hot ones that way too (a private attribute; tests/test_lanes.py checks it).
    lanes.traced = app._native_telemetry.enabled
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
        request = Request(scope, receive)
        settings = cast(Settings, request.state.settings)
        front = cast(Front, request.state.front)
        if settings.enable_rudder_protocol and (
            front.upstream is not None or request.method == "POST"
        ):
            response = served_response(await pass_through(Call.of(request)))
            await response(scope, receive, send)
            return
        await not_found(scope, receive, send)

    return fallback


def _lanes() -> dict[tuple[str, str], Lane]:
    templates = {getattr(route, "path", None): route for route in routes.routes}
    return {
        key: Lane(endpoint, templates.get(template), at_once=at_once)
        for key, (endpoint, template, at_once) in HOT_ROUTES.items()
    }


def _install_error_handlers(app: FastAPI) -> None:
    for kind in REFUSED:
        app.add_exception_handler(kind, refused)
    app.add_exception_handler(Exception, unexpected)
