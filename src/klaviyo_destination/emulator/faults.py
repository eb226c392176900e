"""Injected faults: what the next matching ``/api`` requests get instead of Klaviyo's answer.

Kinds (one ``FaultSpec`` may also just set ``latency_ms``):

* queued status: the next ``count`` matching requests answer ``status`` (optional raw ``body``
  and ``content_type``, e.g. Cloudflare's HTML 403; optional ``Retry-After``; optional extra
  ``headers``, e.g. ``Location`` or ``Content-Encoding``; or ``body_size`` filler bytes,
  streamed, for an answer too large to read); with ``after_processing`` the request is applied
  first and its answer replaced, e.g. by a corrupt gzip body;
* queued drop: the connection is closed without a response; with ``after_processing`` the
  request is applied first, i.e. "Klaviyo did it but the answer was lost";
* random: each request fails with ``status`` with probability ``error_rate`` (seeded);
* latency: every request waits ``latency_ms`` first, until cleared.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FaultSpec(BaseModel):
    """Body of ``POST /__emulator/faults``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    status: int | None = Field(default=None, ge=100, le=599)
    count: int = Field(default=1, ge=1)
    retry_after: int | None = Field(default=None, ge=0)
    body: str | None = None
    content_type: str | None = None
    headers: dict[str, str] | None = None
    body_size: int | None = Field(default=None, ge=0)
    path: str | None = None
    latency_ms: int | None = Field(default=None, ge=0)
    error_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    seed: int | None = None
    drop_connection: bool = False
    after_processing: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if self.drop_connection and self.status is not None:
            raise ValueError("drop_connection and status are exclusive")
        if self.body is not None and self.body_size is not None:
            raise ValueError("body and body_size are exclusive")
        if self.status is None and (self.headers is not None or self.body_size is not None):
            raise ValueError("headers and body_size need status")
        if self.error_rate is not None and self.status is None:
            raise ValueError("error_rate needs the status to answer with")
        if (
            self.status is None
            and not self.drop_connection
            and self.latency_ms is None
            and self.error_rate is None
        ):
            raise ValueError("give status, drop_connection, error_rate or latency_ms")
        return self


@dataclass(frozen=True, slots=True)
class StatusFault:
    status: int
    retry_after: int | None = None
    body: str | None = None
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body_size: int | None = None
    after_processing: bool = False


@dataclass(frozen=True, slots=True)
class DropFault:
    after_processing: bool = False


Fault = StatusFault | DropFault


@dataclass(slots=True)
class _Queued:
    fault: Fault
    remaining: int
    path: str | None


@dataclass(slots=True)
class _Random:
    rate: float
    fault: StatusFault
    path: str | None
    seed: int | None
    rng: random.Random


class FaultPlan:
    """Active faults. Queued faults fire in the order they were added."""

    def __init__(self) -> None:
        self.latency_ms = 0
        self._queue: list[_Queued] = []
        self._random: _Random | None = None

    def clear(self) -> None:
        self.latency_ms = 0
        self._queue.clear()
        self._random = None

    def add(self, spec: FaultSpec) -> None:
        if spec.latency_ms is not None:
            self.latency_ms = spec.latency_ms
        fault: Fault | None = None
        if spec.drop_connection:
            fault = DropFault(spec.after_processing)
        elif spec.status is not None:
            fault = StatusFault(
                spec.status,
                spec.retry_after,
                spec.body,
                spec.content_type,
                tuple((spec.headers or {}).items()),
                spec.body_size,
                spec.after_processing,
            )
        if isinstance(fault, StatusFault) and spec.error_rate is not None:
            # Chaos, not a test oracle: a seeded PRNG makes a run repeatable.
            rng = random.Random(spec.seed)  # noqa: S311
            self._random = _Random(spec.error_rate, fault, spec.path, spec.seed, rng)
        elif fault is not None:
            self._queue.append(_Queued(fault, spec.count, spec.path))

    def next_for(self, path: str) -> Fault | None:
        """Consume and return the fault this request gets, if any."""
        for queued in self._queue:
            if queued.path is None or path.startswith(queued.path):
                queued.remaining -= 1
                if queued.remaining == 0:
                    self._queue.remove(queued)
                return queued.fault
        chaos = self._random
        if chaos is None or not (chaos.path is None or path.startswith(chaos.path)):
            return None
        return chaos.fault if chaos.rng.random() < chaos.rate else None

    def describe(self) -> dict[str, Any]:
        queued = [
            {"kind": _kind(q.fault), **asdict(q.fault), "remaining": q.remaining, "path": q.path}
            for q in self._queue
        ]
        chaos = self._random
        random_fault = chaos and {
            "error_rate": chaos.rate,
            "status": chaos.fault.status,
            "path": chaos.path,
            "seed": chaos.seed,
        }
        return {"latency_ms": self.latency_ms, "queued": queued, "random": random_fault}


def _kind(fault: Fault) -> str:
    return "drop_connection" if isinstance(fault, DropFault) else "status"
