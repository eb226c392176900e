"""Response shapes of the HTTP API, for the OpenAPI document (``/docs``, schemathesis).

Documentation only: the routes build their bodies themselves and return ``JsonResponse``, so
nothing here validates or reshapes an answer. Keys the caller echoes back (``messageId``,
``metadata``, ``destination``) are any JSON. Extra keys are allowed everywhere.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from .samples import SAMPLES


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_request"])
    message: str
    field: str | None


class ErrorAnswer(BaseModel):
    """Every request-level error: ``{"error": {"code", "message", "field"}, "code",
    "message"}`` (the top-level pair is what the RudderStack and Segment SDKs read)."""

    error: ErrorDetail
    code: str | None = None
    message: str | None = None


class KlaviyoErrorItem(BaseModel):
    id: Any = None
    code: Any = None
    detail: Any = None
    source: dict[str, Any] | None = None


class EventError(ErrorDetail):
    """Why one event was rejected or failed; ``klaviyo_*`` when Klaviyo answered."""

    klaviyo_status: int | None = None
    klaviyo_errors: list[KlaviyoErrorItem] = []


class EventWarning(BaseModel):
    """Something the webhook path changed in what it sent for this event; the event was still
    sent. ``phone_not_e164``: a phone Klaviyo would refuse, left out (docs/mapping.md §13, "Phones
    in the webhook path")."""

    code: str = Field(examples=["phone_not_e164"])
    field: str = Field(
        description="the input field the value came from", examples=["context.traits.phone"]
    )
    message: str


class RequestResult(BaseModel):
    method: Literal["POST", "PATCH"]
    path: str
    status: int | None = Field(description="Klaviyo's HTTP status; null when none came")


class DeliveryResult(BaseModel):
    messageId: Any = None
    type: Any = None
    status: Literal["delivered", "rejected", "failed"]
    requests: list[RequestResult]
    error: EventError | None = None
    retry_after: float | None = None
    warnings: list[EventWarning] = Field(default=[], description="present only when there are")


class DeliveryAnswer(BaseModel):
    """``/v1/events``: one result per event, in input order."""

    results: list[DeliveryResult]


class RetryAnswer(DeliveryAnswer):
    """A batch to resend: the per-event results, and the ``code``/``message`` SDKs read."""

    code: str
    message: str


class PlannedRequestShown(BaseModel):
    method: Literal["POST", "PATCH"]
    url: str
    headers: dict[str, str]
    body: dict[str, Any]
    on_conflict: str | None = None


class PlannedResult(BaseModel):
    messageId: Any = None
    type: Any = None
    status: Literal["planned", "rejected"]
    requests: list[PlannedRequestShown]
    error: EventError | None = None
    warnings: list[EventWarning] = Field(default=[], description="as delivery would give them")


class DryRunAnswer(BaseModel):
    """``/v1/transform``: the requests ``/v1/events`` would send, key masked."""

    results: list[PlannedResult]


class RestRequest(BaseModel):
    """rudder-server's REST envelope of one Klaviyo request."""

    version: str
    type: Literal["REST"]
    method: Literal["POST", "PATCH"]
    endpoint: str
    endpointPath: str
    headers: dict[str, str]
    params: dict[str, Any]
    body: dict[str, Any]
    files: dict[str, Any]
    userId: str | None = None
    statusCode: int | None = None
    error: str | None = None


class StatTags(BaseModel):
    errorCategory: str
    errorType: str | None = None


class ProcessorItem(BaseModel):
    """One processor answer item: a request for the job, or why there is none."""

    metadata: Any = None
    statusCode: int
    output: RestRequest | None = None
    error: str | None = None
    statTags: StatTags | None = None


class RouterOutput(BaseModel):
    metadata: list[Any]
    batched: bool
    statusCode: int
    batchedRequest: RestRequest | list[RestRequest] | None = None
    destination: Any = None
    error: str | None = None
    statTags: StatTags | None = None


class RouterAnswer(BaseModel):
    output: list[RouterOutput]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorAnswer, "description": description}


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before resending the whole request",
        "required": True,
        "schema": {"type": "string"},
    }
}
_PER_EVENT_OR_REQUEST = "Every event rejected (reasons per event), or a malformed request"
#: What the HTTP edge answers on every POST route (``api/edge.py``).
_EDGE_ERRORS: dict[int | str, dict[str, Any]] = {
    408: _error("The body did not arrive within BODY_TIMEOUT"),
    415: _error(
        "A Content-Encoding other than gzip or deflate, or (without WEBHOOK_TOKEN) a "
        "Content-Type that is not JSON"
    ),
    421: _error("Without WEBHOOK_TOKEN: Host is not a loopback name"),
}

