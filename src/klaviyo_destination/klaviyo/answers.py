"""Klaviyo's answers: the answer read once, JSON:API ``errors[]``, verdicts and profile ids.

:class:`KlaviyoAnswer` is what the client returns, its body parsed once. The verdicts are pure
functions of an answer (or of a status and body, or an ``httpx`` exception), so the delivery
path and the rudder-server protocol's look-up read answers the same way (docs/mapping.md §6.7,
§13). They never see the key: the session masks what leaves it (``session.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import orjson

from ..errors import (
    KlaviyoAuthRejected,
    KlaviyoRedirected,
    KlaviyoRejected,
    KlaviyoRevisionRetired,
    KlaviyoUnavailable,
    UnusableAnswer,
)
from ..js import JsonObject
from .facts import RETIRED_BEFORE, REVISIONS, V1, Revision
from .ratelimit import retry_after

#: The newest revision an ``apiVersion`` names: what to move to from a retired one.
_NEWEST: Final = max(REVISIONS.values(), key=lambda revision: revision.name)


def move_on(revision: Revision) -> str:
    """How to leave ``revision`` once Klaviyo has retired it: the 410's advice, and start-up's
    when ``KLAVIYO_BASE_URL`` is Klaviyo's own host at v1."""
    if revision.name < _NEWEST.name:
        how = (
            f"Set KLAVIYO_API_VERSION={_NEWEST.api_version.value} (revision {_NEWEST.name}) to "
            "deliver at a revision Klaviyo serves"
        )
    else:
        how = "Upgrade this service to a revision Klaviyo serves"
    return f"{how}, or point KLAVIYO_BASE_URL at the bundled emulator"


def retired_there(base_url: str, revision: Revision) -> str | None:
    """Start-up's one line when ``base_url`` is Klaviyo's own host and ``revision`` one it
    retired (v1's 2023-02-22, and v2's 2024-10-15 since 2026-10-15: "returns 410 errors or
    silently falls forward", shared spec §4); else ``None``."""
    host = (urlsplit(base_url).hostname or "").lower()
    if revision.name >= RETIRED_BEFORE or not (
        host == "klaviyo.com" or host.endswith(".klaviyo.com")
    ):
        return None
    return (
        f"Klaviyo retired API revision {revision.name} (KLAVIYO_API_VERSION="
        f"{revision.api_version.value}): {base_url} answers it 410 Gone, or silently falls "
        f"forward to another revision. {move_on(revision)}"
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


@dataclass(frozen=True, slots=True)
class KlaviyoAnswer:
    """One answer of Klaviyo: status, headers (names lower-case), and the body parsed once
    (:meth:`read`)."""

    status: int
    headers: Mapping[str, str]
    #: The JSON, its text when it is not JSON (an HTML page), ``""`` when empty.
    body: Any

    @classmethod
    def read(cls, status: int, headers: Mapping[str, str], content: bytes) -> KlaviyoAnswer:
        if not content:
            return cls(status, headers, "")
        try:
            return cls(status, headers, orjson.loads(content))
        except orjson.JSONDecodeError:
            # Not httpx's .text: a charset it names may not decode these bytes (UnicodeError).
            return cls(status, headers, content.decode("utf-8", "replace"))

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class SentRequest:
    method: str
    path: str
    status_code: int | None  # None: no HTTP answer (transport error, limiter, deadline)


def klaviyo_errors(body: Any) -> list[JsonObject]:
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
        out.append(
            {
                "id": error.get("id"),
                "code": error.get("code"),
                "detail": error.get("detail"),
                "source": {"pointer": pointer},
            }
        )
    return out


def rejection(answer: KlaviyoAnswer, revision: Revision = V1) -> KlaviyoRejected:
    """The permanent error for a final non-2xx answer to a request sent at ``revision``; its
    message says what to fix."""
    status, errors = answer.status, klaviyo_errors(answer.body)
    first = errors[0] if errors else {}
    detail = first.get("detail") or _excerpt(answer.body)
    code = f" {first['code']}" if first.get("code") else ""
    cls: type[KlaviyoRejected] = KlaviyoRejected
    if status == 410:
        cls = KlaviyoRevisionRetired
        message = (
            f"Klaviyo answered 410 Gone: API revision {revision.name} is retired there. "
            f"{move_on(revision)}"
        )
    elif status in (401, 403):
        cls = KlaviyoAuthRejected
        message = f"Klaviyo rejected the private API key ({status}{code}): {detail}"
    else:
        message = f"Klaviyo rejected the request ({status}{code}): {detail}"
    pointer = first["source"]["pointer"] if errors else None
    field = pointer if isinstance(pointer, str) else None
    return cls(message, field=field, klaviyo_status=status, klaviyo_errors=errors)


def transient(answer: KlaviyoAnswer) -> KlaviyoUnavailable | None:
    """The retryable error for 408, 429, 5xx and a non-Klaviyo 403; ``None`` otherwise."""
    status = answer.status
    if not (status in (408, 429) or status >= 500 or status == 403):
        return None  # a success, above all: its body is not read for errors
    errors = klaviyo_errors(answer.body)
    # A 403 without Klaviyo's JSON:API errors is a proxy or Cloudflare page, not a verdict.
    html_403 = status == 403 and not errors
    if status == 403 and not html_403:
        return None
    detail = errors[0]["detail"] if errors and errors[0]["detail"] else None
    if detail is None:
        detail = "a non-JSON page (proxy or Cloudflare challenge)" if html_403 else "no detail"
    return KlaviyoUnavailable(
        f"Klaviyo answered {status}: {detail}",
        retry_after=retry_after(answer.headers, answer.body),
        throttled=status == 429,
        klaviyo_status=status,
        klaviyo_errors=errors,
    )


def redirect(answer: KlaviyoAnswer) -> KlaviyoRedirected | None:
    """The retryable error for a 3xx (see :class:`KlaviyoRedirected`); ``None`` otherwise."""
    if not 300 <= answer.status < 400:
        return None
    location = answer.headers.get("location", "")[:200] or "nowhere"
    return KlaviyoRedirected(
        f"Klaviyo answered {answer.status}, a redirect to {location} not followed: Klaviyo's "
        "API does not redirect; check KLAVIYO_BASE_URL and any proxy on the way",
        retry_after=retry_after(answer.headers, None),
        klaviyo_status=answer.status,
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
