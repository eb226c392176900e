"""Rate limits shared, through Redis, by every process delivering for one Klaviyo account.

With ``REDIS_URL`` set, a slot for an endpoint class comes from Redis, not from the process:
the same windows as :mod:`.ratelimit` (a request counts from its admission until one window
after its answer, so no span of 1 s or 60 s on Klaviyo's side holds more than the limit), kept
in three keys per account and endpoint class, and changed only by one Lua script, so two
processes cannot both take the last slot. The account in the keys is a hash of its private
key (:func:`.ratelimit.account_of`), never the key.

* ``…:f`` (sorted set): the slots in flight, each scored with the end of its lease: a process
  that dies holding one gives it back when the lease runs out (the longest a request can take).
* ``…:d`` (sorted set): the answered ones, scored with the time Redis heard back, kept 60 s.
* ``…:h`` (string, expiring): until when Klaviyo asked the account to wait (``Retry-After``,
  ``RateLimit-Remaining: 0``): a 429 one process sees holds all of them.

Time is Redis's own (``TIME`` in the script, ``redis_link.py``), so the processes' clocks need
not agree.

The hot path is one round trip per burst of requests, not per request: each limiter (account
and endpoint class) sends at most one script call at a time, and that call takes every slot
asked for (and up to :data:`SPARE` more ahead when the budget has room) and records every answer
since the last one; answers alone wait :data:`LINGER` for a request to ride with.

When Redis is slow (no answer within ``REDIS_TIMEOUT``), down, restarted without its data or
never reachable, the process goes on with its own limiter (:class:`.ratelimit.EndpointLimiter`,
its ``REPLICAS`` share of the budget), logs the change once, and probes Redis every second;
back to shared when it answers. A request waiting for a slot then takes one locally: nothing
is dropped or sent twice over it. Slots granted by Redis and answered while it was away lapse
with their lease.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections import deque
from collections.abc import Mapping
from typing import Final

from ..errors import RateLimited
from ..settings import Settings
from .facts import Endpoint, RateLimit
from .ratelimit import (
    BURST_PERIOD,
    IN_FLIGHT_POLL,
    STEADY_PERIOD,
    EndpointLimiter,
    RateLimiter,
    steady_hint,
)
from .redis_link import LOST, RedisLink

#: Seconds answers wait for a request to share a round trip (see ``SharedLimiter._linger``);
#: longer while the budget has room (a quarter of it free), where recording late costs nothing.
LINGER: Final = IN_FLIGHT_POLL
LINGER_ROOMY: Final = 0.05
#: The most slots taken ahead for the next requests, a quarter of the free ones at most (see
#: ``_round_trip``), and the seconds they may be used for: past that (or on Klaviyo's hold)
#: they go back.
SPARE: Final = 64
SPARE_AGE: Final = 0.05


class SharedLimiter:
    """One account's endpoint class, in Redis; the process's own limiter when it is not."""

    def __init__(
        self, link: RedisLink, local: EndpointLimiter, keys: tuple[str, str, str], args: list[int]
    ) -> None:
        self._link = link
        self._local = local
        self._keys = keys
        self._args = args  # burst, steady, their periods, the lease and the poll (ms): fixed
        self._prefix = f"{secrets.token_hex(6)}:"
        self._count = 0
        self._waiters: deque[tuple[asyncio.Future[str | None], float]] = deque()
        self._answered: list[str] = []
        self._spare: list[str] = []
        self._spare_until = 0.0
        self._give_back: list[str] = []
        self._hold_ms = 0.0
        self._runner: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._lingering = False
        self._roomy = False
        self._wait = 0.0
        self._free = (args[0], args[1])

    def slot(self, max_wait: float | None = None) -> _Slot:
        return _Slot(self, max_wait)

    def observe(self, headers: Mapping[str, str]) -> None:
        if (seconds := steady_hint(headers)) is not None:
            self.hold(seconds)

    def hold(self, seconds: float) -> None:
        """Klaviyo's hint, for every process: kept locally too (in case Redis goes away)."""
        self._local.hold(seconds)
        held = self._local.held_for()
        if held > 0:
            self._hold_ms = max(self._hold_ms, held * 1000)
            self._give_back += self._spare  # taken before the hold: not to be used in it
            self._spare = []
            self._kick()
            self._wake.set()

    def held_within(self, seconds: float) -> bool:
        return self._local.held_within(seconds)

    def throttling(self) -> float | None:
        if not self._link.shared:
            return self._local.throttling()
        waiting = any(not future.done() for future, _ in self._waiters)
        return max(self._wait, IN_FLIGHT_POLL) if waiting else None

    def available(self) -> dict[str, int]:
        if not self._link.shared:
            return self._local.available()
        return {"burst": max(0, self._free[0]), "steady": max(0, self._free[1])}

    async def _admit(self, max_wait: float | None) -> str | None:
        """A slot's id in Redis, or ``None`` for one of the local limiter's."""
        if self._link.shared:
            if self._spare and time.monotonic() < self._spare_until:
                return self._spare.pop()
            future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
            give_up = math.inf if max_wait is None else time.monotonic() + max_wait
            self._waiters.append((future, give_up))
            self._kick()
            if self._lingering:
                self._wake.set()
            try:
                ticket = await future
            except asyncio.CancelledError:
                # Cancelled after the slot was granted, before this task ran again.
                if future.done() and not future.cancelled() and (lost := future.result()):
                    self._leave(lost)
                raise
            if ticket is not None:
                return ticket
        await self._local._admit(max_wait)
        self._local._enter()
        return None

    def _leave(self, ticket: str | None) -> None:
        if ticket is None:
            self._local._leave()
            return
        self._answered.append(ticket)
        self._kick()
        if self._waiters:  # they sleep for a slot: an answer recorded may bring it sooner
            self._wake.set()

    def _kick(self) -> None:
        if self._runner is None:
            self._runner = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._has_work():
                if not self._waiters and not self._hold_ms:
                    await self._linger()
                refused = await self._round_trip()
                if refused is None:
                    return
                if refused and self._waiters and not self._answered:
                    # Sleep until a slot frees (or an answer comes back to record).
                    self._wake.clear()
                    try:
                        async with asyncio.timeout(self._wait):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
        finally:
            self._runner = None

    def _has_work(self) -> bool:
        """Anything for Redis: waiters, answers, a hold, spare slots to keep or give back."""
        return bool(
            self._waiters or self._answered or self._hold_ms or self._spare or self._give_back
        )

    async def _linger(self) -> None:
        """Only answers to record and spare slots to give back: they wait up to :data:`LINGER`
        (:data:`LINGER_ROOMY` while a quarter of the budget is free) for a request to ride with
        (most do under load). Recorded late, a slot counts a little longer, never shorter."""
        self._lingering = True
        self._wake.clear()
        try:
            async with asyncio.timeout(LINGER_ROOMY if self._roomy else LINGER):
                await self._wake.wait()
        except TimeoutError:
            pass
        finally:
            self._lingering = False

    async def _round_trip(self) -> bool | None:
        """Ask for a slot for every waiter, record the answers. Returns whether some waiter
        got none, or ``None`` when the limits turned local (the waiters go to the local
        limiter).

        With waiters and room in the budget (a quarter of the last call's free slots, at most
        :data:`SPARE`), more
        are asked for and kept for the next requests, which then need no round trip: under
        load one call serves many requests. A spare slot counts from when Redis granted it,
        earlier than its request leaves: longer, never shorter. Without waiters, past
        :data:`SPARE_AGE` (another process may have seen a 429 since) or on a hold, the spares
        go back unused."""
        self._waiters = deque(w for w in self._waiters if not w[0].done())
        asked = len(self._waiters)
        ahead = min(SPARE, min(self._free) // 4) if asked else 0
        wanted, first = asked + max(0, ahead), self._count
        self._count += wanted
        answered, self._answered = self._answered, []
        if not asked or time.monotonic() >= self._spare_until:
            self._give_back += self._spare
            self._spare = []
        unused, self._give_back = self._give_back, []
        hold, self._hold_ms = self._hold_ms, 0.0
        args: list[int | float | str] = [wanted, *self._args, hold, self._prefix, first]
        args += [len(answered), *answered, *unused]
        try:
            granted, wait_ms, burst, steady = await self._link.run(self._keys, args)
        except LOST as exc:
            self._link.lost(exc)
            self._spare.clear()  # they lapse with their lease
            self._give_back.clear()
            while self._waiters:
                future, _ = self._waiters.popleft()
                if not future.done():
                    future.set_result(None)
            return None
        self._free = (burst, steady)
        self._roomy = 4 * burst >= self._args[0] and 4 * steady >= self._args[1]
        self._wait = max(wait_ms / 1000, IN_FLIGHT_POLL)
        self._spare_until = time.monotonic() + SPARE_AGE
        for number in range(first, first + granted):
            self._hand_out(f"{self._prefix}{number}")
        self._refuse_beyond(self._wait)
        return granted < asked

    def _hand_out(self, ticket: str) -> None:
        """A granted slot to the first waiter still waiting, else to the spares."""
        while self._waiters:
            future, _ = self._waiters.popleft()
            if not future.done():  # not cancelled during the round trip
                future.set_result(ticket)
                return
        self._spare.append(ticket)

    def _refuse_beyond(self, wait: float) -> None:
        """Waiters whose time runs out before the next slot fail now, as locally."""
        if not self._waiters:
            return
        now = time.monotonic()
        kept: deque[tuple[asyncio.Future[str | None], float]] = deque()
        for future, give_up in self._waiters:
            if future.done():
                continue
            if now + wait > give_up:
                future.set_exception(RateLimited(wait))
            else:
                kept.append((future, give_up))
        self._waiters = kept


class _Slot:
    """:meth:`SharedLimiter.slot`, as a class (see ``ratelimit._Slot``)."""

    __slots__ = ("_limiter", "_max_wait", "_ticket")

    def __init__(self, limiter: SharedLimiter, max_wait: float | None) -> None:
        self._limiter = limiter
        self._max_wait = max_wait
        self._ticket: str | None = None

    async def __aenter__(self) -> None:
        self._ticket = await self._limiter._admit(self._max_wait)

    async def __aexit__(self, *exc: object) -> None:
        self._limiter._leave(self._ticket)


class SharedRateLimiter(RateLimiter):
    """:class:`.ratelimit.RateLimiter` whose budgets live in Redis, one per account; the
    process's own limiters (``REPLICAS`` share) stand in while Redis cannot be reached."""

    per_account = True

    def __init__(
        self, settings: Settings, local: RateLimiter, tiers: Mapping[Endpoint, RateLimit]
    ) -> None:
        if settings.redis_url is None:
            raise ValueError("SharedRateLimiter needs REDIS_URL")
        super().__init__(dict(local.items()))
        self._link = RedisLink(settings.redis_url, settings.redis_timeout)
        self._tiers = dict(tiers)
        # The longest a slot can be held: the delivery's deadline, or one exchange's timeouts.
        s = settings
        exchange = s.pool_timeout + s.connect_timeout + s.write_timeout + s.read_timeout
        self._lease_ms = math.ceil(max(s.delivery_deadline, exchange) * 1000)
        self._shared: dict[tuple[str, Endpoint], SharedLimiter] = {}

    @property
    def shared(self) -> bool:
        return self._link.shared

    @property
    def redis_calls(self) -> int:
        return self._link.calls

    async def start(self) -> None:
        await self._link.start()

    async def aclose(self) -> None:
        runners = [limiter._runner for limiter in self._shared.values() if limiter._runner]
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)
        for limiter in self._shared.values():
            if limiter._has_work() and self._link.shared:
                await limiter._round_trip()  # else answers and spares count until their lease
        await self._link.aclose()

    def of(self, endpoint: Endpoint, account: str) -> SharedLimiter:
        found = self._shared.get((account, endpoint))
        if found is None:
            tier = self._tiers[endpoint]
            periods = [round(BURST_PERIOD * 1000), round(STEADY_PERIOD * 1000)]
            base = f"klaviyo-destination:{{{account}:{endpoint.name.lower()}}}:"
            keys = (base + "f", base + "d", base + "h")
            poll = max(1, round(IN_FLIGHT_POLL * 1000))
            args = [tier.burst, tier.steady, *periods, self._lease_ms, poll]
            found = SharedLimiter(self._link, self[endpoint], keys, args)
            self._shared[(account, endpoint)] = found
        return found
