""":class:`EdgeProtocol`: uvicorn's httptools protocol with the connection limits it lacks.

It subclasses uvicorn's private ``HttpToolsProtocol`` (and uses its per-request state: the
parser's callbacks, ``cycle``, ``pipeline``): :mod:`.connection` imports this module only when
the installed uvicorn is the minor it was written against (``connection.UVICORN_MINOR``), which
says what the limits are for. Its refusals are :func:`.refusals.closing_answer`'s.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from ..errors import DestinationError, HeadersTooLarge, RequestTimeout, TooManyConnections
from ..settings import Settings
from .refusals import closing_answer

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
        self.max_header_bytes = self.settings.max_header_bytes
        self.opened = 0.0
        #: inside a request's line and headers: from its first byte (whichever read it came in)
        #: to their end
        self.in_head = False
        #: the bytes of the reads that began inside the head under way: while it is unfinished,
        #: at most its size (so never more than the client sent), as is :meth:`_head_size`
        self.head_read = 0
        #: the size of the read the head began in, and of the read under way: with
        #: ``head_read``, the most the head can be (below the limit, nothing to count)
        self.head_first = 0
        self.read_size = 0
        self.header_timer: asyncio.TimerHandle | None = None
        #: when the headers under way are due (None: none under way); the timer may be older
        self.header_deadline: float | None = None
        #: a head begun while an earlier request's answer is owed: its clock starts once the
        #: answers before it are written (the client may be waiting for them to send the rest)
        self.head_waiting = False
        self.refused = False
        #: a refusal waiting for the answers owed before it
        self.refusal: DestinationError | None = None

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
        self.read_size = len(data)
        if self.in_head:
            # Counted before parsing: httptools keeps a header it has not finished in memory.
            self.head_read += self.read_size
        super().data_received(data)
        if self.in_head and (self.head_read > self.max_header_bytes or self._over_limit()):
            self._too_large()

    # --- httptools callbacks (after a refusal the rest of the read is parsed, and ignored) ---

    def on_message_begin(self) -> None:
        if self.refused:
            return
        super().on_message_begin()
        self.in_head = True
        self.head_read = 0
        self.head_first = self.read_size
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        if self.refused:
            return
        self.in_head = False
        self._disarm_header_timer()
        # Checked here too: a head that arrives in one read is never seen unfinished.
        if self._over_limit():
            self._too_large()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self.refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if (self.refusal is None and not self.head_waiting) or self.owes_an_answer:
            return  # (the first test is every request's: nothing waits for the answer)
        if self.transport.is_closing():
            return
        if self.refusal is not None:
            self._answer(self.refusal)
        elif self.head_waiting:
            # A request is under way: its header deadline governs, not the keep-alive's.
            self._unset_keepalive_if_required()
            self.head_waiting = False
            self._arm_header_timer()

    # --- the limits ---

    @property
    def owes_an_answer(self) -> bool:
        """A request's answer is not yet written (it is being served, or queued behind one)."""
        return (self.cycle is not None and not self.cycle.response_complete) or bool(self.pipeline)

    @property
    def idle(self) -> bool:
        """No request in progress: waiting for one, or inside its headers."""
        return not self.owes_an_answer and not self.transport.is_closing()

    # One timer per connection, not one per request: the deadline is a number, and the timer
    # checks it when it fires and re-arms for a later deadline (bench/optimisations.md).

    def _arm_header_timer(self) -> None:
        if self.header_deadline is not None or self.head_waiting:
            return  # the headers under way keep their deadline
        if self.owes_an_answer:
            # uvicorn reads no further while answers are owed (pipelining): the client cannot
            # finish these headers yet, and closing now would lose the answers (A5).
            self.head_waiting = True
            return
        timeout = self.header_timeout
        self.header_deadline = self.loop.time() + timeout
        if self.header_timer is None:
            self.header_timer = self.loop.call_later(timeout, self._header_timer_fired)

    def _disarm_header_timer(self) -> None:
        self.header_deadline = None
        self.head_waiting = False

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
        if not self.in_head:  # nothing asked, nothing to answer
            self.transport.close()
            return
        message = "the request headers did not arrive in time (HEADER_TIMEOUT)"
        self._refuse(RequestTimeout(message, field="headers"))

    def _over_limit(self) -> bool:
        limit = self.max_header_bytes
        if self.head_first + self.head_read <= limit:
            return False  # all the bytes since it began are within the limit
        return self._head_size() > limit

    def _head_size(self) -> int:
        """The head as parsed so far: its target, and each finished header with ": " and CRLF
        (a header httptools has not finished is not in it; ``head_read`` bounds that)."""
        size = len(self.url)
        for name, value in self.headers:
            size += len(name) + len(value) + 4
        return size

    def _too_large(self) -> None:
        limit = self.max_header_bytes
        self._refuse(HeadersTooLarge(f"request headers are larger than {limit} bytes"))

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
        """Answer ``error`` and close: at once, or after the answers owed to the requests before
        it (a pipelining client gets those, as from uvicorn alone)."""
        self.refused = True
        self.in_head = False
        self._disarm_header_timer()
        logger.info(
            "connection refused: %s",
            error.code,
            extra={"status": error.status, "error": error.code, "reason": error.message},
        )
        if self.transport.is_closing():
            return
        if self.owes_an_answer:
            self.refusal = error  # :meth:`on_response_complete` answers it
            return
        self._answer(error)

    def _answer(self, error: DestinationError) -> None:
        self.refusal = None
        self.transport.write(closing_answer(error, self.server_state.default_headers))
        self.transport.close()
