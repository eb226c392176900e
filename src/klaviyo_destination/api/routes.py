"""The HTTP routes: parse, call one function, return; the work lives in the stages below."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Final, cast

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..errors import NotFound, NotServed
from ..ingest.body import Events, events_of, parse_json
from ..ingest.config import DestinationConfig
from ..klaviyo import DeliveryMetrics, KlaviyoClient, KlaviyoSession, Outcome
from ..planned import PlannedEvent
from ..protocol import route
from ..protocol.bodies import COMPACTED, processor_body, router_body
from ..protocol.features import merged_features
from ..protocol.front import Front
from ..protocol.upstream import UpstreamError
from ..settings import Settings
from . import webhook
from .auth import check_token
from .body import read_bytes, read_json
from .dry_run import dry_run
from .models import (
    EVENTS_RESPONSES,
    PROCESSOR_RESPONSES,
    ROUTER_RESPONSES,
    SDK_RESPONSES,
    TRANSFORM_RESPONSES,
    processor_openapi,
    router_openapi,
)
from .refusals import API_VERSION
from .request_log import annotate
from .responses import JsonResponse, error_body
from .samples import request_body_examples

logger = logging.getLogger(__name__)
routes = APIRouter()
#: The single-event routes of the RudderStack HTTP API; page and alias events are answered
#: with the reference's rejection, per event.
SDK_EVENT_TYPES: Final = ("identify", "track", "screen", "group", "page", "alias")


async def _settings(request: Request) -> Settings:
    return cast(Settings, request.state.settings)


async def _klaviyo(request: Request) -> KlaviyoClient:
    return cast(KlaviyoClient, request.state.klaviyo)


SettingsDep = Annotated[Settings, Depends(_settings)]
KlaviyoDep = Annotated[KlaviyoClient, Depends(_klaviyo)]


async def _authorized(request: Request, settings: SettingsDep) -> None:
    check_token(request, settings)


def _protocol_front(request: Request) -> Front:
    """The protocol routes' shared parts, read without FastAPI dependencies: solving them was
    30% of a one-event request's time, and these are the hot path."""
    settings = cast(Settings, request.state.settings)
    if not settings.enable_rudder_protocol:
        raise NotFound("the rudder-server protocol endpoints are switched off", field="path")
    request.state.protocol = True  # its error answers carry apiVersion too
    return cast(Front, request.state.front)


async def _events(request: Request, settings: Settings, default_type: str | None = None) -> Events:
    """The body's events; ``default_type`` is the type of a single event that names none."""
    body = await read_json(
        request,
        max_bytes=settings.max_body_bytes,
        max_depth=settings.max_json_depth,
        drain_bytes=settings.max_drain_bytes,
    )
    if default_type is not None and isinstance(body, dict) and body.get("type") is None:
        body = {**body, "type": default_type}
    return events_of(body, max_events=settings.max_batch_events)


async def _protocol_bytes(request: Request) -> bytearray:
    settings = cast(Settings, request.state.settings)
    return await read_bytes(
        request, max_bytes=settings.max_protocol_body_bytes, drain_bytes=settings.max_drain_bytes
    )


@routes.post(
    "/v1/events",
    dependencies=[Depends(_authorized)],
    summary="Deliver events to Klaviyo (webhook)",
    openapi_extra=request_body_examples(),
    responses=EVENTS_RESPONSES,
)
async def post_events(request: Request, settings: SettingsDep) -> Response:
    events = await _events(request, settings)
    delivered = await _deliver(request, events.items)
    body, status, headers = webhook.webhook_answer(delivered, single=events.single)
    return JsonResponse(body, status_code=status, headers=headers)


@routes.post(
    "/v1/batch",
    dependencies=[Depends(_authorized)],
    summary="RudderStack/Segment HTTP API: a batch of events, as the SDKs send it",
    openapi_extra=request_body_examples(),
    responses=SDK_RESPONSES,
)
async def post_batch(request: Request, settings: SettingsDep) -> Response:
    events = await _events(request, settings)
    return _sdk_response(await _deliver(request, events.items))


