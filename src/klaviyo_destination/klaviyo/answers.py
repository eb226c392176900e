"""Reading Klaviyo's answers: bodies, JSON:API ``errors[]``, verdicts and profile ids.

Pure functions over a status and a parsed body (or an ``httpx`` exception), so the delivery
path and the rudder-server protocol's look-up read answers the same way (docs/mapping.md §6.7,
§13).
"""

from __future__ import annotations

from typing import Any, Final

import httpx
import orjson
from pydantic import SecretStr

from ..errors import (
    KlaviyoAuthRejected,
    KlaviyoRedirected,
    KlaviyoRejected,
    KlaviyoRevisionRetired,
    KlaviyoUnavailable,
    UnusableAnswer,
)
from ..js import JsonObject
from ..redact import redact, redact_json
from .ratelimit import retry_after

_RETIRED: Final = (
    "Klaviyo answered 410 Gone: API revision 2023-02-22 is retired there. Point "
    "KLAVIYO_BASE_URL at the bundled emulator, or upgrade this service to a supported revision"
)
#: Transport failures named as the reference's HTTP client (Node) names them (§6.7).
_SOCKET_ERRORS: Final = {
    "ECONNREFUSED": (500, "[ECONNREFUSED] :: Connection refused"),
    "ECONNRESET": (500, "[ECONNRESET] :: Connection reset by peer"),
    "ETIMEDOUT": (500, "[ETIMEDOUT] :: Operation timed out"),
    "EAI_AGAIN": (500, "[EAI_AGAIN] :: Temporary failure in name resolution"),
    "ECONNABORTED": (500, "[ECONNABORTED] :: Connection aborted"),
    "ENOTFOUND": (400, "[ENOTFOUND] :: DNS lookup failed"),
    # axios's name for an answer it could not use (over maxContentLength, say): retryable.
    "ERR_BAD_RESPONSE": (500, "[ERR_BAD_RESPONSE] :: Klaviyo's answer could not be read"),
}
_UNKNOWN_HOST_HINTS: Final = (
    "name or service not known",
    "nodename nor servname",
    "no address associated",
    "getaddrinfo failed",
)


def body_of(response: httpx.Response) -> Any:
    """The answer's JSON, its text when it is not JSON (an HTML page), ``""`` when empty."""
    if not response.content:
        return ""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        # Not response.text: a charset it names may not decode these bytes (UnicodeError).
        return response.content.decode("utf-8", "replace")