EVENTS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": DeliveryAnswer, "description": "Every event delivered"},
    207: {"model": DeliveryAnswer, "description": "Some events rejected, the rest delivered"},
    400: {"model": DeliveryAnswer | ErrorAnswer, "description": _PER_EVENT_OR_REQUEST},
    401: _error("Missing or wrong webhook token"),
    413: _error("Body larger than MAX_BODY_BYTES, or more than MAX_BATCH_EVENTS events"),
    **_EDGE_ERRORS,
    429: {
        "model": DeliveryAnswer,
        "description": "Klaviyo (or the client-side limiter) throttled: resend later",
        "headers": _RETRY_AFTER,
    },
    503: {
        "model": DeliveryAnswer,
        "description": "Klaviyo unavailable (5xx, timeout, connection error): resend later",
        "headers": _RETRY_AFTER,
    },
}
TRANSFORM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": DryRunAnswer, "description": "Every event planned"},
    207: {"model": DryRunAnswer, "description": "Some events rejected, the rest planned"},
    400: {"model": DryRunAnswer | ErrorAnswer, "description": _PER_EVENT_OR_REQUEST},
    401: _error("Missing or wrong webhook token"),
    413: _error("Body larger than MAX_BODY_BYTES, or more than MAX_BATCH_EVENTS events"),
    **_EDGE_ERRORS,
}
SDK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": DeliveryAnswer,
        "description": "Every event delivered or permanently rejected (reasons per event)",
    },
    400: _error("Malformed body (invalid JSON or gzip, too deep, wrong shape)"),
    401: _error("Missing or wrong write key (WEBHOOK_TOKEN)"),
    413: _error("Body larger than MAX_BODY_BYTES once decompressed, or too many events"),
    429: {
        "model": RetryAnswer,
        "description": "Throttled: resend the batch later",
        "headers": _RETRY_AFTER,
    },
    503: {
        "model": RetryAnswer,
        "description": "Klaviyo unavailable: resend the batch later",
        "headers": _RETRY_AFTER,
    },
    **_EDGE_ERRORS,
}
_PROTOCOL_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("Malformed body (invalid JSON or gzip, not the protocol's shape)"),
    404: _error("The rudder-server protocol is switched off (ENABLE_RUDDER_PROTOCOL=false)"),
    413: _error("Body larger than MAX_PROTOCOL_BODY_BYTES"),
    502: _error("The upstream transformer is unreachable (rudder-server retries)"),
    503: _error("The upstream transformer failed this request's v2/v3 part (retried)"),
    504: _error("The upstream transformer timed out (rudder-server retries)"),
    **_EDGE_ERRORS,
}
PROCESSOR_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": list[ProcessorItem], "description": "One item per produced request or error"},
    **_PROTOCOL_ERRORS,
}
ROUTER_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": RouterAnswer, "description": "Batched requests and per-job errors"},
    **_PROTOCOL_ERRORS,
}


# --- request bodies of the rudder-server endpoints (they read the raw body themselves) ---------

_JOB = {
    "type": "object",
    "properties": {
        "message": {"type": "object", "description": "the RudderStack event"},
        "metadata": {"type": "object", "description": "echoed back (jobId, userId, ...)"},
        "destination": {
            "type": "object",
            "properties": {"ID": {"type": "string"}, "Config": {"type": "object"}},
        },
    },
}


def _job_example() -> dict[str, Any]:
    return {
        "message": SAMPLES["track"],
        "metadata": {"jobId": 1, "userId": "user-1"},
        "destination": {"ID": "d1", "Config": {"privateApiKey": "pk_your_private_key"}},
    }


def _request_body(schema: dict[str, Any], example: Any) -> dict[str, Any]:
    content = {"application/json": {"schema": schema, "example": example}}
    return {"requestBody": {"required": True, "content": content}}


def processor_openapi() -> dict[str, Any]:
    """``openapi_extra`` of ``/v0/destinations/klaviyo``: a JSON array of jobs."""
    return _request_body({"type": "array", "items": _JOB}, [_job_example()])


def router_openapi() -> dict[str, Any]:
    """``openapi_extra`` of ``/routerTransform``: ``{"input": [jobs]}``."""
    schema = {"type": "object", "properties": {"input": {"type": "array", "items": _JOB}}}
    return _request_body(schema, {"input": [_job_example()]})