async def post_one(request: Request, settings: SettingsDep) -> Response:
    """``/v1/<type>``: one event; the path gives its type when the body has none."""
    events = await _events(request, settings, default_type=request.url.path.rsplit("/", 1)[-1])
    return _sdk_response(await _deliver(request, events.items))


for _type in SDK_EVENT_TYPES:
    routes.add_api_route(
        f"/v1/{_type}",
        post_one,
        methods=["POST"],
        dependencies=[Depends(_authorized)],
        summary=f"RudderStack/Segment HTTP API: one {_type} event",
        openapi_extra=request_body_examples(),
        responses=SDK_RESPONSES,
        name=f"post_{_type}",
    )


async def _deliver(request: Request, items: list[Any]) -> list[tuple[PlannedEvent, Outcome]]:
    config = cast(DestinationConfig, request.state.config)
    session = cast(KlaviyoSession, request.state.session)
    delivered = await webhook.deliver_events(items, config, session)
    tally = webhook.record(delivered, request.state.events)
    annotate(request, events=len(delivered), **tally)
    return delivered


def _sdk_response(delivered: list[tuple[PlannedEvent, Outcome]]) -> Response:
    body, status, headers = webhook.sdk_answer(delivered)
    return JsonResponse(body, status_code=status, headers=headers)


@routes.post(
    "/v1/transform",
    dependencies=[Depends(_authorized)],
    summary="Dry run: the Klaviyo requests /v1/events would send; nothing is sent",
    openapi_extra=request_body_examples(),
    responses=TRANSFORM_RESPONSES,
)
async def post_transform(request: Request, settings: SettingsDep) -> Response:
    events = await _events(request, settings)
    config = cast(DestinationConfig, request.state.config)
    results = dry_run(events.items, config, _klaviyo_url(request))
    annotate(request, events=len(results))
    status = webhook.status_code(
        [r["status"] for r in results], single=events.single, throttled=False
    )
    return JsonResponse({"results": results}, status_code=status)


@routes.get("/features", summary="rudder-server's transformer features (private network)")
async def features(request: Request) -> Response:
    front = _protocol_front(request)
    upstream = await front.upstream.features() if front.upstream is not None else None
    return JsonResponse(merged_features(upstream), headers=API_VERSION)


@routes.post(
    "/v0/destinations/{destination}",
    summary="rudder-server processor transform (private network)",
    openapi_extra=processor_openapi(),
    responses=PROCESSOR_RESPONSES,
)
async def post_processor(request: Request, destination: str) -> Response:
    front = _protocol_front(request)
    if destination.lower() != "klaviyo":
        return await pass_through(request)
    raw = await _protocol_bytes(request)
    body = processor_body(
        parse_json(raw, max_depth=None),
        compacted=_compacted(request),
        size=len(raw),
        limits=front.limits,
        raw=raw,
    )
    del raw  # the parsed body is all that is needed from here on
    annotate(request, jobs=len(body.jobs))
    try:
        items = await front.processor(
            body,
            request.headers.raw,
            # the route's own path (what request.url.path gives here, without building a URL)
            path=request.scope["path"],
            filter_code=_filter_code(request.headers.get("x-feature-filter-code")),
            base_url=_klaviyo_url(request),
        )
    except UpstreamError as exc:
        return _upstream_failed(request, exc)
    return JsonResponse(items, headers=API_VERSION)


@routes.post(
    "/routerTransform",
    summary="rudder-server router transform (private network)",
    openapi_extra=router_openapi(),
    responses=ROUTER_RESPONSES,
)
async def post_router(request: Request) -> Response:
    front = _protocol_front(request)
    raw = await _protocol_bytes(request)
    parsed = parse_json(raw, max_depth=None)
    dest_type = parsed.get("destType") if isinstance(parsed, dict) else None
    if isinstance(dest_type, str) and dest_type.lower() != "klaviyo":
        return await pass_through(request, body=raw)
    body = router_body(
        parsed,
        compacted=_compacted(request),
        size=len(raw),
        limits=front.limits,
        raw=raw,
    )
    del raw, parsed
    annotate(request, jobs=len(body.jobs))
    filter_code = _filter_code(request.headers.get("x-feature-filter-code"))
    if not body.jobs:
        outputs = await route(None, front.lookup, filter_code=filter_code)
    else:
        outputs = await front.router(
            body, request.headers.raw, filter_code=filter_code, base_url=_klaviyo_url(request)
        )
    return JsonResponse({"output": outputs}, headers=API_VERSION)


