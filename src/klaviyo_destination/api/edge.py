"""The request side of the HTTP edge, one pure ASGI middleware (no Starlette request object):

* without a token (the service then listens on loopback only), a request must name a loopback
  ``Host`` (a DNS-rebinding page names its own), and a POST must be JSON or content-encoded (a
  cross-site form or ``text/plain`` POST needs no CORS preflight, these do, and get none);
* the body must arrive within ``BODY_TIMEOUT`` of the headers, else 408;
* an answer sent before the body was read to its end closes the connection, or uvicorn would go
  on reading (and discarding) the rest, with no time limit.

The connection side (header size and time, the connection cap) is :mod:`.connections`.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from ..errors import DestinationError, MisdirectedRequest, RequestTimeout, UnsupportedMediaType
from .request_log import annotate_scope
from .responses import JsonResponse, error_body

_CLOSE: Final = (b"connection", b"close")
#: Why a WebSocket handshake is refused (``serving/refusals.py`` says the same).
NO_WEBSOCKETS: Final = "this service serves no WebSocket endpoints: send its requests as plain HTTP"
#: RFC 6455's close code for a message that violates the endpoint's policy.
_POLICY_VIOLATION: Final = 1008
_JSON_TYPES: Final = "application/json or application/<type>+json"
#: How often the body deadlines are checked: a body may take this much longer than BODY_TIMEOUT.
_TICK: Final = 0.25


class Edge:
    def __init__(self, app: ASGIApp, *, loopback_only: bool, body_timeout: float) -> None:
        self.app = app
        self.loopback_only = loopback_only
        self.body_timeout = body_timeout
        self.watch = BodyWatch()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await refuse_websocket(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        refusal, has_body = screen(scope, loopback_only=self.loopback_only)
        if has_body:
            deadline = asyncio.get_running_loop().time() + self.body_timeout
            body = TimedBody(receive, send, deadline, self.watch)
            receive, send = body.receive, body.send
        if refusal is None:
            await self.app(scope, receive, send)
            return
        annotate_scope(scope, error=refusal.code, reason=refusal.message, field=refusal.field)
        answer = JsonResponse(error_body(refusal.to_dict()), status_code=refusal.status)
        await answer(scope, receive, send)


async def refuse_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """This service has no WebSocket endpoint. ``serve`` refuses upgrades before the app
    (``serving/refusals.py``); served some other way, the app closes the handshake, which the
    server answers 403, as Starlette does for a path with no WebSocket route. (Not the ASGI
    denial response: uvicorn 0.54's default WebSocket protocol logs an ERROR after one.)"""
    annotate_scope(scope, error="websocket_refused", reason=NO_WEBSOCKETS)
    await WebSocket(scope, receive, send).close(code=_POLICY_VIOLATION)


def screen(scope: Scope, *, loopback_only: bool) -> tuple[DestinationError | None, bool]:
    """Why the edge refuses this request (None: it does not), and whether it has a body."""
    # One pass over the headers: this runs for every request (a few µs matter at 5,000/s).
    hosts: list[bytes] = []
    types: list[bytes] = []
    has_body = encoded = False
    for name, value in scope["headers"]:
        if name == b"host":
            hosts.append(value)
        elif name == b"content-type":
            types.append(value)
        elif name == b"content-encoding":
            encoded = True
        elif name == b"content-length":
            has_body = has_body or bool(value.strip(b" 0"))
        elif name == b"transfer-encoding":
            has_body = True
    if not loopback_only:
        return None, has_body
    return _cross_site(scope["method"], hosts, types, encoded=encoded), has_body


class TimedBody:
    """The request body under a deadline; ``pending`` until its last part has been received."""

    __slots__ = ("_receive", "_send", "deadline", "expired", "pending", "watch")

    def __init__(self, receive: Receive, send: Send, deadline: float, watch: BodyWatch) -> None:
        self._receive = receive
        self._send = send
        self.deadline = deadline
        self.watch = watch
        self.pending = True
        self.expired = False

    async def receive(self) -> Message:
        if not self.pending:
            return await self._receive()
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 -- ASGI apps run in a task
        self.watch.reading[self] = task
        self.watch.start()
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            if not self.expired:
                raise
            task.uncancel()  # the watch's cancellation, not the server's: it becomes the 408
            raise RequestTimeout(
                "the request body did not arrive in time (BODY_TIMEOUT)", field="body"
            ) from None
        finally:
            self.watch.reading.pop(self, None)
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.pending = False
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and self.pending:
            message = {**message, "headers": [*message.get("headers", ()), _CLOSE]}
        await self._send(message)


class BodyWatch:
    """The bodies being read, checked every ``_TICK`` seconds by one timer while there are any:
    a timer per request (``asyncio.timeout``) was a measurable cost of every request with a body
    (bench/optimisations.md)."""

    def __init__(self) -> None:
        self.reading: dict[TimedBody, asyncio.Task[Any]] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.timer is None or self.loop is not loop:
            self.loop = loop
            self.timer = loop.call_later(_TICK, self._check)

    def _check(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for body, task in list(self.reading.items()):
            if body.deadline <= now:
                del self.reading[body]
                body.expired = True
                task.cancel()
        self.timer = loop.call_later(_TICK, self._check) if self.reading else None


def _cross_site(
    method: str, hosts: list[bytes], types: list[bytes], *, encoded: bool
) -> DestinationError | None:
    """Why a request could come from a web page rather than from this machine, if it could.

    A body with a ``Content-Encoding`` passes whatever its type says: no page can send one
    without a CORS preflight (the Node SDK labels its gzip bodies as a form)."""
    if len(hosts) != 1 or not loopback_host(hosts[0]):
        return MisdirectedRequest(
            "without WEBHOOK_TOKEN the service answers only requests whose Host header is a "
            "loopback name (localhost, 127.0.0.1, [::1], any port)",
            field="Host",
        )
    if method == "POST" and not encoded and not json_type(types):
        return UnsupportedMediaType(
            f"without WEBHOOK_TOKEN the Content-Type header must be {_JSON_TYPES} (or the body "
            "gzip or deflate encoded)",
            field="Content-Type",
        )
    return None


@functools.lru_cache(maxsize=64)
def loopback_host(host: bytes) -> bool:
    """A ``Host`` header naming ``localhost`` or a loopback address, with or without a port."""
    text = host.decode("latin-1").strip().lower()
    if text.startswith("["):
        address, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        address, _, port = text.partition(":")
    if port and not (port.isascii() and port.isdigit()):
        return False
    return loopback_name(address)


def loopback_name(address: str) -> bool:
    """``localhost`` or a loopback address (what ``serve`` may bind without a token)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def json_type(values: list[bytes]) -> bool:
    """Exactly one Content-Type, ``application/json`` or ``application/<something>+json``."""
    if len(values) != 1:
        return False
    media = values[0].decode("latin-1").partition(";")[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))
