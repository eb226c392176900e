"""The HTTP routes: parse, call one function, return; the work lives in the stages below."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final

import orjson
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..errors import NotFound, NotServed, UpstreamError
from ..ingest.body import Events, events_of, parse_json
from ..klaviyo import KlaviyoClient, Outcome
from ..klaviyo.answers import retired_there
from ..phones import PhoneRule
from ..planned import PlannedEvent
from ..protocol import route
from ..protocol.bodies import COMPACTED, processor_body, router_body
from ..protocol.features import merged_features
from ..protocol.front import Front
from ..protocol.passthrough import upstream_path
from ..settings import Settings
from . import webhook
from .auth import check_token
from .body import read_bytes, read_json
from .dry_run import dry_run
from .exchange import Answer, Call, state_of
from .models import (
    EVENTS_RESPONSES,
    PROCESSOR_RESPONSES,
    ROUTER_RESPONSES,
    SDK_RESPONSES,
    TRANSFORM_RESPONSES,
    processor_openapi,
    router_openapi,
)
from .openapi import EVENTS_TAG, OPERATIONS_TAG, PROTOCOL_TAG, events_openapi
from .refusals import API_VERSION, PROTOCOL
from .responses import JsonResponse, error_body

logger = logging.getLogger(__name__)
API_VERSION_HEADERS: Final = ((b"apiversion", b"2"),)
routes = APIRouter()
#: The single-event routes of the RudderStack HTTP API; page and alias events are answered
#: with the reference's rejection, per event.
SDK_EVENT_TYPES: Final = ("identify", "track", "screen", "group", "page", "alias")


async def _klaviyo(request: Request) -> KlaviyoClient:
    return state_of(request.scope)["klaviyo"]


KlaviyoDep = Annotated[KlaviyoClient, Depends(_klaviyo)]
Served = Answer | Response
Handler = Callable[[Call], Awaitable[Served]]


def served_response(served: Served) -> Response:
    return served.response() if isinstance(served, Answer) else served


def _post(path: str, handler: Handler, *, name: str, **described: Any) -> None:
    """``POST path`` as a FastAPI route (so in the OpenAPI document, as ``described``), served
    by ``handler``: the way in besides the lanes (``serving/lanes.py``), which call it directly."""

    async def endpoint(request: Request) -> Response:
        return served_response(await handler(Call.of(request)))

    routes.add_api_route(path, endpoint, methods=["POST"], name=name, **described)


def _protocol_front(call: Call) -> Front:
    """The protocol routes' shared parts, read without FastAPI dependencies: solving them was
    the largest cost of a one-event request (bench/optimisations.md), and these are the hot path."""
    if not call.state["settings"].enable_rudder_protocol:
        raise NotFound("the rudder-server protocol endpoints are switched off", field="path")
    call.state[PROTOCOL] = True  # its error answers carry apiVersion too
    return call.state["front"]


def _authorized(call: Call) -> Settings:
    """The settings, once the request presented the token (before its body is read)."""
    settings = call.state["settings"]
    check_token(call.raw_headers, settings)
    return settings


async def _events(call: Call, settings: Settings, default_type: str | None = None) -> Events:
    """The body's events; ``default_type`` is the type of a single event that names none."""
    body = await read_json(
        call,
        max_bytes=settings.max_body_bytes,
        max_depth=settings.max_json_depth,
        drain_bytes=settings.max_drain_bytes,
    )
    if default_type is not None and isinstance(body, dict) and body.get("type") is None:
        body = {**body, "type": default_type}
    return events_of(body, max_events=settings.max_batch_events)


async def protocol_bytes(call: Call) -> bytearray:
    """A protocol route's body, read as the route reads it (bench/without_handler.py too)."""
    settings = call.state["settings"]
    return await read_bytes(
        call,
        max_bytes=settings.max_protocol_body_bytes,
        drain_bytes=settings.max_drain_bytes,
        max_decoded_bytes=settings.max_protocol_decoded_bytes,
        decoded_setting="MAX_PROTOCOL_DECODED_BYTES",
    )


async def events(call: Call) -> Answer:
    settings = _authorized(call)
    events = await _events(call, settings)
    delivered = await _deliver(call, events.items)
    body, status, headers = webhook.webhook_answer(delivered, single=events.single)
    return Answer.json(body, status, headers)


_post(
    "/v1/events",
    events,
    name="post_events",
    summary="Deliver events to Klaviyo (webhook)",
    openapi_extra=events_openapi(),
    tags=[EVENTS_TAG],
    responses=EVENTS_RESPONSES,
)


