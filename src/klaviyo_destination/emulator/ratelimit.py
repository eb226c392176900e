"""Klaviyo's rate limiter: per account and endpoint class, a 1 s burst and a 60 s steady window.

Both windows are fixed (aligned to the clock), as the v2023-02-22 docs describe; a request that
finds either window full is refused and does not count.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from klaviyo_destination.klaviyo.facts import TIER_L, TIER_M, TIER_XL

BURST_SECONDS: Final = 1.0
STEADY_SECONDS: Final = 60.0


class EndpointClass(StrEnum):
    """Groups of operations sharing one quota (the OAS ``x-klaviyo-ratelimit`` tiers)."""

    PROFILES = "profiles"
    PROFILE_IMPORT = "profile_import"
    PROFILE_QUERIES = "profile_queries"
    EVENTS = "events"
    SUBSCRIPTIONS = "subscriptions"
    UNSUBSCRIPTIONS = "unsubscriptions"
    LISTS = "lists"


@dataclass(frozen=True, slots=True)
class RateLimit:
    burst: int
    steady: int


#: Tier L for profile writes and subscriptions, XL for events, M for queries (``facts.py``):
#: revision 2023-02-22's, and every class a revision's own tiers do not name.
DEFAULT_RATE_LIMITS: Final[Mapping[EndpointClass, RateLimit]] = {
    EndpointClass.PROFILES: RateLimit(*TIER_L),
    EndpointClass.PROFILE_IMPORT: RateLimit(*TIER_L),
    EndpointClass.PROFILE_QUERIES: RateLimit(*TIER_M),
    EndpointClass.EVENTS: RateLimit(*TIER_XL),
    EndpointClass.SUBSCRIPTIONS: RateLimit(*TIER_L),
    EndpointClass.UNSUBSCRIPTIONS: RateLimit(*TIER_L),
    EndpointClass.LISTS: RateLimit(*TIER_M),
}

_SUBSCRIPTION_JOBS: Final = re.compile(r"^/api/profile-(un)?subscription-bulk-create-jobs/?$")
_UNSUBSCRIPTION_JOBS: Final = re.compile(r"^/api/profile-subscription-bulk-delete-jobs/?$")


def classify(method: str, path: str) -> EndpointClass | None:
    """The quota a request draws on; ``None`` for paths the emulator does not serve."""
    if path.startswith("/api/events"):
        return EndpointClass.EVENTS
    if _SUBSCRIPTION_JOBS.match(path):
        return EndpointClass.SUBSCRIPTIONS
    if _UNSUBSCRIPTION_JOBS.match(path):
        return EndpointClass.UNSUBSCRIPTIONS
    if path.rstrip("/") == "/api/profile-import":
        return EndpointClass.PROFILE_IMPORT
    if path.startswith("/api/lists/"):
        return EndpointClass.LISTS
    if path.rstrip("/") == "/api/profiles" and method == "GET":
        return EndpointClass.PROFILE_QUERIES
    if path.startswith("/api/profiles"):
        return EndpointClass.PROFILES
    return None


@dataclass(frozen=True, slots=True)
class Decision:
    """Outcome of one request. ``limit``/``remaining``/``reset`` describe the steady window."""

    allowed: bool
    limit: int
    remaining: int
    reset: int
    wait_seconds: float


@dataclass(slots=True)
class _CountingWindow:
    index: int = -1
    count: int = 0


class ServerRateLimits:
    """Counts requests; ``enabled`` and ``send_retry_after`` can be flipped at runtime.

    A request draws on its revision's tier for its class (``hit``'s ``tiers``) unless that
    class's limit was set (``set_limit``: ``create_emulator`` or the control endpoint), which
    then holds at every revision; windows are per account and class, whatever the revision.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        limits: Mapping[EndpointClass, RateLimit] | None = None,
    ) -> None:
        self._clock = clock
        self.enabled = limits is not None
        self.limits: dict[EndpointClass, RateLimit] = {**DEFAULT_RATE_LIMITS, **(limits or {})}
        self.send_retry_after = True
        #: Classes whose limit was chosen, not Klaviyo's default: they hold at every revision.
        self.overridden = {c for c, v in (limits or {}).items() if DEFAULT_RATE_LIMITS[c] != v}
        self._windows: dict[tuple[str, EndpointClass], tuple[_CountingWindow, _CountingWindow]] = {}

    def reset(self) -> None:
        self._windows.clear()

    def set_limit(self, endpoint: EndpointClass, limit: RateLimit) -> None:
        self.limits[endpoint] = limit
        self.overridden.add(endpoint)

    def limit_of(
        self, endpoint: EndpointClass, tiers: Mapping[EndpointClass, RateLimit]
    ) -> RateLimit:
        if endpoint in self.overridden or endpoint not in tiers:
            return self.limits[endpoint]
        return tiers[endpoint]

    def hit(
        self,
        account: str,
        endpoint: EndpointClass,
        tiers: Mapping[EndpointClass, RateLimit] | None = None,
    ) -> Decision | None:
        """Count one request; ``None`` when limiting is off."""
        if not self.enabled:
            return None
        limit = self.limit_of(endpoint, tiers or {})
        now = self._clock()
        burst, steady = self._windows.setdefault(
            (account, endpoint), (_CountingWindow(), _CountingWindow())
        )
        burst_ends = _roll(burst, now, BURST_SECONDS)
        steady_ends = _roll(steady, now, STEADY_SECONDS)
        waits = []
        if burst.count >= limit.burst:
            waits.append(burst_ends - now)
        if steady.count >= limit.steady:
            waits.append(steady_ends - now)
        if not waits:
            burst.count += 1
            steady.count += 1
        remaining = max(0, limit.steady - steady.count)
        reset = math.ceil(steady_ends - now)
        return Decision(not waits, limit.steady, remaining, reset, max(waits, default=0.0))


def _roll(window: _CountingWindow, now: float, length: float) -> float:
    """Start a new window if the clock moved past the current one; return its end time."""
    index = math.floor(now / length)
    if index != window.index:
        window.index = index
        window.count = 0
    return (index + 1) * length
