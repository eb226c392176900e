"""Delivery through ``/v1/events`` to the emulator with 50 ms of injected upstream latency.

    .venv/bin/python bench/bench_delivery.py

1,000 track events go out as 10 requests of 100 events on 10 connections at once. Sent one
after another, 1,000 calls of 50 ms would take 50 s (20 events/s). Run twice: with the default
client-side limit for events (350/s burst) the rate sits at that limit; with the limit raised
out of the way it rises to what DELIVERY_CONCURRENCY (16 users per request) allows. The
emulator's own rate limiter is switched off so that only ours is measured, and its recorded
request times give the busiest 1-second window, which must not exceed the configured burst.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from support.emulator_control import EmulatorControl
from support.events import corpus
from support.servers import start_emulator, start_service_with

EVENTS = 1000
REQUESTS = 10
LATENCY_MS = 50
CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class Delivery:
    label: str
    burst: int
    events_per_second: float
    seconds: float
    delivered: int
    klaviyo_calls: int
    busiest_second: int

    @property
    def concurrency_bound(self) -> float:
        return REQUESTS * CONCURRENCY / (LATENCY_MS / 1000)


def track_events(count: int) -> list[dict[str, Any]]:
    """``count`` track events of the corpus, stamped now (Klaviyo refuses far-future times)."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    events = [e for e in corpus(count * 3) if e["type"] == "track"][:count]
    assert len(events) == count
    return [{**e, "timestamp": now, "originalTimestamp": now} for e in events]


def busiest_second(times: list[float]) -> int:
    """The most requests inside any window of 1 s (sliding, two pointers over sorted times)."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


async def _send(url: str, batches: list[bytes]) -> tuple[float, int]:
    limits = httpx.Limits(max_connections=len(batches))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        started = time.perf_counter()
        answers = await asyncio.gather(
            *(
                client.post(
                    "/v1/events", content=body, headers={"content-type": "application/json"}
                )
                for body in batches
            )
        )
        seconds = time.perf_counter() - started
    delivered = sum(
        1
        for answer in answers
        for result in answer.json()["results"]
        if result["status"] == "delivered"
    )
    return seconds, delivered


def _prepare(klaviyo: EmulatorControl) -> None:
    klaviyo.reset()
    klaviyo.rate_limits(enabled=False)
    klaviyo.clear_faults()
    klaviyo.fault(latency_ms=LATENCY_MS)
    klaviyo.forget_requests()


def _request_times(klaviyo: EmulatorControl) -> list[float]:
    recorded = klaviyo.requests("/api/events")
    return [datetime.fromisoformat(r["time"]).timestamp() for r in recorded]


def run(progress: Callable[[str], None]) -> list[Delivery]:
    events = track_events(EVENTS)
    size = EVENTS // REQUESTS
    batches = [orjson.dumps(events[i : i + size]) for i in range(0, EVENTS, size)]
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as logs,
        start_emulator(Path(logs)) as emulator,
        httpx.Client(base_url=emulator.url) as client,
    ):
        klaviyo = EmulatorControl(client)
        for label, burst, steady in (
            ("default limit", 350, 3500),
            ("limit raised", 100_000, 1_000_000),
        ):
            progress(f"delivery: {EVENTS} track events, {LATENCY_MS} ms upstream, {label} ...")
            _prepare(klaviyo)
            env = {
                "KLAVIYO_PRIVATE_API_KEY": "pk_bench",
                "KLAVIYO_BASE_URL": emulator.url,
                "EVENTS_RATE_BURST": str(burst),
                "EVENTS_RATE_STEADY": str(steady),
                "DELIVERY_CONCURRENCY": str(CONCURRENCY),
            }
            # As production starts it: klaviyo-destination serve.
            with start_service_with(env, Path(logs)) as service:
                seconds, delivered = asyncio.run(_send(service.url, batches))
            times = _request_times(klaviyo)
            results.append(
                Delivery(
                    label,
                    burst,
                    delivered / seconds,
                    seconds,
                    delivered,
                    len(times),
                    busiest_second(times),
                )
            )
    return results


def table(results: list[Delivery]) -> str:
    lines = [
        f"| /v1/events, {EVENTS} track events, {REQUESTS} requests in parallel, {LATENCY_MS} ms "
        "upstream | events/s | seconds | delivered | Klaviyo calls | busiest 1 s window "
        "| configured burst |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for d in results:
        lines.append(
            f"| {d.label} | {d.events_per_second:,.0f} | {d.seconds:.2f} | {d.delivered} | "
            f"{d.klaviyo_calls} | {d.busiest_second} | {d.burst:,} |"
        )
    serial = 1000 / LATENCY_MS
    bound = results[0].concurrency_bound if results else 0
    lines.append(
        f"\nserial waiting would give {serial:.0f} events/s; {REQUESTS} requests x "
        f"DELIVERY_CONCURRENCY {CONCURRENCY} / {LATENCY_MS} ms allows {bound:,.0f} events/s"
    )
    return "\n".join(lines)


def main() -> None:
    print(table(run(lambda line: print(line, flush=True))))


if __name__ == "__main__":
    main()
