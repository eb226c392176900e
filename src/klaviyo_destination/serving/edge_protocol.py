""":class:`EdgeProtocol`: uvicorn's httptools protocol with the connection limits it lacks.

It subclasses uvicorn's private ``HttpToolsProtocol`` and writes its refusals with uvicorn's
``STATUS_LINE``: :mod:`.connection` imports this module only when the installed uvicorn is the
minor it was written against (``connection.UVICORN_MINOR``), which says what the limits are for.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from ..api.exchange import JSON
from ..errors import DestinationError, HeadersTooLarge, RequestTimeout, TooManyConnections
from ..settings import Settings

logger = logging.getLogger("klaviyo_destination.edge")

_DEFAULTS: Final = Settings.model_construct()
#: uvloop's timers count whole milliseconds: a deadline nearer than this is due.
_TIMER_RESOLUTION: Final = 0.001


class EdgeProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # The lifespan's settings: each worker process reads its own.
        settings = app_state.get("settings")
        self.settings: Settings = settings if isinstance(settings, Settings) else _DEFAULTS
        self.header_timeout = self.settings.header_timeout
        self.opened = 0.0
        self.in_headers = True
        self.header_bytes = 0
        self.header_timer: asyncio.TimerHandle | None = None
        #: when the headers under way are due (None: none under way); the timer may be older
        self.header_deadline: float | None = None
        self.refused = False

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.opened = self.loop.time()
        self._arm_header_timer()
        self._hold_the_cap()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.in_headers:
            # Counted before parsing: httptools keeps a header it has not finished in memory.
            self.header_bytes += len(data)
        super().data_received(data)
        if self.in_headers and self.header_bytes > self.settings.max_header_bytes:
            limit = self.settings.max_header_bytes
            self._refuse(HeadersTooLarge(f"request headers are larger than {limit} bytes"))

    # --- httptools callbacks ---

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self.in_headers = False
        self._disarm_header_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_headers = True  # what comes next is the next request's line and headers
        self.header_bytes = 0

    # --- the limits ---

    @property
    def idle(self) -> bool:
        """No request in progress: waiting for one, or inside its headers."""
        busy = self.cycle is not None and not self.cycle.response_complete
        return not busy and not self.pipeline and not self.transport.is_closing()

    # One timer per connection, not one per request: the deadline is a number, and the timer
    # checks it when it fires and re-arms for a later deadline (bench/optimisations.md).

    def _arm_header_timer(self) -> None:
        if self.header_deadline is not None:
            return  # the headers under way keep their deadline
        timeout = self.header_timeout
        self.header_deadline = self.loop.time() + timeout
        if self.header_timer is None:
            self.header_timer = self.loop.call_later(timeout, self._header_timer_fired)

    def _disarm_header_timer(self) -> None:
        self.header_deadline = None

    def _header_timer_fired(self) -> None:
        self.header_timer = None
        deadline = self.header_deadline
        if deadline is None:
            return  # the headers arrived: nothing to time until the next request's first byte
        remaining = deadline - self.loop.time()
        if remaining >= _TIMER_RESOLUTION:  # a later request's deadline
            self.header_timer = self.loop.call_later(remaining, self._header_timer_fired)
            return
        self.header_deadline = None
        self._headers_too_slow()

    def _headers_too_slow(self) -> None:
        if self.transport.is_closing():
            return
        if self.header_bytes == 0:  # nothing asked, nothing to answer
            self.transport.close()
            return
        message = "the request headers did not arrive in time (HEADER_TIMEOUT)"
        self._refuse(RequestTimeout(message, field="headers"))

    def _hold_the_cap(self) -> None:
        cap = self.settings.max_inbound_connections
        if len(self.connections) <= cap:
            return
        open_ = [c for c in self.connections if not c.transport.is_closing()]
        excess = len(open_) - cap
        if excess <= 0:
            return
        idle = sorted(
            (c for c in open_ if c is not self and isinstance(c, EdgeProtocol) and c.idle),
            key=lambda c: c.opened,
        )
        # A tenth of the cap more than needed: under a flood, one sort per burst, not per accept.
        closing = idle[: excess + cap // 10]
        for connection in closing:
            connection.transport.close()
        if closing:
            logger.warning(
                "MAX_INBOUND_CONNECTIONS reached: closed the %d oldest idle connections",
                len(closing),
                extra={"connections": len(open_), "closed": len(closing)},
            )
        if len(closing) < excess:
            message = f"{cap} connections are open and every one is inside a request"
            self._refuse(TooManyConnections(message, field="connection"))

    def _refuse(self, error: DestinationError) -> None:
        """Answer ``error`` (unless another request's answer is under way) and close."""
        self.refused = True
        self._disarm_header_timer()
        logger.info(
            "connection refused: %s",
            error.code,
            extra={"status": error.status, "error": error.code, "reason": error.message},
        )
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            body = orjson.dumps({"error": error.to_dict()})
            headers = [(b"content-type", JSON), (b"content-length", b"%d" % len(body))]
            default = self.server_state.default_headers
            self.transport.write(_http_answer(error.status, default, headers, body))
        self.transport.close()


def _http_answer(
    status: int, default: list[tuple[bytes, bytes]], headers: list[tuple[bytes, bytes]], body: bytes
) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, as uvicorn writes one: its default
    headers (``date``, ``server``) first."""
    head = [STATUS_LINE[status]]
    head += [name + b": " + value + b"\r\n" for name, value in (*default, *headers)]
    head.append(b"connection: close\r\n\r\n")
    head.append(body)
    return b"".join(head)
