"""Client-side rate limiting per Klaviyo endpoint class (per process), and Klaviyo's wait hints.

Klaviyo counts requests in two windows at once, a 1-second burst window and a 1-minute steady
window, and answers 429 when either is exhausted. Each :class:`EndpointLimiter` keeps a sliding
log of its recent admissions for both windows, so no span of one second (or one minute) ever
holds more admissions than the configured limit, whichever way Klaviyo aligns its windows.

Hand-written on purpose, after trying the libraries:

* ``aiolimiter`` is a leaky bucket: a bucket of capacity N that starts empty admits N at once
  and then N more while it drains, i.e. up to 2N inside one window, which is exactly the
  pattern that earns 429s from a fixed-window server.
* ``pyrate-limiter`` 4.x has the right algorithm (sliding-window log, several rates), but every
  limiter starts a background "Leaker" thread, guards its state with threading locks, re-polls
  with a fixed 50 ms buffer and is untyped for ``mypy --strict``.

The log below is a deque of at most ``limit`` timestamps per window, so memory is bounded
(75 + 700 floats for profiles) and waiting is a single computed sleep, never a busy loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from pydantic import SecretStr

from ..errors import RateLimited
from ..settings import Settings
from .facts import REVISIONS, Endpoint, RateLimit

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

_EXPECTED_AVAILABLE = re.compile(r"expected available in (\d+(?:\.\d+)?) seconds?", re.I)

BURST_PERIOD = 1.0
STEADY_PERIOD = 60.0
#: How soon to look again when all of a window's slots are taken by unanswered requests.
IN_FLIGHT_POLL = 0.01


class Limiter(Protocol):
    """What a delivery uses of an endpoint's limiter: this module's :class:`EndpointLimiter`,
    or ``shared_limits.SharedLimiter`` (one account's budget, in Redis)."""

    def slot(self, max_wait: float | None = None) -> AbstractAsyncContextManager[None]: ...

    def observe(self, headers: Mapping[str, str]) -> None: ...

    def hold(self, seconds: float) -> None: ...


class _Window:
    """At most ``limit`` requests in any span of ``period`` seconds.

    A request counts from its admission until ``period`` after it completed: Klaviyo sees it
    at some instant in between, so no window on Klaviyo's side can hold more than ``limit``,
    however late the request leaves or how long it travels.
    """

    def __init__(self, limit: int, period: float) -> None:
        self.limit = limit
        self.period = period
        self.in_flight = 0
        self._stamps: deque[float] = deque()

    def wait(self, now: float) -> float:
        while self._stamps and self._stamps[0] <= now - self.period:
            self._stamps.popleft()
        if len(self._stamps) + self.in_flight < self.limit:
            return 0.0
        if not self._stamps:  # every slot is an unanswered request: look again shortly
            return IN_FLIGHT_POLL
        return self._stamps[0] + self.period - now

    def record(self, now: float) -> None:
        self._stamps.append(now)

    def available(self, now: float) -> int:
        """Slots free at ``now`` (the budget an operator graphs)."""
        self.wait(now)  # drops the stamps that left the window
        return max(0, self.limit - len(self._stamps) - self.in_flight)


class EndpointLimiter:
    """Burst and steady windows for one endpoint, plus a hold set from Klaviyo's own hints."""

    def __init__(
        self,
        burst: int,
        steady: int,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        burst_period: float = BURST_PERIOD,
        steady_period: float = STEADY_PERIOD,
        max_hold: float = math.inf,
    ) -> None:
        self._windows = (_Window(burst, burst_period), _Window(steady, steady_period))
        self._max_hold = max_hold
        self._clock = clock
        self._sleep = sleep
        self._hold_until = 0.0
        self._held_at = -math.inf
        # Waiters queue on the lock, so slots are handed out first come, first served.
        self._lock = asyncio.Lock()
        #: requests in ``_admit`` past its fast path: holding the lock or queued for it
        self._queued = 0

    def _wait(self, now: float) -> float:
        return max(self._hold_until - now, *(window.wait(now) for window in self._windows))

    def slot(self, max_wait: float | None = None) -> _Slot:
        """Hold a slot for the duration of one request (see :class:`_Window`); an async
        context manager."""
        return _Slot(self, max_wait)

    def _enter(self) -> None:
        for window in self._windows:
            window.in_flight += 1

    def _leave(self) -> None:
        now = self._clock()
        for window in self._windows:
            window.in_flight -= 1
            window.record(now)

    async def _admit(self, max_wait: float | None) -> None:
        start = self._clock()
        if not self._queued and self._wait(start) <= 0:
            # Nobody holds or waits for the lock: it would be taken and given back at once.
            return
        self._queued += 1
        try:
            async with self._lock:
                while True:
                    now = self._clock()
                    wait = self._wait(now)
                    if wait <= 0:
                        return
                    if max_wait is not None and (now - start) + wait > max_wait:
                        raise RateLimited(wait)
                    await self._sleep(wait)
        finally:
            self._queued -= 1

    def available(self) -> dict[str, int]:
        """Free slots per window now; none while Klaviyo's own hint holds the endpoint."""
        now = self._clock()
        held = self._hold_until > now
        names = ("burst", "steady")
        return {
            n: 0 if held else w.available(now) for n, w in zip(names, self._windows, strict=True)
        }

    def throttling(self) -> float | None:
        """Seconds until a slot when this endpoint is limited now (waiters or no free slot)."""
        wait = self._wait(self._clock())
        if wait > 0:
            return wait
        return IN_FLIGHT_POLL if self._queued else None

    def hold(self, seconds: float) -> None:
        """Admit nothing for ``seconds`` (Klaviyo said so: ``Retry-After`` or remaining 0), and
        for no longer than ``max_hold``: one odd hint must not stop an endpoint for a day."""
        if math.isfinite(seconds) and seconds > 0:
            self._held_at = self._clock()
            until = self._held_at + min(seconds, self._max_hold)
            self._hold_until = max(self._hold_until, until)

    def held_for(self) -> float:
        """Seconds the hold set by :meth:`hold` still lasts (0 when none)."""
        return max(0.0, self._hold_until - self._clock())

    def held_within(self, seconds: float) -> bool:
        """Whether Klaviyo asked this endpoint to wait during the last ``seconds``."""
        return self._clock() - self._held_at <= seconds

    def observe(self, headers: Mapping[str, str]) -> None:
        """Honour ``RateLimit-Remaining``/``RateLimit-Reset`` (steady window) of a response."""
        if (reset := steady_hint(headers)) is not None:
            self.hold(reset)


class _Slot:
    """:meth:`EndpointLimiter.slot`: a class, not ``@asynccontextmanager``, which costs a
    generator and its frames on every request."""

    __slots__ = ("_limiter", "_max_wait")

    def __init__(self, limiter: EndpointLimiter, max_wait: float | None) -> None:
        self._limiter = limiter
        self._max_wait = max_wait

    async def __aenter__(self) -> None:
        await self._limiter._admit(self._max_wait)
        self._limiter._enter()

    async def __aexit__(self, *exc: object) -> None:
        self._limiter._leave()


class RateLimiter:
    """One :class:`EndpointLimiter` per :class:`Endpoint`; each endpoint has its own quota."""

    #: Whether :meth:`of` tells accounts apart (a session then hashes its key once for it).
    per_account: bool = False

    def __init__(self, limits: Mapping[Endpoint, EndpointLimiter]) -> None:
        self._limits = dict(limits)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep
    ) -> RateLimiter:
        """Every endpoint class at the tier :func:`limits_of` gives it; with ``REPLICAS`` set,
        this process's even share of it (at least one request per window)."""
        replicas = settings.replicas or 1

        def limiter(limit: RateLimit) -> EndpointLimiter:
            hold = settings.max_retry_after
            burst, steady = (max(1, n // replicas) for n in limit)
            return EndpointLimiter(burst, steady, clock=clock, sleep=sleep, max_hold=hold)

        return cls({endpoint: limiter(limit) for endpoint, limit in limits_of(settings).items()})

    def __getitem__(self, endpoint: Endpoint) -> EndpointLimiter:
        return self._limits[endpoint]

    def of(self, endpoint: Endpoint, account: str) -> Limiter:  # noqa: ARG002 -- see below
        """The limiter a delivery for ``account`` (a hash of its key) draws on: here the
        process's own, whatever the account (``shared_limits`` keys Redis by it)."""
        return self._limits[endpoint]

    @property
    def shared(self) -> bool:
        """Whether the budget is shared with other processes now (``shared_limits``)."""
        return False

    @property
    def redis_calls(self) -> int:
        """Round trips to Redis so far (``shared_limits``); none here."""
        return 0

    async def start(self) -> None:
        """Called by the client's ``__aenter__``; nothing to open for the process's own."""

    async def aclose(self) -> None:
        """Called by the client's ``__aexit__``."""

    def items(self) -> list[tuple[Endpoint, EndpointLimiter]]:
        return list(self._limits.items())

    def held_within(self, seconds: float) -> bool:
        """Whether Klaviyo asked any endpoint to wait during the last ``seconds``."""
        return any(limiter.held_within(seconds) for limiter in self._limits.values())


def limits_of(settings: Settings) -> dict[Endpoint, RateLimit]:
    """The limit of each endpoint class: the tier of ``KLAVIYO_API_VERSION``'s revision (v3:
    profile-import and both list jobs 75/s and 750/min), or of the first revision that has the
    class (the protocol's v1 look-up still creates profiles at 2023-02-22); then the
    ``PROFILES_RATE_*`` and ``EVENTS_RATE_*`` settings that are set, over their classes.

    Klaviyo puts profile writes and list jobs in one tier but counts them per endpoint, so they
    share numbers, not a bucket.
    """
    order = [settings.revision, *REVISIONS.values()]
    limits: dict[Endpoint, RateLimit] = {}
    for endpoint in Endpoint:
        tier = next(r.limits[endpoint] for r in order if endpoint in r.limits)
        if endpoint is Endpoint.EVENTS:
            burst, steady = settings.events_rate_burst, settings.events_rate_steady
        else:
            burst, steady = settings.profiles_rate_burst, settings.profiles_rate_steady
        limits[endpoint] = RateLimit(
            tier.burst if burst is None else burst, tier.steady if steady is None else steady
        )
    return limits


def steady_hint(headers: Mapping[str, str]) -> float | None:
    """Seconds to hold an endpoint for, from ``RateLimit-Remaining: 0`` and its reset."""
    remaining = _number(headers.get("ratelimit-remaining"))
    reset = _number(headers.get("ratelimit-reset"))
    if remaining is not None and reset is not None and remaining <= 0:
        return reset
    return None


def account_of(key: SecretStr) -> str:
    """What names an account in shared state: a hash of its private key, never the key."""
    return hashlib.sha256(key.get_secret_value().encode()).hexdigest()[:32]


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def retry_after(headers: Mapping[str, str], body: Any) -> float | None:
    """Seconds Klaviyo asks us to wait: ``Retry-After`` (seconds or HTTP date), else the
    "Expected available in N seconds" of a 429 ``detail`` (2023 answers lacked the header)."""
    value = (headers.get("retry-after") or "").strip()
    if value:
        seconds = _number(value)
        if seconds is None:
            seconds = _seconds_until(value)
        if seconds is not None:
            return max(seconds, 0.0)
    errors = body.get("errors") if isinstance(body, dict) else None
    for error in errors if isinstance(errors, list) else []:
        detail = error.get("detail") if isinstance(error, dict) else None
        if isinstance(detail, str) and (match := _EXPECTED_AVAILABLE.search(detail)):
            return float(match[1])
    return None


def _seconds_until(http_date: str) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()
