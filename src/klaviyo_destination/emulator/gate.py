"""What stands in front of the Klaviyo routes: recording, faults, auth, revision, rate limits.

The revision served (``revisions.resolve``) is left in the scope's state for the routes.

Paths are read below the app's mount: the service's embedded ``/emulator`` (where
rudder-server delivers the protocol answers in embedded mode) is gated as the emulator's own
port is, so those requests are recorded, faulted, authenticated and rate-limited too.

A plain ASGI middleware rather than FastAPI dependencies because it must see every ``/api``
request (also unknown paths), replay the body it read, add headers to any response, and abort a
connection without answering, which only works from below Starlette's exception handling.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import orjson
from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from klaviyo_destination.emulator import errors, revisions
from klaviyo_destination.emulator.errors import ApiError, DroppedConnection
from klaviyo_destination.emulator.faults import DropFault, StatusFault
from klaviyo_destination.emulator.models import RecordedRequest
from klaviyo_destination.emulator.ratelimit import Decision, classify
from klaviyo_destination.emulator.store import EmulatorStore
from klaviyo_destination.emulator.web import error_response
from klaviyo_destination.klaviyo.facts import AUTH_SCHEME


class KlaviyoGate:
    def __init__(self, app: ASGIApp, store: EmulatorStore) -> None:
        self.app = app
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _path(scope).startswith("/api"):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        entry = self.store.record(
            scope["method"],
            _path(scope),
            scope["query_string"].decode("latin-1"),
            _redacted(Headers(scope=scope)),
            _decoded(body),
        )
        await self._serve(scope, _replay(body, receive), send, entry)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, entry: RecordedRequest
    ) -> None:
        faults = self.store.faults
        if faults.latency_ms:
            await self.store.sleep(faults.latency_ms / 1000)
        send = _recording(send, entry)
        match faults.next_for(_path(scope)):
            case StatusFault() as fault:
                entry.fault = f"status:{fault.status}"
                if fault.after_processing:
                    await self._admitted(scope, receive, _discard)
                await _fault_response(fault)(scope, receive, send)
            case DropFault(after_processing=after):
                entry.fault = "drop_connection"
                if after:
                    await self._admitted(scope, receive, _discard)
                # Raised before a response starts, Starlette would answer 500 itself; once one
                # has started, the exception reaches uvicorn, which closes the socket.
                await send({"type": "http.response.start", "status": 500, "headers": _UNFINISHED})
                entry.status = None
                raise DroppedConnection("connection dropped by an injected fault")
            case None:
                await self._admitted(scope, receive, send)

    async def _admitted(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            decision = self._admit(scope)
        except ApiError as error:
            await error_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, _with_rate_headers(send, decision))

    def _admit(self, scope: Scope) -> Decision | None:
        """Auth, then revision, then quota: a refused request does not use up quota."""
        headers = Headers(scope=scope)
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme != AUTH_SCHEME or not self.store.accepts_key(key.strip()):
            raise errors.not_authenticated()
        served = revisions.resolve(headers.get("revision"))
        scope.setdefault("state", {})["revision"] = served
        endpoint = classify(scope["method"], _path(scope))
        limiter = self.store.limiter
        decision = limiter.hit(key.strip(), endpoint, served.limits) if endpoint else None
        if decision is not None and not decision.allowed:
            raise errors.throttled(decision.wait_seconds, send_retry_after=limiter.send_retry_after)
        return decision


def _path(scope: Scope) -> str:
    """The request's path below the app's mount (Starlette keeps the mount in ``root_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


#: A body is promised and never sent, so the client cannot mistake the drop for an answer.
_UNFINISHED: Final = [(b"content-length", b"1")]


def _fault_response(fault: StatusFault) -> Response:
    headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
    headers.update(fault.headers)
    if fault.body_size is not None:
        media_type = fault.content_type or "application/json"
        return StreamingResponse(
            _filler(fault.body_size), fault.status, headers=headers, media_type=media_type
        )
    if fault.body is not None:
        media_type = fault.content_type or "text/plain; charset=utf-8"
        return Response(fault.body, fault.status, headers=headers, media_type=media_type)
    if fault.status == 429:
        error = errors.throttled(fault.retry_after or 0, send_retry_after=bool(headers))
    else:
        error = errors.for_status(fault.status)
    response = error_response(error)
    response.headers.update(headers)
    if fault.content_type:
        response.headers["content-type"] = fault.content_type
    return response


def _with_rate_headers(send: Send, decision: Decision | None) -> Send:
    if decision is None:
        return send

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] != 429:
            headers = MutableHeaders(scope=message)
            headers["RateLimit-Limit"] = str(decision.limit)
            headers["RateLimit-Remaining"] = str(decision.remaining)
            headers["RateLimit-Reset"] = str(decision.reset)
        await send(message)

    return wrapped


def _recording(send: Send, entry: RecordedRequest) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            entry.status = message["status"]
        await send(message)

    return wrapped


#: Filler comes in chunks of this size, so a huge answer costs the emulator no memory.
_FILLER_CHUNK: Final = 64 * 1024


async def _filler(size: int) -> AsyncIterator[bytes]:
    chunk = b" " * _FILLER_CHUNK
    for start in range(0, size, _FILLER_CHUNK):
        yield chunk[: min(_FILLER_CHUNK, size - start)]


async def _discard(message: Message) -> None:
    """Swallows the answer of a request that is processed and then dropped."""


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _decoded(body: bytes) -> Any:
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")


def _redacted(headers: Headers) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers.items():
        if name == "authorization":
            scheme, space, _ = value.partition(" ")
            value = f"{scheme} ***" if space else "***"
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out
