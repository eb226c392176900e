"""What the connection side answers without the app: whole HTTP/1.1 answers that close the
connection, and the WebSocket "protocol" ``serve`` gives uvicorn, which refuses every upgrade.

The service has no WebSocket endpoint. uvicorn hands an upgrade request to its ``ws`` protocol
before the app sees it (with ``websockets`` installed, as ``uvicorn[standard]`` has it), and its
default one gave the app a ``websocket`` scope that the routes were not written for: a 500 and
ERROR tracebacks (issue 27 C2). ``serve`` passes :class:`NoWebSockets` as uvicorn's ``ws`` option
(a public one: a protocol class), with its own protocol and with uvicorn's fallback alike: a JSON
404 naming the ``Upgrade`` header, and the request's one log line. An app served some other way
refuses the scope itself (``api/edge.py``).
"""

from __future__ import annotations

import asyncio
import http
import time
from collections.abc import Sequence
from typing import Any, Final

import orjson

from ..api.edge import NO_WEBSOCKETS as websocket_refused
from ..api.request_log import annotate_scope, logged, request_id_of
from ..api.responses import error_body
from ..errors import DestinationError, NotFound

JSON: Final = b"application/json"
NO_WEBSOCKETS: Final = NotFound(websocket_refused, field="Upgrade")


def closing_answer(
    error: DestinationError,
    default: list[tuple[bytes, bytes]],
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> bytes:
    """``error`` as a whole JSON answer that closes the connection, written as uvicorn writes
    one: its default headers (``date``, ``server``) first."""
    body = orjson.dumps(error_body(error.to_dict()))
    status = http.HTTPStatus(error.status)
    head = [b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode())]
    fields = (*default, (b"content-type", JSON), (b"content-length", b"%d" % len(body)), *headers)
    head += [name + b": " + value + b"\r\n" for name, value in fields]
    head.append(b"connection: close\r\n\r\n")
    head.append(body)
    return b"".join(head)


class NoWebSockets(asyncio.Protocol):
    """uvicorn's ``ws`` protocol for ``serve``: it is handed the upgrade request's head (its
    request line and headers, rebuilt by uvicorn) and answers it with :data:`NO_WEBSOCKETS`."""

    def __init__(
        self,
        config: Any,  # noqa: ARG002 -- uvicorn passes it by name
        server_state: Any,
        app_state: dict[str, Any],
    ) -> None:
        self.default_headers: list[tuple[bytes, bytes]] = server_state.default_headers
        self.app_state = app_state
        self.transport: asyncio.Transport | None = None
        self.started = time.perf_counter()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return  # the head came in the first call; anything after it is not read
        scope = _scope_of(data, self.app_state)
        request_id = request_id_of(scope)
        annotate_scope(scope, error=NO_WEBSOCKETS.code, reason=NO_WEBSOCKETS.message)
        stamp = [(b"x-request-id", request_id.encode())]
        transport.write(closing_answer(NO_WEBSOCKETS, self.default_headers, stamp))
        transport.close()
        metrics = self.app_state.get("http_metrics")
        seconds = time.perf_counter() - self.started
        logged(scope, NO_WEBSOCKETS.status, seconds, request_id, metrics)


def _scope_of(head: bytes, app_state: dict[str, Any]) -> dict[str, Any]:
    """What the request log reads of a request, from the head uvicorn rebuilt."""
    request_line, *lines = head.split(b"\r\n")
    method, _, rest = request_line.partition(b" ")
    target = rest.rpartition(b" ")[0]
    headers = []
    for line in lines:
        name, sep, value = line.partition(b":")
        if sep:
            headers.append((name.strip().lower(), value.strip()))
    return {
        "method": method.decode("latin-1"),
        "path": target.partition(b"?")[0].decode("latin-1"),
        "headers": headers,
        "state": dict(app_state),
    }
