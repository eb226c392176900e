"""What each layer of the delivery path costs, in process, with no I/O.

    .venv/bin/python bench/delivery_layers.py [--requests 5000] [--runs 5]

A transport that answers at once (202, ``{}``, five headers, a streamed body) under
``KlaviyoClient``; each layer timed alone, CPU per request, best of ``--runs``:
``KlaviyoClient.call`` (the httpx request and answer, metrics, the limiter's reading of the
answer), ``KlaviyoSession._attempt`` (plus the deadline, the rate-limit and connection slots,
the verdict), ``KlaviyoSession.run_one`` (plus stamina's retry loop and the record of what
was sent) and ``KlaviyoSession.deliver_batch`` of 100 events of 80 users (plus the batch's
per-user order and concurrency), per event. The requests are the corpus's track events as
``/v1/events`` plans them. To measure another commit, run its copy with
``PYTHONPATH=<copy>/src``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import orjson
import uvloop
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.clients import klaviyo_requests
from klaviyo_destination.klaviyo import KlaviyoClient, KlaviyoSession
from klaviyo_destination.planned import PlannedEvent, PlannedRequest
from klaviyo_destination.settings import Settings

HEADERS = [
    (b"Content-Type", b"application/json"),
    (b"Content-Length", b"2"),
    (b"Date", b"Sun, 06 Dec 2026 07:00:00 GMT"),
    (b"cf-ray", b"8f1e2d3c4b5a6978-AMS"),
    (b"ratelimit-limit", b"700"),
]


class _Body(httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"{}"


class Instant(httpx.AsyncBaseTransport):
    async def handle_async_request(self, _request: httpx.Request) -> httpx.Response:
        return httpx.Response(202, headers=HEADERS, stream=_Body())


async def measure(count: int, runs: int) -> dict[str, float]:
    settings = Settings(
        klaviyo_private_api_key=SecretStr("pk_bench"),
        klaviyo_base_url="http://klaviyo.test",
        events_rate_burst=10**7,
        events_rate_steady=10**8,
    )
    requests = [
        PlannedRequest("POST", p, orjson.loads(b)) for p, _, b in klaviyo_requests("v1", 100)
    ]
    async with KlaviyoClient(settings, transport=Instant()) as client:
        session = KlaviyoSession(client, SecretStr("pk_bench"))
        headers = client.request_headers({})

        async def call(request: PlannedRequest) -> None:
            await client.call(request, headers)

        async def attempt(request: PlannedRequest) -> None:
            await session._attempt(request, time.monotonic() + 20)

        async def run_one(request: PlannedRequest) -> None:
            await session.run_one(request, time.monotonic() + 20, [])

        events = [PlannedEvent(None, "track", f"u{i % 80}", [r]) for i, r in enumerate(requests)]

        async def batch(request: PlannedRequest) -> None:
            # A 100-event batch of 80 users, counted as one of its 100 requests each time.
            if request is requests[0]:
                await session.deliver_batch(events)

        layers: dict[str, Callable[[PlannedRequest], Awaitable[None]]] = {
            "KlaviyoClient.call": call,
            "KlaviyoSession._attempt": attempt,
            "KlaviyoSession.run_one": run_one,
            "KlaviyoSession.deliver_batch (per event)": batch,
        }
        out = {}
        for name, layer in layers.items():
            best = float("inf")
            for _ in range(runs):
                started = time.process_time()
                for index in range(count):
                    await layer(requests[index % len(requests)])
                best = min(best, (time.process_time() - started) / count * 1e6)
            out[name] = best
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    figures = uvloop.run(measure(args.requests, args.runs))
    print("  ".join(f"{name} {us:.1f} us" for name, us in figures.items()))


if __name__ == "__main__":
    main()
