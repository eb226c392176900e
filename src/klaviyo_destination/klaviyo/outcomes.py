"""What delivery reports: one :class:`Outcome` per event, with the requests it sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import DestinationError, KlaviyoUnavailable


@dataclass(frozen=True, slots=True)
class SentRequest:
    method: str
    path: str
    status_code: int | None  # None: no HTTP answer (transport error, limiter, deadline)


@dataclass(slots=True)
class Outcome:
    """What happened to one event; ``error`` is ``KlaviyoError.to_dict()``-shaped, key-free."""

    status: Literal["delivered", "rejected", "failed"]
    requests: list[SentRequest] = field(default_factory=list)
    error: dict[str, Any] | None = None
    retry_after: float | None = None
    throttled: bool = False

    @classmethod
    def of(cls, exc: DestinationError, requests: list[SentRequest]) -> Outcome:
        error = {"klaviyo_status": None, "klaviyo_errors": [], **exc.to_dict()}
        if not isinstance(exc, KlaviyoUnavailable):
            return cls("rejected", requests, error)
        return cls("failed", requests, error, exc.retry_after, exc.throttled)
