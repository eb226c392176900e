"""Mapping a large request lets other tasks run (issue 27 A1): ``/health`` and the other
connections are not held until a thousand jobs are mapped.

A ticker task counts how often the event loop got to it while the mapping ran. No timing: a
mapping that never awaits gives it no turn at all, whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from klaviyo_destination.protocol import process, route
from klaviyo_destination.protocol.jobs import YIELD_EVERY
from tests.helpers.conformance import ScriptedLookup

CONFIG = {"privateApiKey": "pk_pacing"}

pytestmark = pytest.mark.anyio


def _job(n: int, kind: str = "track") -> dict[str, Any]:
    message = {"type": kind, "userId": "u", "event": f"e{n}", "name": f"s{n}", "properties": {}}
    return {
        "message": message,
        "metadata": {"jobId": n, "userId": "u"},
        "destination": {"ID": "d1", "Config": CONFIG},
    }


async def _turns_during(work: Callable[[], Awaitable[Any]]) -> int:
    """How many turns a ticker task got while ``work`` ran."""
    turns = 0
    running = True

    async def ticker() -> None:
        nonlocal turns
        while running:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)  # the ticker's first turn, before the work
    before = turns
    await work()
    during = turns - before
    running = False
    await task
    return during


#: (what is mapped, the fewest turns others must get): one per slice of YIELD_EVERY jobs after
#: the first; the router counts jobs across its type-chunks (here 1,000 chunks of one job:
#: one user's track and screen events alternate).
LARGE: dict[str, tuple[Callable[[], Awaitable[Any]], int]] = {
    "processor, 1,000 jobs": (
        lambda: process([_job(n) for n in range(1000)], ScriptedLookup([])),
        1000 // YIELD_EVERY - 1,
    ),
    "router, 1,000 jobs in one chunk": (
        lambda: route([_job(n) for n in range(1000)], ScriptedLookup([])),
        1000 // YIELD_EVERY - 1,
    ),
    "router, 1,000 chunks of one job": (
        lambda: route(
            [_job(n, "track" if n % 2 else "screen") for n in range(1000)], ScriptedLookup([])
        ),
        1000 // YIELD_EVERY - 1,
    ),
}


@pytest.mark.parametrize("case", LARGE)
async def test_a_large_request_lets_other_tasks_run(case: str) -> None:
    work, turns = LARGE[case]
    assert await _turns_during(work) >= turns


async def test_rudder_servers_batch_is_mapped_in_one_go() -> None:
    """100 jobs (Processor.transformBatchSize): no yield, nothing added to the hot path."""
    jobs = [_job(n) for n in range(YIELD_EVERY)]
    assert await _turns_during(lambda: process(jobs, ScriptedLookup([]))) == 0
