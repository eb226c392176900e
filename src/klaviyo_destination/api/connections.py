"""The connection side of the HTTP edge: uvicorn's httptools protocol with what it lacks.

uvicorn bounds neither the size nor the time of a request's headers (a 128 MB header is held in
memory; a connection that never finishes its headers is held for ever), and ``limit_concurrency``
answers 503 to everyone once idle connections fill it. :class:`EdgeProtocol` adds:

* ``MAX_HEADER_BYTES``: a request line and headers longer than that are answered 431 and the
  connection is closed, after at most one socket read more;
* ``HEADER_TIMEOUT``: from connecting (or a later request's first byte) to the end of the
  headers; then 408 and close (a silent connection is closed without an answer);
* ``MAX_INBOUND_CONNECTIONS``: beyond it the oldest idle connections (no request in progress)
  are closed, so a flood of idle or half-sent connections cannot keep anyone else out; only
  when every connection is inside a request does a new one get 503.

The limits are read from the settings in the app's lifespan state, so each worker process uses
its own. The body's deadline is :mod:`.edge`'s (an ASGI middleware).

A request to a hot route is handed to its lane (:mod:`.lanes`) straight from uvicorn's request
cycle (:mod:`.lane_cycle`): the cycle still reads the body (flow control, ``Expect:
100-continue``, a disconnect), pipelined requests still wait their turn, and ``CycleReply``
writes the answer as the cycle's ``send`` would, in one write. On a one-event request this
saves about a seventh of the service's CPU (the ASGI messages and uvicorn's checks of them, the
proxy-header middleware, FastAPI's entry and its OpenTelemetry check; bench/optimisations.md).

A lane that may run at once (``Lane.at_once``: the rudder-server protocol routes) waits for the
end of the read that brought its headers. When its whole body came in the same read, as a
small request's does, it runs there and then: no task, no turn of the loop, no body deadline to
keep, and its answer and log line are written before the read's callback returns. Should it wait
for something (a Klaviyo look-up, the upstream transformer, a slow reader), a task takes it from
where it stopped. Its handler must not ask for the current task before its first wait (the
look-ups and upstream calls run in tasks of their own). Otherwise the request starts in a task,
as uvicorn starts any, and reads the rest of its body under the deadline.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import resource
from typing import Any, Final, cast

import orjson
from starlette.types import Scope
from uvicorn._types import ASGI3Application
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from ..errors import DestinationError, HeadersTooLarge, RequestTimeout, TooManyConnections
from ..settings import Settings
from .exchange import JSON
from .lane_cycle import http_answer, resumed, serve_lane
from .lanes import Lane, Lanes

logger = logging.getLogger("klaviyo_destination.edge")

_DEFAULTS: Final = Settings.model_construct()
#: File descriptors the process needs besides its inbound and outbound connections.
_SPARE_FILES: Final = 64
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
        lanes = app_state.get("lanes")
        self.lanes: Lanes | None = lanes if isinstance(lanes, Lanes) else None
        #: inside the parser's feed of one read: a lane that may run at once waits for its end
        self.feeding = False
        #: the request whose lane waits for the feed to end (its body may come with it)
        self.waiting: tuple[Lanes, Lane, RequestResponseCycle] | None = None

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Asked once a connection, not once a request (it cost 3 us of a 110 us request): an
        # OpenTelemetry SDK is set up at start-up, before any connection.
        if self.lanes is not None and self.lanes.traced():
            self.lanes = None  # traced: every request goes through FastAPI's entry
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
        self.feeding = True
        try:
            super().data_received(data)
        finally:
            self.feeding = False
        waiting, self.waiting = self.waiting, None
        if waiting is not None:
            self._start_waiting(*waiting)
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

    # --- the hot routes ---

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        # uvicorn starts every request here, pipelined ones when their turn comes; ``app`` is
        # not the service's own when uvicorn answers for itself (its concurrency limit).
        lanes = self.lanes
        scope = cast(Scope, cycle.scope)
        lane = lanes.lane_of(scope) if lanes is not None and app is self.app else None
        if lanes is None or lane is None:
            super()._start_asgi_task(cycle, app)
            return
        if lane.at_once and self.feeding:
            self.waiting = (lanes, lane, cycle)  # the rest of this read may hold its whole body
            return
        self._in_task(lanes, lane, cycle)

    def _in_task(self, lanes: Lanes, lane: Lane, cycle: RequestResponseCycle) -> None:
        self._track(self.loop.create_task(serve_lane(lanes, lane, cycle)))

    def _start_waiting(self, lanes: Lanes, lane: Lane, cycle: RequestResponseCycle) -> None:
        """A waiting lane, once the read that began its request has been parsed: run at once
        when its whole body came with it (no task, no turn of the loop before it starts; the
        request log and the answer are written before this read's callback returns), else
        started as any request is, to read the rest under the body's deadline."""
        if cycle.more_body:
            self._in_task(lanes, lane, cycle)
            return
        # Run in a context of its own, as a task would be: nothing it sets leaks into the
        # connection's callbacks or into the next request.
        context = contextvars.copy_context()
        coroutine = serve_lane(lanes, lane, cycle, received=True)
        try:
            awaited = context.run(coroutine.send, None)
        except StopIteration:
            return  # answered without waiting for anything
        except BaseException:  # serve_lane answers every error itself: this is a bug in it
            logger.exception("unexpected error in a lane: connection closed")
            self.transport.close()
            return
        # It waits (for Klaviyo look-ups, the upstream, a slow reader): a task takes it from here.
        self._track(self.loop.create_task(resumed(coroutine, awaited), context=context))

    def _track(self, task: asyncio.Task[None]) -> None:
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    # --- the limits ---

    @property
    def idle(self) -> bool:
        """No request in progress: waiting for one, or inside its headers."""
        busy = self.cycle is not None and not self.cycle.response_complete
        return not busy and not self.pipeline and not self.transport.is_closing()

    # A timer per request (armed at its first byte, cancelled at the end of its headers) cost
    # 2.5 us of every request: the deadline is a number, and one timer, armed when none is,
    # checks it when it fires and re-arms for a later deadline.

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
            self.transport.write(http_answer(error.status, default, headers, body, close=True))
        self.transport.close()


def serve_options(settings: Settings) -> dict[str, Any]:
    """``uvicorn.run`` arguments for the edge's limits."""
    return {
        "http": EdgeProtocol,
        "timeout_keep_alive": settings.keepalive_timeout,
        "timeout_graceful_shutdown": settings.shutdown_timeout,
    }


def raise_file_limit(settings: Settings) -> str | None:
    """Raise the soft limit of open files to what the connection limits need, as far as the
    hard limit allows (Go's runtime does the same); a warning when it stays below."""
    needed = settings.max_inbound_connections + settings.max_connections + _SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target >= needed:
        return None
    return (
        f"open-file limit {target} is below the {needed} that MAX_INBOUND_CONNECTIONS "
        f"({settings.max_inbound_connections}) and MAX_CONNECTIONS need: raise it (ulimit -n) "
        "or lower MAX_INBOUND_CONNECTIONS"
    )