async def pass_through(request: Request, *, body: bytes | bytearray | None = None) -> Response:
    """A request this service does not serve: to the upstream transformer, or a clear error."""
    front = _protocol_front(request)
    if front.upstream is None:
        message = (
            f"{request.method} {request.url.path} is not served by this service (it serves "
            "Klaviyo apiVersion v1); set RUDDER_TRANSFORMER_URL to pass other transformer "
            "requests to a rudder-transformer"
        )
        logger.error(message, extra={"path": request.url.path})
        raise NotServed(message, field="RUDDER_TRANSFORMER_URL")
    annotate(request, upstream=True)
    try:
        return await front.upstream.forward(request, body=body)
    except UpstreamError as exc:
        return _upstream_failed(request, exc)


def _upstream_failed(request: Request, exc: UpstreamError) -> Response:
    """rudder-server retries a 5xx, so nothing it sent is lost while the upstream is away."""
    annotate(request, error="upstream_unavailable", reason=exc.message)
    error = {"code": "upstream_unavailable", "message": exc.message, "field": None}
    return JsonResponse(error_body(error), status_code=exc.status, headers=API_VERSION)


def _compacted(request: Request) -> bool:
    return request.headers.get("x-content-format", "").strip().lower() == COMPACTED


def _klaviyo_url(request: Request) -> str:
    """Where the requests in protocol answers go: ``KLAVIYO_BASE_URL``, or in embedded mode
    the emulator mounted on this service, as the caller reached it."""
    prefix = cast(str | None, request.state.emulator_prefix)
    if prefix is None:
        return cast(Settings, request.state.settings).klaviyo_base_url
    return str(request.base_url).rstrip("/") + prefix


def _filter_code(header: str | None) -> bool:
    """rudder-server sends ``X-Feature-Filter-Code: ?1`` (structured-field true) to ask for 299."""
    return header is not None and header.strip().lower() not in ("", "?0", "false", "0")


@routes.get("/health", summary="Liveness")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@routes.get("/ready", summary="Readiness: settings loaded and the Klaviyo client open")
async def ready(request: Request, klaviyo: KlaviyoDep) -> Response:
    if not klaviyo.is_open:
        return JsonResponse({"status": "starting"}, status_code=503)
    front = cast(Front, request.state.front)
    if request.state.emulator_prefix is not None:
        target = "the embedded emulator: nothing reaches Klaviyo"
    else:
        target = cast(Settings, request.state.settings).klaviyo_base_url
    upstream = front.upstream.url if front.upstream is not None else None
    return JsonResponse({"status": "ready", "klaviyo": target, "upstream_transformer": upstream})


@routes.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    registry = cast(DeliveryMetrics, request.state.metrics).registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def _processor_lane(request: Request) -> Response:
    return await post_processor(request, "klaviyo")


async def _events_lane(request: Request) -> Response:
    settings = cast(Settings, request.state.settings)
    check_token(request, settings)
    return await post_events(request, settings)


async def _batch_lane(request: Request) -> Response:
    settings = cast(Settings, request.state.settings)
    check_token(request, settings)
    return await post_batch(request, settings)


#: The routes that carry traffic, served by the fast lane (``api/fast_lane.py``).
HOT_ROUTES: Final = {
    ("POST", "/v0/destinations/klaviyo"): (_processor_lane, "/v0/destinations/{destination}"),
    ("POST", "/routerTransform"): (post_router, "/routerTransform"),
    ("POST", "/v1/events"): (_events_lane, "/v1/events"),
    ("POST", "/v1/batch"): (_batch_lane, "/v1/batch"),
}
