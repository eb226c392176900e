"""A lane's request on uvicorn's request cycle (:mod:`.connections` hands it over): served as
uvicorn's ``run_asgi`` serves an app, resumed in a task when a lane run at once has to wait, and
answered in one write (:class:`CycleReply`).
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine, Generator
from functools import partial
from typing import Any, cast

from starlette.types import Message, Receive, Scope
from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle

from .exchange import Answer
from .lanes import Lane, Lanes, answer_headers

logger = logging.getLogger("klaviyo_destination.edge")


async def serve_lane(
    lanes: Lanes, lane: Lane, cycle: RequestResponseCycle, *, received: bool = False
) -> None:
    """A hot route's request served by its lane, as uvicorn's ``run_asgi`` serves an app."""
    scope = cast(Scope, cycle.scope)
    if lanes.app is not None:
        scope["app"] = lanes.app
    reply = CycleReply(cycle)
    try:
        receive = cast(Receive, cycle.receive)
        await lanes.serve(lane, scope, receive, reply, reply, received=received)
    except BaseException:  # the lane answers every error: a bug, or the server cancelling it
        logger.exception("unexpected error in a lane: answered 500")
        if not cycle.response_started and not cycle.disconnected:
            await cycle.send_500_response()
        else:
            cycle.transport.close()
    finally:
        cycle.on_response = _nothing  # as run_asgi: the cycle no longer holds the protocol


def _nothing() -> None:
    pass


async def resumed(coroutine: Coroutine[Any, Any, None], awaited: Any) -> None:
    """The rest of ``coroutine``, which was started outside any task and is waiting for
    ``awaited`` (what its first ``send`` returned)."""
    await _Rest(coroutine, awaited)


class _Rest:
    """Awaiting it hands the task what ``coroutine`` waits for, then goes on with it: what a
    task does with a coroutine, from its second step (Python 3.12 names this an eager task)."""

    __slots__ = ("awaited", "coroutine")

    def __init__(self, coroutine: Coroutine[Any, Any, None], awaited: Any) -> None:
        self.coroutine = coroutine
        self.awaited = awaited

    def __await__(self) -> Generator[Any, None, None]:
        coroutine, awaited = self.coroutine, self.awaited
        while True:
            try:
                yield awaited
            except BaseException as error:  # the task's cancellation, passed on
                step = partial(coroutine.throw, error)
            else:
                step = partial(coroutine.send, None)
            try:
                awaited = step()
            except StopIteration:
                return


class CycleReply:
    """A lane's answer written on uvicorn's request cycle: what ``RequestResponseCycle.send``
    does with a start and a complete body, in one write, for headers the lane made itself."""

    __slots__ = ("cycle",)

    def __init__(self, cycle: RequestResponseCycle) -> None:
        self.cycle = cycle

    async def answer(self, answer: Answer, request_id: str, *, close: bool) -> None:
        cycle = self.cycle
        if cycle.flow.write_paused and not cycle.disconnected:
            await cycle.flow.drain()
        if cycle.disconnected or cycle.response_started:
            return
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        if close:
            cycle.keep_alive = False
        headers = answer_headers(answer, request_id)
        cycle.transport.write(
            http_answer(
                answer.status,
                cycle.default_headers,
                headers,
                answer.body,
                close=not cycle.keep_alive,
            )
        )
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            cycle.transport.close()
        cycle.on_response()

    async def __call__(self, message: Message) -> None:
        await self.cycle.send(cast(ASGISendEvent, message))


def http_answer(
    status: int,
    default: list[tuple[bytes, bytes]],
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    *,
    close: bool,
) -> bytes:
    """A whole HTTP/1.1 answer as uvicorn writes one: its default headers (``date``,
    ``server``) first, and ``connection: close`` when the connection closes after it."""
    head = [STATUS_LINE[status]]
    head += [name + b": " + value + b"\r\n" for name, value in (*default, *headers)]
    head.append(b"connection: close\r\n\r\n" if close else b"\r\n")
    head.append(body)
    return b"".join(head)
