"""The retry policy: which failures to retry, how long to wait, and what running out means.

stamina runs the loop and computes the backoff: exponential from ``BACKOFF_INITIAL``, doubling
up to ``BACKOFF_MAX``, plus a jitter of up to ``BACKOFF_INITIAL`` so that concurrent deliveries
spread their retries after a shared blip (:meth:`RetryHook.attempts` states it once).
:class:`RetryHook` is stamina's backoff hook. It retries transport errors (an unusable answer
among them) and :class:`KlaviyoUnavailable` (408, 429, 5xx, a non-Klaviyo 403, the
client-side limiter), never another answer, nor a redirect. It returns ``True`` for them,
and a float only where Klaviyo named the wait (``Retry-After``, or the "Expected available in
N seconds" of a 429 without it), which stamina then waits instead. When Klaviyo asks for longer
than the delivery deadline or ``max_retry_after``, the delivery gives up at once with
``retry_after``, so the caller gets a 429 in time instead of timing out and re-sending.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Final, TypeVar

import httpx
import stamina

from ..errors import KlaviyoRedirected, KlaviyoUnavailable
from ..settings import Settings
from .facts import Endpoint
from .metrics import DeliveryMetrics
from .ratelimit import RateLimiter

logger = logging.getLogger(__name__)

#: Retry-After to suggest when a delivery ran out of time while Klaviyo was throttling.
DEFAULT_THROTTLE_WAIT: Final = 1
# Klaviyo's "Expected available in 0 seconds" still means "not this instant".
_MIN_SERVER_WAIT: Final = 0.1
#: stamina's ``wait_exp_base``: each backoff doubles the one before.
_EXP_BASE: Final = 2.0
# stamina warns on a timeout of 0; any timeout not above 0 stops after the failure, as it should.
_SPENT: Final = -1.0

T = TypeVar("T")


class RetryHook:
    """stamina backoff hook for one logical request: whether to retry, and after how long.

    It also keeps the one deadline check stamina cannot make: stamina's ``timeout`` stops on
    the time already spent, not counting the sleep it is about to start, so a backoff could
    end past the deadline. The hook therefore retries only when even the longest wait stamina
    may pick for this try fits in the time left. The log line says which it knows: the wait
    Klaviyo named (``retry_wait``), or the longest stamina may draw (``retry_wait_max``).
    """

    def __init__(
        self, settings: Settings, metrics: DeliveryMetrics, endpoint: Endpoint, deadline: float
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._endpoint = endpoint
        self._deadline = deadline
        self._retries = 0
        self.last_unavailable: KlaviyoUnavailable | None = None

    def attempts(self, remaining: float) -> AsyncIterable[stamina.Attempt]:
        """stamina's loop for this request: ``max_attempts`` tries within ``remaining`` s."""
        s = self._settings
        return stamina.retry_context(
            on=self,
            attempts=s.max_attempts,
            timeout=remaining,
            wait_initial=s.backoff_initial,
            wait_max=s.backoff_max,
            wait_jitter=s.backoff_initial,
            wait_exp_base=_EXP_BASE,
        )

    async def after_first(self, first: Exception, attempt: Callable[[], Awaitable[T]]) -> T:
        """stamina's loop, entered only once the first try failed with ``first``.

        The first try runs outside the loop, because building stamina's loop costs about as
        much as the rest of the session's work on a request. The loop's own first try raises
        ``first`` again, so stamina sees the same failure at the same attempt number as if it
        had run that try: the hook, the backoff, the retry log line and the attempt count are
        unchanged. Its ``timeout`` is the time left now, which ends at the same deadline.
        """
        replay: Exception | None = first
        remaining = self._deadline - time.monotonic()
        async for try_ in self.attempts(remaining if remaining > 0 else _SPENT):
            with try_:
                if replay is not None:
                    failed, replay = replay, None
                    raise failed
                return await attempt()
        raise AssertionError("unreachable")  # pragma: no cover

    def __call__(self, exc: Exception) -> bool | float:
        reason = self._reason(exc)
        if reason is None:
            return False
        remaining = self._deadline - time.monotonic()
        named = exc.retry_after if isinstance(exc, KlaviyoUnavailable) else None
        decision: bool | float
        field = "retry_wait"
        if named is not None:
            # Klaviyo named the wait: take it, or stop now if it outlasts the deadline or the
            # cap (the caller gets the wait; the limiter holds no longer than the cap).
            wait = decision = max(named, _MIN_SERVER_WAIT)
            if wait > remaining or wait > self._settings.max_retry_after:
                return False
        else:
            wait, decision, field = self._longest_backoff(), True, "retry_wait_max"
            if wait >= remaining:
                return False
        self._retries += 1
        self._metrics.retried(self._endpoint.value, reason)
        logger.info(
            "klaviyo retry scheduled",
            extra={
                "endpoint": self._endpoint.value,
                "reason": reason,  # Klaviyo's status, the transport error, or rate_limiter
                "attempt": self._retries,
                field: round(wait, 3),
            },
        )
        return decision

    def _reason(self, exc: Exception) -> str | None:
        """What the failure is called in the log and the metric; ``None``: not retried."""
        if isinstance(exc, KlaviyoRedirected):
            return None
        if isinstance(exc, KlaviyoUnavailable):
            self.last_unavailable = exc
            return str(exc.klaviyo_status or "rate_limiter")
        if isinstance(exc, httpx.TransportError):
            return type(exc).__name__
        return None

    def _longest_backoff(self) -> float:
        """stamina's wait before the next try, ``min(wait_max, wait_initial * wait_exp_base **
        (try - 1) + jitter)``, with the whole jitter; the exponent is capped against overflow."""
        s = self._settings
        grown = s.backoff_initial * _EXP_BASE ** min(self._retries, 64)
        return min(s.backoff_max, grown + s.backoff_initial)


def out_of_time(
    limits: RateLimiter,
    endpoint: Endpoint,
    last: KlaviyoUnavailable | None,
    message: str,
    *,
    window: float,
) -> KlaviyoUnavailable:
    """The deadline ran out. Still a throttle if rate limits were the reason (Klaviyo's 429s
    during this delivery, or our limiter holding the endpoint within ``window`` seconds):
    callers retry 429 far longer than 5xx."""
    limited = limits[endpoint].throttling()
    if limited is None and limits.held_within(window):
        limited = float(DEFAULT_THROTTLE_WAIT)
    if last is not None and last.throttled:
        return KlaviyoUnavailable(
            f"{message} (throttled)",
            retry_after=last.retry_after or limited,
            throttled=True,
            klaviyo_status=last.klaviyo_status,
        )
    if limited is not None:
        return KlaviyoUnavailable(f"{message} (rate limited)", retry_after=limited, throttled=True)
    return KlaviyoUnavailable(message, klaviyo_status=last.klaviyo_status if last else None)
