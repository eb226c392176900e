"""One canonical log line per HTTP request, and its request id (``X-Request-ID``).

A pure ASGI middleware, so it costs one log call and no Starlette request object. Routes and
error handlers add fields through :func:`annotate` (event counts, the error code of a refusal).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Final

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..logs import log_fields
from .metrics import HttpMetrics

logger = logging.getLogger("klaviyo_destination.requests")

REQUEST_ID: Final = b"x-request-id"
_FIELDS: Final = "log_fields"
_MAX_ID: Final = 128
#: A WebSocket handshake is an HTTP request too (the service refuses each, api/edge.py).
_LOGGED: Final = frozenset(("http", "websocket"))
_STARTS: Final = frozenset(("http.response.start", "websocket.http.response.start"))
#: A version-4 UUID's version and variant bits, kept and set on 128 random bits.
_UUID4_KEEP: Final = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID4_SET: Final = (0x4000 << 64) | (0x8000 << 48)


def annotate(request: Request, **fields: Any) -> None:
    """Add fields to this request's log line."""
    annotate_scope(request.scope, **fields)


def annotate_scope(scope: Scope, **fields: Any) -> None:
    """:func:`annotate` for ASGI middleware, which has a scope and no request object."""
    state = scope.setdefault("state", {})
    state.setdefault(_FIELDS, {}).update(fields)


def request_id_of(scope: Scope) -> str:
    """The caller's id when it is short printable ASCII (it is echoed), else a new one."""
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID and 0 < len(value) <= _MAX_ID and value.isascii():
            text: str = value.decode()
            if text.isprintable():
                return text
    return new_request_id()


def new_request_id() -> str:
    """``uuid.uuid4().hex`` without the ``UUID`` object, which was most of its cost."""
    return "%032x" % (int.from_bytes(os.urandom(16), "big") & _UUID4_KEEP | _UUID4_SET)


def route_of(scope: Scope) -> str:
    """The matched route's template (``/v0/destinations/{destination}``, under a mount's prefix
    such as ``/emulator``), or ``unmatched``: a label with a bounded set of values."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return "unmatched"
    root = scope.get("root_path")
    return f"{root}{path}" if isinstance(root, str) else path


class RequestLog:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in _LOGGED:
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = request_id_of(scope)
        stamped = StampedSend(send, request_id)
        try:
            await self.app(scope, receive, stamped)
        finally:
            logged(scope, stamped.status, time.perf_counter() - start, request_id, self.metrics)


class StampedSend:
    """``send`` with the request id added to the answer's headers, keeping the status the
    answer started with (500 until one starts: an exception escaped every handler)."""

    __slots__ = ("_header", "_send", "status")

    def __init__(self, send: Send, request_id: str) -> None:
        self._send = send
        self._header = (REQUEST_ID, request_id.encode())
        self.status = 500

    async def __call__(self, message: Message) -> None:
        if message["type"] in _STARTS:
            self.status = message["status"]
            message = {**message, "headers": [*message.get("headers", ()), self._header]}
        elif message["type"] == "websocket.close" and self.status == 500:
            self.status = 403  # a handshake closed before it was accepted: the server's answer
        await self._send(message)


def logged(
    scope: Scope, status: int, seconds: float, request_id: str, metrics: HttpMetrics | None
) -> None:
    """A finished request's metrics and its log line."""
    method = scope.get("method", "GET")  # a WebSocket handshake's scope has none: it is a GET
    if metrics is not None:
        metrics.observe(route_of(scope), method, status, seconds)
    fields = {
        "method": method,
        "path": scope["path"],
        "status": status,
        "duration_ms": round(seconds * 1000, 2),
        "request_id": request_id,
        **scope.get("state", {}).get(_FIELDS, {}),
    }
    level = logging.WARNING if status >= 500 else logging.INFO
    log_fields(logger, level, fields, "%s %s %d", method, scope["path"], status)