async def batch(call: Call, default_type: str | None = None) -> Answer:
    """The SDK routes' events delivered; ``default_type`` as for :func:`_events`."""
    settings = _authorized(call)
    events = await _events(call, settings, default_type)
    return _sdk_answer(await _deliver(call, events.items))


_post(
    "/v1/batch",
    batch,
    name="post_batch",
    summary="RudderStack/Segment HTTP API: a batch of events, as the SDKs send it",
    openapi_extra=events_openapi(),
    tags=[EVENTS_TAG],
    responses=SDK_RESPONSES,
)


async def post_one(request: Request) -> Response:
    """``/v1/<type>``: one event; the path gives its type when the body has none."""
    call = Call.of(request)
    return (await batch(call, default_type=call.path.rsplit("/", 1)[-1])).response()


for _type in SDK_EVENT_TYPES:
    routes.add_api_route(
        f"/v1/{_type}",
        post_one,
        methods=["POST"],
        summary=f"RudderStack/Segment HTTP API: one {_type} event",
        openapi_extra=events_openapi(),
        tags=[EVENTS_TAG],
        responses=SDK_RESPONSES,
        name=f"post_{_type}",
    )


async def _deliver(call: Call, items: list[Any]) -> list[tuple[PlannedEvent, Outcome]]:
    state = call.state
    phones = PhoneRule(state["settings"].default_phone_region)
    delivered = await webhook.deliver_events(
        items, state["config"], state["session"], phones=phones
    )
    tally = webhook.record(delivered, state["events"])
    call.annotate(events=len(delivered), **tally)
    return delivered


def _sdk_answer(delivered: list[tuple[PlannedEvent, Outcome]]) -> Answer:
    body, status, headers = webhook.sdk_answer(delivered)
    return Answer.json(body, status, headers)


@routes.post(
    "/v1/transform",
    summary="Dry run: the Klaviyo requests /v1/events would send; nothing is sent",
    openapi_extra=events_openapi(),
    tags=[EVENTS_TAG],
    responses=TRANSFORM_RESPONSES,
)
async def post_transform(request: Request) -> Response:
    call = Call.of(request)
    settings = _authorized(call)
    events = await _events(call, settings)
    phones = PhoneRule(settings.default_phone_region)
    results = dry_run(events.items, call.state["config"], _klaviyo_url(call), phones=phones)
    call.annotate(events=len(results))
    status = webhook.status_code(
        [r["status"] for r in results], single=events.single, throttled=False
    )
    return Answer.json({"results": results}, status).response()


@routes.get(
    "/features",
    summary="rudder-server's transformer features (private network)",
    tags=[PROTOCOL_TAG],
)
async def features(request: Request) -> Response:
    front = _protocol_front(Call.of(request))
    if front.upstream is None:
        return Answer.json(merged_features(None), headers=API_VERSION).response()
    upstream = await front.upstream.features()
    if upstream is None:
        # Never more than the upstream supports: on a 5xx rudder-server keeps the document it
        # had (its defaults at start, compaction off), where ours alone would switch compacted
        # bodies on for every destination and drop the upstream's routerTransform flags.
        raise UpstreamError(
            "the upstream transformer (RUDDER_TRANSFORMER_URL) has not answered /features yet; "
            "rudder-server keeps the features it had until it does"
        )
    return Answer.json(merged_features(upstream), headers=API_VERSION).response()


async def processor(call: Call) -> Served:
    """A processor request to the klaviyo destination (any case)."""
    front = _protocol_front(call)
    raw = await protocol_bytes(call)
    body = processor_body(
        parse_json(raw, max_depth=None),
        compacted=_compacted(call),
        size=len(raw),
        limits=front.limits,
        raw=raw,
    )
    del raw  # the parsed body is all that is needed from here on
    call.annotate(jobs=len(body.jobs))
    items = await front.processor(
        body,
        filter_code=_filter_code(call.headers.get("x-feature-filter-code")),
        base_url=_klaviyo_url(call),
    )
    return Answer(200, orjson.dumps(items), API_VERSION_HEADERS)


@routes.post(
    "/v0/destinations/{destination}",
    summary="rudder-server processor transform (private network)",
    openapi_extra=processor_openapi(),
    tags=[PROTOCOL_TAG],
    responses=PROCESSOR_RESPONSES,
)
async def post_processor(request: Request, destination: str) -> Response:
    call = Call.of(request)
    if destination.lower() != "klaviyo":
        return served_response(await pass_through(call))
    return served_response(await processor(call))


