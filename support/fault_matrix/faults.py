"""The fault kinds of the matrix, and :class:`Injector`, which puts one into the emulator."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final, Literal

from support.emulator_control import AsyncEmulatorControl, Json

#: The share of Klaviyo requests each fault is injected into.
FAULT_SHARE: Final = 0.3
#: Klaviyo requests per event of the generated mix without faults (measured: 229 per 200).
REQUESTS_PER_EVENT: Final = 1.15
#: Latency for a read timeout (above the service's READ_TIMEOUT) and for a slow answer.
TIMEOUT_LATENCY_MS: Final = 800
SLOW_LATENCY_MS: Final = 250
#: Latency faults are global in the emulator, so they are switched on 30% of each period.
TICK_SECONDS: Final = 1.0
CLOUDFLARE_403: Final = (
    "<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head>"
    "<body><h1>Sorry, you have been blocked</h1></body></html>"
)

GZIP: Final = {"Content-Encoding": "gzip"}
#: Where a redirect points: a closed port, so following it would fail loudly.
ELSEWHERE: Final = {"Location": "http://127.0.0.1:9/api/elsewhere"}
#: Above the MAX_ANSWER_BYTES of the matrix's service (``running.FAST_SERVICE_ENV``).
OVERSIZED_ANSWER: Final = 1024 * 1024

Injection = Literal["none", "rate", "burst", "ticker"]


@dataclass(frozen=True)
class Fault:
    """One row: how the fault is injected and what a dropped request did."""

    name: str
    injection: Injection
    spec: Json = field(default_factory=dict)
    #: The request was applied before its answer was lost (drop after processing).
    processed: bool = False
    #: Klaviyo's answer is final (410): rejections are expected, not retries.
    permanent: bool = False
    #: ticker: the fault is on for 30% of each period of this many seconds.
    period: float = TICK_SECONDS
    #: Requests the service gave up on (read timeout) are still applied later by Klaviyo.
    late_writes: bool = False
    #: burst: this many faults before each batch instead of ~30% of its requests.
    per_batch: int | None = None
    #: Not a fault of Klaviyo's: some group events carry an email Klaviyo refuses.
    refused_subscriptions: bool = False


#: Opt-in rows (``--extra``): 30% of requests answered 429 + Retry-After: 1 in bursts keeps
#: the service's endpoints paused most of the time; 1,000 events take ~30 s.
EXTRA_FAULTS: Final[tuple[Fault, ...]] = (
    Fault("429 with Retry-After: 1 (bursts)", "burst", {"status": 429, "retry_after": 1}),
)


FAULTS: Final[tuple[Fault, ...]] = (
    Fault("none (control)", "none"),
    Fault("5xx random (503)", "rate", {"status": 503}),
    Fault("5xx bursts (500, 502)", "burst", {"status": 500}),
    # Klaviyo's window is closed 30% of the time: every request then gets 429 + Retry-After.
    # A 429 with Retry-After pauses the whole endpoint class in the service (Klaviyo's limits
    # are per account), so few requests meet the closed window. The period is not a multiple
    # of the Retry-After, so a retry does not land in the next closed window every time.
    Fault(
        "429 with Retry-After: 1 (window)",
        "ticker",
        {"status": 429, "retry_after": 1},
        period=2.0,
    ),
    Fault("429 without Retry-After", "rate", {"status": 429}),
    Fault(
        f"read timeout ({TIMEOUT_LATENCY_MS} ms)",
        "ticker",
        {"latency_ms": TIMEOUT_LATENCY_MS},
        late_writes=True,
    ),
    Fault(f"slow answer ({SLOW_LATENCY_MS} ms)", "ticker", {"latency_ms": SLOW_LATENCY_MS}),
    Fault("drop before processing", "burst", {"drop_connection": True}),
    Fault(
        "drop after processing",
        "burst",
        {"drop_connection": True, "after_processing": True},
        processed=True,
    ),
    Fault(
        "HTML 403 from a proxy",
        "rate",
        {"status": 403, "body": CLOUDFLARE_403, "content_type": "text/html; charset=UTF-8"},
    ),
    Fault("410 revision retired", "rate", {"status": 410}, permanent=True),
    # Issue 15: one refused subscription must not sink the other events of its merged job.
    Fault("refused subscription in a job", "none", refused_subscriptions=True),
    # Issue 15: odd answers are retryable per event (applied by Klaviyo, then unreadable).
    Fault(
        "corrupt gzip answer (applied)",
        "rate",
        {"status": 202, "after_processing": True, "body": "not gzip", "headers": GZIP},
        processed=True,
    ),
    Fault("redirect (302, not followed)", "rate", {"status": 302, "headers": ELSEWHERE}),
    Fault(
        f"answer over the cap ({OVERSIZED_ANSWER // 2**20} MiB, applied)",
        "rate",
        {"status": 202, "after_processing": True, "body_size": OVERSIZED_ANSWER},
        processed=True,
    ),
    # Issue 15: a day-long Retry-After holds an endpoint for MAX_RETRY_AFTER, not a day.
    Fault(
        "429 with Retry-After: 86400 (one per batch)",
        "burst",
        {"status": 429, "retry_after": 86400},
        per_batch=1,
    ),
)


class Injector:
    """Puts one :class:`Fault` into the emulator: once, before every send, or on a timer."""

    def __init__(self, control: AsyncEmulatorControl, fault: Fault, seed: int) -> None:
        self.control, self.fault, self.seed = control, fault, seed
        self._burst = itertools.cycle((500, 502))

    async def add(self, spec: Json) -> None:
        await self.control.fault(**spec)

    @contextlib.asynccontextmanager
    async def active(self) -> AsyncIterator[None]:
        fault = self.fault
        if fault.injection == "rate":
            await self.add(fault.spec | {"error_rate": FAULT_SHARE, "seed": self.seed})
        if fault.injection != "ticker":
            yield
            return
        ticker = asyncio.create_task(self._tick())
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            await self._off()

    async def before_batch(self, events: int) -> None:
        """A burst fault: as many failures as ~30% of the batch's requests, queued together.

        Only before a batch's first send: queueing more for every resend would add faults
        faster than the service, paused by a 429's Retry-After, can use them up.
        """
        if self.fault.injection != "burst":
            return
        spec = dict(self.fault.spec)
        if spec.get("status") == 500:
            spec["status"] = next(self._burst)
        # Faulted requests are retried, so 30% of all requests is 0.3/0.7 of the clean ones.
        share = FAULT_SHARE / (1 - FAULT_SHARE) * REQUESTS_PER_EVENT
        count = self.fault.per_batch or max(1, round(share * events))
        await self.add(spec | {"count": count})

    async def _tick(self) -> None:
        """On for 30% of each period: a latency, or a status every request gets."""
        spec, period = self.fault.spec, self.fault.period
        while True:
            if "latency_ms" in spec:
                await self.add(spec)
            else:
                await self.add(spec | {"error_rate": 1.0, "seed": self.seed})
            await asyncio.sleep(FAULT_SHARE * period)
            await self._off()
            await asyncio.sleep((1 - FAULT_SHARE) * period)

    async def _off(self) -> None:
        if "latency_ms" in self.fault.spec:
            await self.add({"latency_ms": 0})
        else:
            await self.control.clear_faults()
