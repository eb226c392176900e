"""Routes only: parse, call one function, return; the work lives in service and protocol."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from . import service
from .api_models import (
    EVENTS_RESPONSES,
    PROCESSOR_RESPONSES,
    ROUTER_RESPONSES,
    TRANSFORM_RESPONSES,
    processor_body,
    router_body,
)
from .auth import check_token
from .delivery import KlaviyoClient
from .errors import BadRequest, NotFound
from .metrics import DeliveryMetrics
from .payload import events_of, read_json
from .responses import JsonResponse
from .router import route
from .rudder import DestinationConfig
from .rudder_protocol import process
from .samples import request_body_examples
from .settings import Settings

router = APIRouter()


async def _settings(request: Request) -> Settings:
    return cast(Settings, request.state.settings)


async def _klaviyo(request: Request) -> KlaviyoClient:
    return cast(KlaviyoClient, request.state.klaviyo)


SettingsDep = Annotated[Settings, Depends(_settings)]
KlaviyoDep = Annotated[KlaviyoClient, Depends(_klaviyo)]


async def _authorized(request: Request, settings: SettingsDep) -> None:
    check_token(request, settings)


def _protocol_state(request: Request) -> tuple[Settings, KlaviyoClient]:
    """Settings and client for the rudder-server endpoints, read without FastAPI dependencies:
    solving them was 30% of a one-event request's time, and these are the hot path."""
    settings = cast(Settings, request.state.settings)
    if not settings.enable_rudder_protocol:
        raise NotFound("the rudder-server protocol endpoints are switched off", field="path")
    return settings, cast(KlaviyoClient, request.state.klaviyo)


async def _body(request: Request, settings: Settings) -> Any:
    return await read_json(
        request, max_bytes=settings.max_body_bytes, max_depth=settings.max_json_depth
    )


@router.post(
    "/v1/events",
    dependencies=[Depends(_authorized)],
    summary="Deliver events to Klaviyo (webhook)",
    openapi_extra=request_body_examples(),
    responses=EVENTS_RESPONSES,
)
async def post_events(request: Request, settings: SettingsDep, klaviyo: KlaviyoDep) -> Response:
    events = events_of(await _body(request, settings), max_events=settings.max_batch_events)
    config = cast(DestinationConfig, request.state.config)
    delivered = await service.deliver_events(events.items, config, klaviyo)
    service.record(delivered, request.state.events)
    body, status, headers = service.webhook_answer(delivered, single=events.single)
    return JsonResponse(body, status_code=status, headers=headers)


@router.post(
    "/v1/transform",
    dependencies=[Depends(_authorized)],
    summary="Dry run: the Klaviyo requests /v1/events would send; nothing is sent",
    openapi_extra=request_body_examples(),
    responses=TRANSFORM_RESPONSES,
)
async def post_transform(request: Request, settings: SettingsDep) -> Response:
    events = events_of(await _body(request, settings), max_events=settings.max_batch_events)
    config = cast(DestinationConfig, request.state.dry_run_config)
    results = service.dry_run(events.items, config, settings.klaviyo_base_url)
    status = service.status_code(
        [r["status"] for r in results], single=events.single, throttled=False
    )
    return JsonResponse({"results": results}, status_code=status)


@router.post(
    "/v0/destinations/klaviyo",
    summary="rudder-server processor transform (private network)",
    openapi_extra=processor_body(),
    responses=PROCESSOR_RESPONSES,
)
async def post_processor(request: Request) -> Response:
    settings, klaviyo = _protocol_state(request)
    body = await _body(request, settings)
    if not isinstance(body, list):
        raise BadRequest("the processor protocol takes a JSON array of jobs", field="body")
    items = await process(
        body,
        _lookup(klaviyo),
        filter_code=_filter_code(request.headers.get("x-feature-filter-code")),
        base_url=settings.klaviyo_base_url,
    )
    return JsonResponse(items)


@router.post(
    "/routerTransform",
    summary="rudder-server router transform (private network)",
    openapi_extra=router_body(),
    responses=ROUTER_RESPONSES,
)
async def post_router(request: Request) -> Response:
    settings, klaviyo = _protocol_state(request)
    body = await _body(request, settings)
    jobs = body.get("input") if isinstance(body, dict) else None
    outputs = await route(
        jobs,
        _lookup(klaviyo),
        filter_code=_filter_code(request.headers.get("x-feature-filter-code")),
        base_url=settings.klaviyo_base_url,
    )
    return JsonResponse({"output": outputs})


def _lookup(klaviyo: KlaviyoClient) -> Any:
    async def lookup(body: dict[str, Any], key: SecretStr) -> tuple[int, Any]:
        return await klaviyo.create_profile_once(body, api_key=key)

    return lookup


def _filter_code(header: str | None) -> bool:
    """rudder-server sends ``X-Feature-Filter-Code: ?1`` (structured-field true) to ask for 299."""
    return header is not None and header.strip().lower() not in ("", "?0", "false", "0")


@router.get("/health", summary="Liveness")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", summary="Readiness: settings loaded and the Klaviyo client open")
async def ready(klaviyo: KlaviyoDep) -> Response:
    if not klaviyo.is_open:
        return JsonResponse({"status": "starting"}, status_code=503)
    return JsonResponse({"status": "ready"})


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    registry = cast(DeliveryMetrics, request.state.metrics).registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
