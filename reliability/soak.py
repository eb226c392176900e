"""Soak: a steady load on the real service for a bounded time, watching its memory.

Starts the emulator and the service (compose's commands, on loopback), then sends seeded mixed
events (``support/events.py``) at a fixed rate, 500 events/s in batches of 50 by default,
and every 10 s prints the throughput, the answers that were not 200/207/400, the batch latency
and the service's RSS (``VmRSS`` of ``/proc/<pid>/status``, sampled every second). The verdict
compares the highest RSS of the last third of the run with that of the middle third: RSS has
leveled off when it grew by at most 5% (and at least 4 MiB of slack) between them.

The service runs with its default delivery settings except the client-side rate limits, which
are raised above the load (Klaviyo's real tiers would throttle 500 events/s; that is the
fault matrix's subject, not this one's), and the emulator's rate limiter is switched off. Only
the service's memory is judged; the emulator keeps every event it is sent.

``python -m reliability.soak [--seconds 120] [--rate 500]`` (``make soak``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import httpx

from support.emulator_control import AsyncEmulatorControl
from support.events import generate
from support.servers import Server, running

REPORT_EVERY: Final = 10.0
SAMPLE_EVERY: Final = 1.0
MAX_IN_FLIGHT: Final = 16
#: RSS "leveled off" when the last third's peak is within this of the middle third's peak.
GROWTH_TOLERANCE: Final = 0.05
GROWTH_SLACK_KIB: Final = 4 * 1024
SOAK_SERVICE_ENV: Final = {
    "PROFILES_RATE_BURST": "100000",
    "PROFILES_RATE_STEADY": "1000000",
    "EVENTS_RATE_BURST": "100000",
    "EVENTS_RATE_STEADY": "1000000",
}


@dataclass
class Window:
    """What happened since the last report."""

    events: int = 0
    batches: int = 0
    results: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    rejections: Counter[str] = field(default_factory=Counter)


@dataclass
class Soak:
    service: httpx.AsyncClient
    control: AsyncEmulatorControl
    process: Server
    window: Window = field(default_factory=Window)
    total: Window = field(default_factory=Window)
    rss: list[tuple[float, int]] = field(default_factory=list)
    lagging: int = 0

    async def send(self, batch: list[dict[str, object]]) -> None:
        started = time.monotonic()
        try:
            response = await self.service.post("/v1/events", json={"batch": batch})
        except httpx.TransportError as exc:
            for window in (self.window, self.total):
                window.errors[type(exc).__name__] += 1
            return
        elapsed = time.monotonic() - started
        results = response.json().get("results", [])
        statuses = Counter(r["status"] for r in results)
        codes = Counter(r["error"]["code"] for r in results if r["status"] == "rejected")
        for window in (self.window, self.total):
            window.batches += 1
            window.events += len(batch)
            window.latencies.append(elapsed)
            window.results.update(statuses)
            window.rejections.update(codes)
            if response.status_code not in (200, 207, 400):
                window.errors[str(response.status_code)] += 1

    async def sample(self, started: float, seconds: float) -> None:
        while time.monotonic() - started < seconds + SAMPLE_EVERY:
            self.rss.append((time.monotonic() - started, self.process.rss_kib()))
            await asyncio.sleep(SAMPLE_EVERY)

    async def report(self, started: float, seconds: float) -> None:
        last = started
        while True:
            await asyncio.sleep(REPORT_EVERY)
            now = time.monotonic()
            window, self.window = self.window, Window()
            _write(_line(now - started, now - last, window, self.rss[-1][1], self.lagging))
            last = now
            if now - started >= seconds:
                return


def _line(at: float, span: float, window: Window, rss_kib: int, lagging: int) -> str:
    latencies = sorted(window.latencies) or [0.0]
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    errors = ",".join(f"{k}:{v}" for k, v in sorted(window.errors.items())) or "0"
    return (
        f"{at:6.0f} s  {window.events / span:7.1f} ev/s  "
        f"delivered {window.results['delivered']:6d}  rejected {window.results['rejected']:4d}  "
        f"failed {window.results['failed']:3d}  errors {errors:>6}  "
        f"batch p50 {statistics.median(latencies) * 1000:5.0f} ms  p99 {p99 * 1000:5.0f} ms  "
        f"RSS {rss_kib / 1024:6.1f} MiB  behind {lagging}"
    )


def _codes(counts: Counter[str]) -> str:
    return ", ".join(f"{code} {n}" for code, n in sorted(counts.items())) or "none"


def verdict(samples: Sequence[tuple[float, int]], seconds: float) -> tuple[bool, str]:
    """Whether RSS leveled off: the last third's peak against the middle third's."""
    middle = [kib for at, kib in samples if seconds / 3 <= at < 2 * seconds / 3]
    last = [kib for at, kib in samples if at >= 2 * seconds / 3]
    if not middle or not last:
        return False, "too few RSS samples for a verdict"
    growth = max(last) - max(middle)
    allowed = max(GROWTH_TOLERANCE * max(middle), GROWTH_SLACK_KIB)
    ok = growth <= allowed
    text = (
        f"RSS peak middle third {max(middle) / 1024:.1f} MiB, last third {max(last) / 1024:.1f} "
        f"MiB (growth {growth / 1024:+.1f} MiB, allowed {allowed / 1024:.1f} MiB): "
        + ("leveled off" if ok else "STILL GROWING")
    )
    return ok, text


async def soak(
    process: Server, emulator_url: str, token: dict[str, str], args: argparse.Namespace
) -> bool:
    interval = args.batch / args.rate
    count = int(args.rate * args.seconds) + args.batch
    events = [p.message for p in generate(count, seed=args.seed, prefix="soak")]
    async with (
        httpx.AsyncClient(base_url=process.url, headers=token, timeout=60) as service,
        httpx.AsyncClient(base_url=emulator_url, timeout=30) as client,
    ):
        control = AsyncEmulatorControl(client)
        await control.rate_limits(enabled=False)
        run = Soak(service, control, process)
        started = time.monotonic()
        slots = asyncio.Semaphore(MAX_IN_FLIGHT)

        async def one(batch: list[dict[str, object]]) -> None:
            try:
                await run.send(batch)
            finally:
                slots.release()

        async with asyncio.TaskGroup() as group:
            group.create_task(run.sample(started, args.seconds))
            reporter = group.create_task(run.report(started, args.seconds))
            for index in range(0, count, args.batch):
                due = started + (index // args.batch) * interval
                if due - started >= args.seconds:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if slots.locked():
                    run.lagging += 1  # the service is behind: the next batch waits for a slot
                await slots.acquire()
                group.create_task(one(events[index : index + args.batch]))
            await reporter
    total = run.total
    elapsed = time.monotonic() - started
    errors = sum(total.errors.values())
    _write(
        f"\nTotal: {total.events} events in {total.batches} batches over {elapsed:.0f} s "
        f"({total.events / elapsed:.1f} ev/s); delivered {total.results['delivered']}, "
        f"rejected {total.results['rejected']} ({_codes(total.rejections)}), "
        f"failed {total.results['failed']}, "
        f"non-2xx/400 answers or transport errors {errors}"
    )
    ok, text = verdict(run.rss, args.seconds)
    _write(text)
    return ok and errors == 0 and total.results["failed"] == 0


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reliability.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=120.0, help="duration (120)")
    parser.add_argument("--rate", type=float, default=500.0, help="events per second (500)")
    parser.add_argument("--batch", type=int, default=50, help="events per request (50)")
    parser.add_argument("--seed", type=int, default=20230222)
    args = parser.parse_args(argv)
    _write(
        f"Soak: {args.rate:.0f} events/s in batches of {args.batch} for {args.seconds:.0f} s "
        f"(seed {args.seed}); service RSS from /proc/<pid>/status"
    )
    with running(SOAK_SERVICE_ENV) as servers:
        rss = servers.service.rss_kib()
        _write(f"service pid {servers.service.pid}, RSS at start {rss / 1024:.1f} MiB")
        ok = asyncio.run(soak(servers.service, servers.emulator.url, servers.auth, args))
    _write("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
