"""The sender: works like rudder-server with its per-user barrier. Users are split over a few
lanes, each lane sends its batches one after another, and a batch answered 429/503 is resent
(only its ``failed`` events, or all of them) until no event is ``failed``."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import httpx

from support.emulator_control import Json
from support.events import Planned
from support.fault_matrix.faults import Injector

BATCH_SIZE: Final = 50
LANES: Final = 8
MAX_ROUNDS: Final = 40

Resend = Literal["failed", "batch"]


@dataclass
class Tracked:
    """One event and what the service said about it, across resends."""

    planned: Planned
    sends: int = 0
    status: str | None = None  # the last result's status: delivered, rejected or failed
    error: Json | None = None


@dataclass
class Traffic:
    answers: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    gave_up: int = 0


class Sender:
    """Sends one lane's batches in order, resending retryable events until none is left."""

    def __init__(
        self,
        service: httpx.AsyncClient,
        injector: Injector,
        traffic: Traffic,
        *,
        resend: Resend,
        max_wait: float,
    ) -> None:
        self.service, self.injector, self.traffic = service, injector, traffic
        self.resend, self.max_wait = resend, max_wait

    async def lane(self, batches: Iterable[list[Tracked]]) -> None:
        for batch in batches:
            await self._deliver(batch)

    async def _deliver(self, batch: list[Tracked]) -> None:
        pending = batch
        await self.injector.before_batch(len(batch))
        for _ in range(MAX_ROUNDS):
            wait = await self._send(pending)
            failed = [t for t in pending if t.status not in ("delivered", "rejected")]
            if not failed:
                return
            pending = failed if self.resend == "failed" else batch
            await asyncio.sleep(min(wait, self.max_wait))
        self.traffic.gave_up += sum(t.status not in ("delivered", "rejected") for t in batch)

    async def _send(self, pending: list[Tracked]) -> float:
        """One request; records each event's result; returns the Retry-After to honour."""
        body = {"batch": [t.planned.message for t in pending]}
        for tracked in pending:
            tracked.sends += 1
        try:
            response = await self.service.post("/v1/events", json=body)
        except httpx.TransportError:
            self.traffic.transport_errors += 1
            for tracked in pending:
                tracked.status = "failed"
            return 1.0
        self.traffic.answers[response.status_code] += 1
        if response.status_code not in (200, 207, 400, 429, 503):
            raise RuntimeError(f"unexpected answer {response.status_code}: {response.text}")
        results = response.json()["results"]
        for tracked, result in zip(pending, results, strict=True):
            if result["messageId"] != tracked.planned.message_id:
                raise RuntimeError(f"results out of order: {result['messageId']}")
            tracked.status, tracked.error = result["status"], result.get("error")
        return float(response.headers.get("Retry-After", "1"))


def lanes(events: Sequence[Planned], count: int, size: int) -> list[list[list[Tracked]]]:
    """Events split by user over ``count`` lanes (order kept), each cut into batches."""
    per_lane: list[list[Tracked]] = [[] for _ in range(count)]
    for planned in events:
        per_lane[int(planned.user.rsplit("-", 1)[1]) % count].append(Tracked(planned))
    return [[lane[i : i + size] for i in range(0, len(lane), size)] for lane in per_lane]
