"""The HTTP routes: parse, call one function, return; the work lives in the stages below."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..errors import BadRequest, NotFound
from ..ingest.body import events_of
from ..ingest.config import DestinationConfig
from ..klaviyo import DeliveryMetrics, KlaviyoClient, KlaviyoSession
from ..protocol import ProfileLookup, process, route
from ..settings import Settings
from . import webhook
from .auth import check_token
from .body import read_json
from .dry_run import dry_run
from .models import (
    EVENTS_RESPONSES,
    PROCESSOR_RESPONSES,
    ROUTER_RESPONSES,
    TRANSFORM_RESPONSES,
    processor_body,
    router_body,
)
from .request_log import annotate
from .responses import JsonResponse
from .samples import request_body_examples

routes = APIRouter()


async def _settings(request: Request) -> Settings:
    return cast(Settings, request.state.settings)


async def _klaviyo(request: Request) -> KlaviyoClient:
    return cast(KlaviyoClient, request.state.klaviyo)


SettingsDep = Annotated[Settings, Depends(_settings)]
KlaviyoDep = Annotated[KlaviyoClient, Depends(_klaviyo)]


async def _authorized(request: Request, settings: SettingsDep) -> None:
    check_token(request, settings)


def _protocol_state(request: Request) -> tuple[Settings, ProfileLookup]:
    """Settings and look-up for the rudder-server endpoints, read without FastAPI dependencies:
    solving them was 30% of a one-event request's time, and these are the hot path."""
    settings = cast(Settings, request.state.settings)
    if not settings.enable_rudder_protocol:
        raise NotFound("the rudder-server protocol endpoints are switched off", field="path")
    return settings, cast(ProfileLookup, request.state.lookup)


async def _body(request: Request, settings: Settings) -> Any:
    return await read_json(
        request,
        max_bytes=settings.max_body_bytes,
        max_depth=settings.max_json_depth,
        drain_bytes=settings.max_drain_bytes,
    )


@routes.post(
    "/v1/events",
    dependencies=[Depends(_authorized)],
    summary="Deliver events to Klaviyo (webhook)",
    openapi_extra=request_body_examples(),
    responses=EVENTS_RESPONSES,
)
async def post_events(request: Request, settings: SettingsDep) -> Response:
    events = events_of(await _body(request, settings), max_events=settings.max_batch_events)
    config = cast(DestinationConfig, request.state.config)
    session = cast(KlaviyoSession, request.state.session)
    delivered = await webhook.deliver_events(events.items, config, session)
    tally = webhook.record(delivered, request.state.events)
    annotate(request, events=len(delivered), **tally)
    body, status, headers = webhook.webhook_answer(delivered, single=events.single)
    return JsonResponse(body, status_code=status, headers=headers)


@routes.post(
    "/v1/transform",
    dependencies=[Depends(_authorized)],
    summary="Dry run: the Klaviyo requests /v1/events would send; nothing is sent",
    openapi_extra=request_body_examples(),
    responses=TRANSFORM_RESPONSES,
)
async def post_transform(request: Request, settings: SettingsDep) -> Response:
    events = events_of(await _body(request, settings), max_events=settings.max_batch_events)
    config = cast(DestinationConfig, request.state.config)
    results = dry_run(events.items, config, settings.klaviyo_base_url)
    annotate(request, events=len(results))
    status = webhook.status_code(
        [r["status"] for r in results], single=events.single, throttled=False
    )
    return JsonResponse({"results": results}, status_code=status)


@routes.post(
    "/v0/destinations/klaviyo",
    summary="rudder-server processor transform (private network)",
    openapi_extra=processor_body(),
    responses=PROCESSOR_RESPONSES,
)
async def post_processor(request: Request) -> Response:
    settings, lookup = _protocol_state(request)
    body = await _body(request, settings)
    if not isinstance(body, list):
        raise BadRequest("the processor protocol takes a JSON array of jobs", field="body")
    annotate(request, jobs=len(body))
    items = await process(
        body,
        lookup,
        filter_code=_filter_code(request.headers.get("x-feature-filter-code")),
        base_url=settings.klaviyo_base_url,
    )
    return JsonResponse(items)


@routes.post(
    "/routerTransform",
    summary="rudder-server router transform (private network)",
    openapi_extra=router_body(),
    responses=ROUTER_RESPONSES,
)
async def post_router(request: Request) -> Response:
    settings, lookup = _protocol_state(request)
    body = await _body(request, settings)
    jobs = body.get("input") if isinstance(body, dict) else None
    annotate(request, jobs=len(jobs) if isinstance(jobs, list) else 0)
    outputs = await route(
        jobs,
        lookup,
        filter_code=_filter_code(request.headers.get("x-feature-filter-code")),
        base_url=settings.klaviyo_base_url,
    )
    return JsonResponse({"output": outputs})


def _filter_code(header: str | None) -> bool:
    """rudder-server sends ``X-Feature-Filter-Code: ?1`` (structured-field true) to ask for 299."""
    return header is not None and header.strip().lower() not in ("", "?0", "false", "0")


@routes.get("/health", summary="Liveness")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@routes.get("/ready", summary="Readiness: settings loaded and the Klaviyo client open")
async def ready(klaviyo: KlaviyoDep) -> Response:
    if not klaviyo.is_open:
        return JsonResponse({"status": "starting"}, status_code=503)
    return JsonResponse({"status": "ready"})


@routes.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    registry = cast(DeliveryMetrics, request.state.metrics).registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
