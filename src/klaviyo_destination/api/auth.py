"""Inbound authentication for the webhook and dry-run endpoints (``WEBHOOK_TOKEN``)."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping

import orjson
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import Unauthorized
from ..settings import Settings
from .responses import error_body


def token_presented(header: str, expected: bytes, *, klaviyo_key: bool = False) -> bool:
    """Whether an ``Authorization`` value presents the token (constant-time per candidate);
    ``klaviyo_key`` also accepts ``Klaviyo-API-Key <token>``, as Klaviyo's clients send it."""
    candidates = _presented(header, klaviyo_key=klaviyo_key)
    # Every candidate is compared, so the time taken does not tell which one was close.
    matches = [hmac.compare_digest(c, expected) for c in candidates]
    return any(matches)


def guarded(app: ASGIApp, token: SecretStr) -> ASGIApp:
    """``app`` behind the webhook token: the embedded emulator's routes (its state holds the
    emails and phones delivered) answer nobody without it. Klaviyo's own header form is
    accepted too, so rudder-server can deliver to it with the token as the private key.

    Behind the guard the emulator checks Klaviyo's header as Klaviyo does (its gate sees the
    mounted ``/api`` paths too), so a request the guard admitted reaches it with the token as
    ``Klaviyo-API-Key``, whichever form presented it.
    """
    expected = token.get_secret_value().encode()
    as_key = (b"authorization", b"Klaviyo-API-Key " + expected)
    body = orjson.dumps(
        error_body(
            Unauthorized(
                "the emulator needs the webhook token: Authorization: Bearer <WEBHOOK_TOKEN> "
                "(or Klaviyo-API-Key <WEBHOOK_TOKEN>)",
                field="Authorization",
            ).to_dict()
        )
    )

    async def guard(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = Headers(scope=scope).get("authorization", "")
            if not token_presented(header, expected, klaviyo_key=True):
                response = Response(body, status_code=401, media_type="application/json")
                await response(scope, receive, send)
                return
            kept = [(k, v) for k, v in scope["headers"] if k.lower() != b"authorization"]
            scope = {**scope, "headers": [*kept, as_key]}
        await app(scope, receive, send)

    return guard


def check_token(headers: Mapping[str, str], settings: Settings) -> None:
    """Accept ``Bearer <token>``, or Basic auth with the token as username or password; nothing
    when no token is set.

    Runs before the body is read. Comparison is constant-time, and the presented value is never
    echoed back.
    """
    if settings.webhook_token is None:
        return
    expected = settings.webhook_token.get_secret_value().encode()
    if not token_presented(headers.get("authorization", ""), expected):
        raise Unauthorized(
            "missing or wrong credentials: send Authorization: Bearer <WEBHOOK_TOKEN>, or Basic "
            "auth with the token as username (an SDK's write key) or as password",
            field="Authorization",
        )


def _presented(header: str, *, klaviyo_key: bool = False) -> list[bytes]:
    """The values a header offers as the token: Bearer's, or Basic's username (how RudderStack
    and Segment SDKs send their write key, with an empty password) and its password; with
    ``klaviyo_key``, Klaviyo's ``Klaviyo-API-Key <key>`` too."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" or (klaviyo_key and scheme.lower() == "klaviyo-api-key"):
        return [value.strip().encode()]
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return []
        username, _, password = decoded.partition(b":")
        return [username, password] if password else [username]
    return []