def klaviyo_errors(body: Any, *, secret: SecretStr | None = None) -> list[JsonObject]:
    """Klaviyo's JSON:API ``errors[]`` reduced to ``{id, code, detail, source: {pointer}}``."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    out: list[JsonObject] = []
    for error in errors:
        if not isinstance(error, dict):
            continue
        source = error.get("source")
        pointer = source.get("pointer") if isinstance(source, dict) else None
        reduced = {
            "id": error.get("id"),
            "code": error.get("code"),
            "detail": error.get("detail"),
            "source": {"pointer": pointer},
        }
        # Any member, of any type, may echo the key: every string in it is masked.
        out.append(redact_json(reduced, secret))
    return out


def rejection(status: int, body: Any, *, secret: SecretStr | None) -> KlaviyoRejected:
    """The permanent error for a final non-2xx answer; its message says what to fix."""
    errors = klaviyo_errors(body, secret=secret)
    first = errors[0] if errors else {}
    detail = first.get("detail") or _excerpt(body)
    code = f" {first['code']}" if first.get("code") else ""
    cls: type[KlaviyoRejected] = KlaviyoRejected
    if status == 410:
        cls, message = KlaviyoRevisionRetired, _RETIRED
    elif status in (401, 403):
        cls = KlaviyoAuthRejected
        message = f"Klaviyo rejected the private API key ({status}{code}): {detail}"
    else:
        message = f"Klaviyo rejected the request ({status}{code}): {detail}"
    pointer = first["source"]["pointer"] if errors else None
    field = pointer if isinstance(pointer, str) else None
    return cls(redact(message, secret), field=field, klaviyo_status=status, klaviyo_errors=errors)


def transient(
    status: int, headers: httpx.Headers, body: Any, *, secret: SecretStr
) -> KlaviyoUnavailable | None:
    """The retryable error for 408, 429, 5xx and a non-Klaviyo 403; ``None`` otherwise."""
    errors = klaviyo_errors(body, secret=secret)
    # A 403 without Klaviyo's JSON:API errors is a proxy or Cloudflare page, not a verdict.
    html_403 = status == 403 and not errors
    if not (status in (408, 429) or status >= 500 or html_403):
        return None
    detail = errors[0]["detail"] if errors and errors[0]["detail"] else None
    if detail is None:
        detail = "a non-JSON page (proxy or Cloudflare challenge)" if html_403 else "no detail"
    return KlaviyoUnavailable(
        redact(f"Klaviyo answered {status}: {detail}", secret),
        retry_after=retry_after(headers, body),
        throttled=status == 429,
        klaviyo_status=status,
        klaviyo_errors=errors,
    )


def redirect(status: int, headers: httpx.Headers, *, secret: SecretStr) -> KlaviyoRedirected | None:
    """The retryable error for a 3xx (see :class:`KlaviyoRedirected`); ``None`` otherwise."""
    if not 300 <= status < 400:
        return None
    location = headers.get("location", "")[:200] or "nowhere"
    return KlaviyoRedirected(
        redact(
            f"Klaviyo answered {status}, a redirect to {location} not followed: Klaviyo's API "
            "does not redirect; check KLAVIYO_BASE_URL and any proxy on the way",
            secret,
        ),
        retry_after=retry_after(headers, None),
        klaviyo_status=status,
    )


def created_id(status: int, body: Any) -> str | None:
    """The new profile's id from a create answer (any 2xx carrying ``data.id``), else None."""
    # Q9 fixed: any 2xx carrying data.id is a created profile, not only 201.
    if 200 <= status < 300 and isinstance(body, dict) and isinstance(body.get("data"), dict):
        profile_id = body["data"].get("id")
        return profile_id if isinstance(profile_id, str) and profile_id else None
    return None


def duplicate_id(status: int, body: Any) -> str | None:
    """The existing profile's id from a 409 (``errors[0].meta.duplicate_profile_id``)."""
    if status != 409 or not isinstance(body, dict):
        return None
    errors = body.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    meta = first.get("meta") if isinstance(first, dict) else None
    profile_id = meta.get("duplicate_profile_id") if isinstance(meta, dict) else None
    return profile_id if isinstance(profile_id, str) and profile_id else None


def transport_error(exc: httpx.TransportError) -> tuple[int, str]:
    """A transport failure as the reference's ``(status, "[CODE] :: text")`` pair (§6.7)."""
    text = str(exc).lower()
    if isinstance(exc, UnusableAnswer):
        status, reason = _SOCKET_ERRORS["ERR_BAD_RESPONSE"]
        return status, f"{reason} ({exc})"
    if isinstance(exc, httpx.ConnectTimeout):
        code = "ETIMEDOUT"
    elif isinstance(exc, httpx.TimeoutException):
        code = "ECONNABORTED"
    elif isinstance(exc, httpx.ConnectError):
        code = "ECONNREFUSED"
        if "temporary failure in name resolution" in text:
            code = "EAI_AGAIN"
        elif any(hint in text for hint in _UNKNOWN_HOST_HINTS):
            code = "ENOTFOUND"
    elif isinstance(exc, httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError):
        code = "ECONNRESET"
    else:
        return 400, f"[{type(exc).__name__}]"
    return _SOCKET_ERRORS[code]


def _excerpt(body: Any) -> str:
    if body in (None, ""):
        return "empty body"
    text = body if isinstance(body, str) else repr(body)
    return text[:200]
