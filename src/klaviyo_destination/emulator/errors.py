"""Klaviyo's JSON:API error objects as values: the store raises them, the HTTP layer renders them.

Titles, codes and details are the verbatim strings observed from the real API at revision
2023-02-22. Where Klaviyo's real wording is not known, the wording here is ours and is marked
as such in the docstring of the factory.

The emulator's two exceptions live here, apart from the service's tree (``errors.py``): the
emulator stands in for Klaviyo and imports nothing of the service but Klaviyo's facts.

    ApiError                      a Klaviyo error answer: status, error objects, headers
    httpx.RemoteProtocolError
    └── DroppedConnection         a response aborted on purpose (the drop_connection fault)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final
from uuid import uuid4

import httpx

from klaviyo_destination.emulator.models import JsonObject

RATE_LIMIT_DOCS: Final = (
    "https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling#rate-limits"
)

#: (code, title) Klaviyo uses per status, for faults that carry no body of their own.
_STATUS_CODES: Final[Mapping[int, tuple[str, str]]] = {
    400: ("invalid", "Invalid input."),
    401: ("not_authenticated", "Authentication credentials were not provided."),
    403: ("permission_denied", "You do not have permission to perform this action."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "Method not allowed."),
    409: ("conflict", "Conflict."),
    410: ("gone", "Gone."),
    415: ("unsupported_media_type", "Unsupported media type."),
    429: ("throttled", "Request was throttled."),
    500: ("error", "A server error occurred."),
    503: ("service_unavailable", "Service unavailable."),
}


@dataclass(frozen=True, slots=True)
class ErrorObject:
    """One entry of ``{"errors": [...]}``; ``id`` is minted when rendered, as Klaviyo does."""

    status: int
    code: str
    title: str
    detail: str
    pointer: str | None = None
    parameter: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    links: Mapping[str, str] = field(default_factory=dict)

    def as_json(self) -> JsonObject:
        source: JsonObject = {}
        if self.pointer is not None:
            source["pointer"] = self.pointer
        if self.parameter is not None:
            source["parameter"] = self.parameter
        return {
            "id": str(uuid4()),
            "status": self.status,
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
            "source": source,
            "links": dict(self.links),
            "meta": dict(self.meta),
        }


class ApiError(Exception):
    """A Klaviyo error response: one HTTP status, one or more error objects, extra headers."""

    def __init__(self, *errors: ErrorObject, headers: Mapping[str, str] | None = None) -> None:
        if not errors:
            raise ValueError("an ApiError needs at least one error object")
        super().__init__(errors[0].detail)
        self.errors = errors
        self.status = errors[0].status
        self.headers = dict(headers or {})

    def body(self) -> JsonObject:
        return {"errors": [error.as_json() for error in self.errors]}


def invalid_object(
    detail: str, *, pointer: str | None = None, parameter: str | None = None
) -> ErrorObject:
    return ErrorObject(400, "invalid", "Invalid input.", detail, pointer, parameter)


def invalid(detail: str, *, pointer: str | None = None, parameter: str | None = None) -> ApiError:
    return ApiError(invalid_object(detail, pointer=pointer, parameter=parameter))


def invalid_payload() -> ApiError:
    """Body is not JSON, or not an object (klaviyo-api-ruby#15 wording)."""
    return invalid("The payload provided in the request is invalid.", pointer="/data")


def not_authenticated() -> ApiError:
    return ApiError(
        ErrorObject(
            401,
            "not_authenticated",
            "Authentication credentials were not provided.",
            "Missing or invalid private key.",
            pointer="/data/",
        )
    )


def profile_not_found(profile_id: str) -> ApiError:
    detail = f"A profile with id {profile_id} does not exist."
    return ApiError(ErrorObject(404, "not_found", "Not found.", detail, pointer="/data/"))


def duplicate_profile(profile_id: str) -> ApiError:
    """409 exactly as klaviyo-api-node#75 shows it; peers PATCH ``meta.duplicate_profile_id``."""
    return ApiError(
        ErrorObject(
            409,
            "duplicate_profile",
            "Conflict.",
            "A profile already exists with one of these identifiers.",
            pointer="/data/attributes",
            meta={"duplicate_profile_id": profile_id},
        )
    )


def throttled(wait_seconds: float, *, send_retry_after: bool) -> ApiError:
    """429 ``throttled``.

    The detail floors the wait ("Expected available in 0 seconds." was observed in March 2023
    for a sub-second burst wait) while ``Retry-After`` is rounded up to a whole second so a
    client that honours it never comes back early. The switch drops ``Retry-After`` because the
    2023 response (klaviyo-api-python#15) carried none.
    """
    seconds = max(0, math.floor(wait_seconds))
    unit = "second" if seconds == 1 else "seconds"
    error = ErrorObject(
        429,
        "throttled",
        "Request was throttled.",
        f"Request was throttled. Expected available in {seconds} {unit}.",
        pointer="/data/",
        links={"type": RATE_LIMIT_DOCS},
    )
    headers = {"Retry-After": str(max(1, math.ceil(wait_seconds)))} if send_retry_after else {}
    return ApiError(error, headers=headers)


def for_status(status: int, detail: str | None = None) -> ApiError:
    """A generic error of ``status``, used for injected faults and unmatched routes."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    code, title = _STATUS_CODES.get(status, ("error", f"{phrase}."))
    return ApiError(ErrorObject(status, code, title, detail or f"{phrase}.", pointer="/data/"))


def unsupported_media_type(media_type: str) -> ApiError:
    detail = f"Unsupported media type '{media_type}' in request."
    return ApiError(ErrorObject(415, "unsupported_media_type", "Unsupported media type.", detail))


class DroppedConnection(httpx.RemoteProtocolError):
    """Aborts a response on purpose (the ``drop_connection`` fault).

    It is raised after a response start has been sent, so Starlette does not answer 500 and
    uvicorn closes the socket mid-response: the client reads a truncated response, which httpx
    reports as ``RemoteProtocolError``. Under ``httpx.ASGITransport`` the exception itself
    reaches the client, and being an httpx transport error it is handled like the real thing.
    """
