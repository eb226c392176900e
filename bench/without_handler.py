"""``klaviyo-destination`` whose processor route answers a body it has seen from a cache.

A benchmark instrument, never the service. ``make bench`` runs it beside the service to measure
what a one-event processor request costs without its handler: the connection, the edge's header
screen, the lane, reading the body, the request's log line and metrics all run as production runs
them; only parsing the body, planning its jobs and writing the answer are skipped. From that and
the goal's figures, ``bench/bench_service.py`` works out how much time the goal leaves the
handler. The first request with a given body is answered by the real handler (the benchmark sends
each body once before measuring); a later one with the same bytes gets the same answer and the
same log fields back. The handler goes in through ``serving.wrap``'s ``handlers`` (by way of
``cli.main``): the route table stays as it is.

    python -m bench.without_handler serve --host 127.0.0.1 --port 8090
"""

from __future__ import annotations

import sys
from typing import Any, Final

from starlette.types import Message

from klaviyo_destination import cli
from klaviyo_destination.api.exchange import Answer, Call
from klaviyo_destination.api.routes import Handler, Served, protocol_bytes
from klaviyo_destination.serving import HOT_ROUTES

PROCESSOR: Final = ("POST", "/v0/destinations/klaviyo")
#: Printed on start-up, so that a run (and its test) can tell this from the service.
BANNER: Final = "bench.without_handler: the processor route answers a body it has seen from a cache"


class _Replayed(Call):
    """The request once more, its body already read: how the real handler sees a new body."""

    __slots__ = ("body", "fields")

    def __init__(self, call: Call, body: bytes) -> None:
        self.body = body
        self.fields: dict[str, Any] = {}
        super().__init__(call.scope, self._receive, call.headers)

    async def _receive(self) -> Message:
        return {"type": "http.request", "body": self.body, "more_body": False}

    def annotate(self, **fields: Any) -> None:
        self.fields.update(fields)
        super().annotate(**fields)


def cached_processor() -> Handler:
    """The processor route's handler, answering a body it has answered before from a cache."""
    real, _ = HOT_ROUTES[PROCESSOR]
    answers: dict[bytes, tuple[Answer, dict[str, Any]]] = {}

    async def cached(call: Call) -> Served:
        body = bytes(await protocol_bytes(call))  # the route's own read
        known = answers.get(body)
        if known is not None:
            answer, fields = known
            call.annotate(**fields)
            return answer
        replayed = _Replayed(call, body)
        served = await real(replayed)
        if isinstance(served, Answer) and served.status == 200:
            answers[body] = (served, replayed.fields)
        return served

    return cached


def main() -> int:
    print(BANNER, file=sys.stderr, flush=True)
    return cli.main(handlers={PROCESSOR: cached_processor()})


if __name__ == "__main__":
    sys.exit(main())
