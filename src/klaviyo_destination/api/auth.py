"""Inbound authentication for the webhook and dry-run endpoints (``WEBHOOK_TOKEN``)."""

from __future__ import annotations

import base64
import binascii
import hmac

from starlette.requests import Request

from ..errors import Unauthorized
from ..settings import Settings


def check_token(request: Request, settings: Settings) -> None:
    """Accept ``Bearer <token>``, or Basic auth with the token as username or password; nothing
    when no token is set.

    Runs before the body is read. Comparison is constant-time, and the presented value is never
    echoed back.
    """
    if settings.webhook_token is None:
        return
    expected = settings.webhook_token.get_secret_value().encode()
    # Every candidate is compared, so the time taken does not tell which one was close.
    matches = [
        hmac.compare_digest(c, expected)
        for c in _presented(request.headers.get("authorization", ""))
    ]
    if not any(matches):
        raise Unauthorized(
            "missing or wrong credentials: send Authorization: Bearer <WEBHOOK_TOKEN>, or Basic "
            "auth with the token as username (an SDK's write key) or as password",
            field="Authorization",
        )


def _presented(header: str) -> list[bytes]:
    """The values a header offers as the token: Bearer's, or Basic's username (how RudderStack
    and Segment SDKs send their write key, with an empty password) and its password."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return [value.strip().encode()]
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return []
        username, _, password = decoded.partition(b":")
        return [username, password] if password else [username]
    return []
