"""Inbound authentication for the webhook and dry-run endpoints (``WEBHOOK_TOKEN``)."""

from __future__ import annotations

import base64
import binascii
import hmac

import orjson
from pydantic import SecretStr
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import BadRequest, Unauthorized
from ..settings import Settings
from .exchange import Headers
from .responses import error_body


def token_presented(header: bytes, expected: bytes, *, klaviyo_key: bool = False) -> bool:
    """Whether an ``Authorization`` value presents the token (constant-time per candidate);
    ``klaviyo_key`` also accepts ``Klaviyo-API-Key <token>``, as Klaviyo's clients send it.

    The header's bytes are compared as sent, with ``expected`` (the token in UTF-8): a Bearer
    token as Basic's decoded bytes always were, so a non-ASCII token works both ways. Header
    bytes are Latin-1 in an ASGI server's hands; re-encoding them as text would garble it."""
    candidates = _presented(header, klaviyo_key=klaviyo_key)
    # Every candidate is compared, so the time taken does not tell which one was close.
    matches = [hmac.compare_digest(c, expected) for c in candidates]
    return any(matches)


def authorization_of(headers: Headers) -> bytes:
    """The request's one ``Authorization`` value (empty when it has none).

    HTTP allows one. With two, whichever one a check took, a proxy or the app behind it may
    take the other, so two are refused (400) rather than the first believed."""
    found: bytes | None = None
    for name, value in headers:
        if name.lower() == b"authorization":
            if found is not None:
                raise BadRequest(
                    "more than one Authorization header: send the credentials once",
                    field="Authorization",
                )
            found = value
    return found or b""


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
            try:
                header = authorization_of(scope["headers"])
            except BadRequest as error:
                refused = orjson.dumps(error_body(error.to_dict()))
                await _answer(refused, error.status, scope, receive, send)
                return
            if not token_presented(header, expected, klaviyo_key=True):
                await _answer(body, 401, scope, receive, send)
                return
            kept = [(k, v) for k, v in scope["headers"] if k.lower() != b"authorization"]
            scope = {**scope, "headers": [*kept, as_key]}
        await app(scope, receive, send)

    return guard


async def _answer(body: bytes, status: int, scope: Scope, receive: Receive, send: Send) -> None:
    response = Response(body, status_code=status, media_type="application/json")
    await response(scope, receive, send)


def check_token(headers: Headers, settings: Settings) -> None:
    """Accept ``Bearer <token>``, or Basic auth with the token as username or password; nothing
    when no token is set. ``headers`` are the request's raw ones (the ASGI scope's), so that two
    ``Authorization`` headers are seen (and refused).

    Runs before the body is read. Comparison is constant-time, and the presented value is never
    echoed back.
    """
    if settings.webhook_token is None:
        return
    expected = settings.webhook_token.get_secret_value().encode()
    if not token_presented(authorization_of(headers), expected):
        raise Unauthorized(
            "missing or wrong credentials: send Authorization: Bearer <WEBHOOK_TOKEN>, or Basic "
            "auth with the token as username (an SDK's write key) or as password",
            field="Authorization",
        )


def _presented(header: bytes, *, klaviyo_key: bool = False) -> list[bytes]:
    """The values a header offers as the token: Bearer's, or Basic's username (how RudderStack
    and Segment SDKs send their write key, with an empty password) and its password; with
    ``klaviyo_key``, Klaviyo's ``Klaviyo-API-Key <key>`` too."""
    scheme, _, value = header.partition(b" ")
    scheme = scheme.lower()
    if scheme == b"bearer" or (klaviyo_key and scheme == b"klaviyo-api-key"):
        return [value.strip()]
    if scheme == b"basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return []
        username, _, password = decoded.partition(b":")
        return [username, password] if password else [username]
    return []
