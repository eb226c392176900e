"""One row of the matrix (:func:`run_fault`) and the whole matrix (:func:`run_matrix`) against
running servers."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Final

import httpx

from support.emulator_control import AsyncEmulatorControl
from support.events import Planned, generate, with_refused_subscriptions
from support.fault_matrix.checking import Checker, Row
from support.fault_matrix.faults import FAULTS, TIMEOUT_LATENCY_MS, Fault, Injector
from support.fault_matrix.sending import BATCH_SIZE, LANES, Resend, Sender, Traffic, lanes

SEED: Final = 20230222
#: Service settings for fast fault runs: short timeouts and backoff, limits far above the load.
FAST_SERVICE_ENV: Final[Mapping[str, str]] = {
    "DELIVERY_DEADLINE": "3",
    "READ_TIMEOUT": "0.5",
    "CONNECT_TIMEOUT": "1",
    "BACKOFF_INITIAL": "0.02",
    "BACKOFF_MAX": "0.2",
    "MAX_ATTEMPTS": "5",
    "DELIVERY_CONCURRENCY": "50",
    "PROFILES_RATE_BURST": "100000",
    "PROFILES_RATE_STEADY": "1000000",
    "EVENTS_RATE_BURST": "100000",
    "EVENTS_RATE_STEADY": "1000000",
    # Issue 15: a cap above the matrix's Retry-After: 1 rows, short enough for a quick run; an
    # answer cap that a fault exceeds cheaply (OVERSIZED_ANSWER).
    "MAX_RETRY_AFTER": "1",
    "MAX_ANSWER_BYTES": "262144",
}


async def run_fault(
    fault: Fault,
    events: Sequence[Planned],
    *,
    service: httpx.AsyncClient,
    control: AsyncEmulatorControl,
    resend: Resend = "failed",
    max_wait: float = 0.2,
    seed: int = SEED,
) -> Row:
    await control.reset()
    if fault.refused_subscriptions:
        events = with_refused_subscriptions(events)
    row, traffic = Row(fault.name), Traffic()
    injector = Injector(control, fault, seed)
    sender = Sender(service, injector, traffic, resend=resend, max_wait=max_wait)
    plan = lanes(events, LANES, BATCH_SIZE)
    started = time.monotonic()
    async with injector.active(), asyncio.TaskGroup() as group:
        for lane in plan:
            group.create_task(sender.lane(lane))
    row.seconds = time.monotonic() - started
    await control.clear_faults()
    if fault.injection == "ticker":  # let the requests the service gave up on land
        await asyncio.sleep(TIMEOUT_LATENCY_MS / 1000)
    state = await control.state()
    recorded = await control.requests()
    tracked = [t for lane in plan for batch in lane for t in batch]
    Checker(row, fault, state, recorded).run(tracked)
    row.answers = traffic.answers
    if traffic.transport_errors:
        row.problem(f"{traffic.transport_errors} requests to the service failed in transport")
    if len(recorded) >= 10_000:
        row.problem("the emulator's request log (10,000) overflowed: 'accepted twice' is low")
    return row


@contextlib.asynccontextmanager
async def clients(
    service_url: str, emulator_url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, AsyncEmulatorControl]]:
    """(service, emulator control) clients. The emulator's rate limiter is off meanwhile:
    the injected faults are what is measured; it is emptied and switched back on after."""
    limits = httpx.Limits(max_connections=LANES * 2)
    async with (
        httpx.AsyncClient(base_url=service_url, headers=headers, timeout=60, limits=limits) as svc,
        httpx.AsyncClient(base_url=emulator_url, timeout=30) as client,
    ):
        control = AsyncEmulatorControl(client)
        await control.rate_limits(enabled=False)
        try:
            yield svc, control
        finally:
            # Best effort: an answer that is not 2xx here must not hide the run's own error.
            with contextlib.suppress(httpx.HTTPStatusError):
                await control.reset()
            with contextlib.suppress(httpx.HTTPStatusError):
                await control.rate_limits(enabled=True)


async def run_matrix(
    service_url: str,
    emulator_url: str,
    *,
    events_per_fault: int,
    faults: Sequence[Fault] = FAULTS,
    resend: Resend = "failed",
    max_wait: float = 0.2,
    seed: int = SEED,
    headers: dict[str, str] | None = None,
    progress: Callable[[Row], None] | None = None,
) -> list[Row]:
    """Every fault in turn against running servers, each on its own seeded events."""
    rows = []
    async with clients(service_url, emulator_url, headers) as (svc, control):
        for index, fault in enumerate(faults):
            events = generate(events_per_fault, seed=seed + index, prefix=f"f{index}")
            row = await run_fault(
                fault,
                events,
                service=svc,
                control=control,
                resend=resend,
                max_wait=max_wait,
                seed=seed + index,
            )
            rows.append(row)
            if progress is not None:
                progress(row)
    return rows
