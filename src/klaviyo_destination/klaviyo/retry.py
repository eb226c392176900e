"""The retry policy: which failures to retry, how long to wait, and what running out means.

stamina runs the loop; :class:`RetryHook` is its backoff hook. It retries transport errors
(an unusable answer among them) and :class:`KlaviyoUnavailable` (408, 429, 5xx, a non-Klaviyo
403, the client-side limiter), never another answer, nor a redirect. It returns the wait
itself, so ``Retry-After`` (or the "Expected available in N seconds" of a 429 without it) is
honoured, other waits get full jitter, and no wait runs past the delivery deadline or
``max_retry_after``: when Klaviyo asks for longer, the delivery gives up at once with
``retry_after``, so the caller gets a 429 in time instead of timing out and re-sending.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Final

import httpx

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


class RetryHook:
    """stamina backoff hook for one logical request: whether to retry, and after how long."""

    def __init__(
        self, settings: Settings, metrics: DeliveryMetrics, endpoint: Endpoint, deadline: float
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._endpoint = endpoint
        self._deadline = deadline
        self._retries = 0
        self.last_unavailable: KlaviyoUnavailable | None = None

    def __call__(self, exc: Exception) -> bool | float:
        wait, reason = self._wait(exc)
        if wait is None:
            return False
        self._retries += 1
        self._metrics.retried(self._endpoint.value, reason)
        logger.info(
            "klaviyo retry scheduled",
            extra={
                "endpoint": self._endpoint.value,
                "reason": reason,  # Klaviyo's status, the transport error, or rate_limiter
                "attempt": self._retries,
                "retry_wait": round(wait, 3),
            },
        )
        return wait

    def _wait(self, exc: Exception) -> tuple[float | None, str]:
        remaining = self._deadline - time.monotonic()
        if isinstance(exc, KlaviyoRedirected):
            return None, ""
        if isinstance(exc, KlaviyoUnavailable):
            self.last_unavailable = exc
            reason = str(exc.klaviyo_status or "rate_limiter")
            if exc.retry_after is not None:
                # Klaviyo named the wait: take it, or stop now if it outlasts the deadline or
                # the cap (the caller gets the wait; the limiter holds no longer than the cap).
                wait = max(exc.retry_after, _MIN_SERVER_WAIT)
                usable = wait <= remaining and wait <= self._settings.max_retry_after
                return (wait if usable else None), reason
        elif isinstance(exc, httpx.TransportError):
            reason = type(exc).__name__
        else:
            return None, ""
        s = self._settings
        cap = min(s.backoff_max, s.backoff_initial * 2**self._retries)
        # Full jitter spreads the retries of concurrent deliveries after a shared blip.
        wait = random.uniform(0, cap)  # noqa: S311 -- jitter, not cryptography
        return (wait if wait < remaining else None), reason


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
