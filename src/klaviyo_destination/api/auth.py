"""Inbound authentication for the webhook and dry-run endpoints (``WEBHOOK_TOKEN``)."""

from __future__ import annotations

import base64
import binascii
import hmac

from starlette.requests import Request

from ..errors import Unauthorized
from ..settings import Settings


def check_token(request: Request, settings: Settings) -> None:
    """Accept ``Bearer <token>`` or Basic auth whose password is the token; nothing when unset.

    Runs before the body is read. Comparison is constant-time, and the presented value is never
    echoed back.
    """
    if settings.webhook_token is None:
        return
    expected = settings.webhook_token.get_secret_value().encode()
    presented = _presented(request.headers.get("authorization", ""))
    if presented is None or not hmac.compare_digest(presented, expected):
        raise Unauthorized(
            "missing or wrong credentials: send Authorization: Bearer <WEBHOOK_TOKEN> "
            "(or Basic auth with the token as password)",
            field="Authorization",
        )


def _presented(header: str) -> bytes | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip().encode()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return None
        return decoded.partition(b":")[2]
    return None