async def router(call: Call) -> Served:
    front = _protocol_front(call)
    raw = await protocol_bytes(call)
    parsed = parse_json(raw, max_depth=None)
    dest_type = parsed.get("destType") if isinstance(parsed, dict) else None
    if isinstance(dest_type, str) and dest_type.lower() != "klaviyo":
        return await pass_through(call, body=raw)
    body = router_body(
        parsed,
        compacted=_compacted(call),
        size=len(raw),
        limits=front.limits,
        raw=raw,
    )
    del raw, parsed
    call.annotate(jobs=len(body.jobs))
    filter_code = _filter_code(call.headers.get("x-feature-filter-code"))
    if not body.jobs:
        outputs = await route(None, front.lookup, filter_code=filter_code)
    else:
        outputs = await front.router(body, filter_code=filter_code, base_url=_klaviyo_url(call))
    return Answer(200, orjson.dumps({"output": outputs}), API_VERSION_HEADERS)


_post(
    "/routerTransform",
    router,
    name="post_router",
    summary="rudder-server router transform (private network)",
    openapi_extra=router_openapi(),
    tags=[PROTOCOL_TAG],
    responses=ROUTER_RESPONSES,
)


async def pass_through(call: Call, *, body: bytes | bytearray | None = None) -> Served:
    """A request this service does not serve: to the upstream transformer, or a clear error."""
    front = _protocol_front(call)
    path = upstream_path(call.scope)
    if front.upstream is None:
        message = (
            f"{call.method} {call.path} is not served by this service (it serves "
            "Klaviyo, apiVersion v1, v2 and v3); set RUDDER_TRANSFORMER_URL to pass other "
            "transformer requests to a rudder-transformer"
        )
        logger.error(message, extra={"path": call.path})
        raise NotServed(message, field="RUDDER_TRANSFORMER_URL")
    call.annotate(upstream=True)
    try:
        return await front.upstream.forward(
            call.method,
            path,
            call.query,
            call.raw_headers,
            body if body is not None else call.stream(),
            broken=lambda exc: _annotate_failure(call, exc),
        )
    except UpstreamError as exc:
        return _upstream_failed(call, exc)


def _annotate_failure(call: Call, exc: UpstreamError) -> None:
    call.annotate(error=exc.code, reason=exc.message)


def _upstream_failed(call: Call, exc: UpstreamError) -> Answer:
    """rudder-server retries a 5xx, so nothing it sent is lost while the upstream is away."""
    _annotate_failure(call, exc)
    error = {"code": exc.code, "message": exc.message, "field": None}
    return Answer.json(error_body(error), exc.status, API_VERSION)


def _compacted(call: Call) -> bool:
    return call.headers.get("x-content-format", "").strip().lower() == COMPACTED


def _klaviyo_url(call: Call) -> str:
    """Where the requests in protocol answers go: ``KLAVIYO_BASE_URL``, or in embedded mode
    the emulator mounted on this service, as the caller reached it."""
    prefix = call.state["emulator_prefix"]
    if prefix is None:
        return call.state["settings"].klaviyo_base_url
    return call.base_url().rstrip("/") + prefix


def _filter_code(header: str | None) -> bool:
    """rudder-server sends ``X-Feature-Filter-Code: ?1`` (structured-field true) to ask for 299."""
    return header is not None and header.strip().lower() not in ("", "?0", "false", "0")


@routes.get("/health", summary="Liveness", tags=[OPERATIONS_TAG])
async def health() -> dict[str, str]:
    return {"status": "ok"}


@routes.get(
    "/ready",
    summary="Readiness: settings loaded and the Klaviyo client open",
    tags=[OPERATIONS_TAG],
)
async def ready(request: Request, klaviyo: KlaviyoDep) -> Response:
    if not klaviyo.is_open:
        return JsonResponse({"status": "starting"}, status_code=503)
    state = state_of(request.scope)
    front, settings = state["front"], state["settings"]
    warning = None
    if state["emulator_prefix"] is not None:
        target = "the embedded emulator: nothing reaches Klaviyo"
    else:
        target = settings.klaviyo_base_url
        warning = retired_there(target, settings.revision)
    upstream = front.upstream.url if front.upstream is not None else None
    body = {
        "status": "ready",
        "klaviyo": target,
        # what /v1/events, the SDK routes and the dry run deliver at (KLAVIYO_API_VERSION)
        "revision": settings.revision.name,
        "api_version": settings.revision.api_version.value,
        "upstream_transformer": upstream,
    }
    if settings.redis_url is not None:
        # "local" while Redis cannot be reached: each process keeps its own (REPLICAS share)
        body["rate_limits"] = "shared" if klaviyo.limits.shared else "local"
    if warning is not None:
        body["warning"] = warning
    return JsonResponse(body)


@routes.get("/metrics", summary="Prometheus metrics", tags=[OPERATIONS_TAG])
async def metrics(request: Request) -> Response:
    registry = state_of(request.scope)["metrics"].registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
