"""The process's one connection pool to Klaviyo, with its rate limits and metrics.

One :class:`KlaviyoClient` per app: the lifespan opens and closes it. It holds what every
delivery shares (the ``httpx.AsyncClient``, the per-endpoint limiters, a connection cap and the
metrics) and knows no key: a ``KlaviyoSession(client, key)`` binds one (``session.py``), and
everything that sends goes through a session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

import httpx
import orjson
import stamina

from ..planned import Endpoint, PlannedRequest
from ..settings import Settings
from .metrics import DeliveryMetrics
from .ratelimit import RateLimiter, retry_after

logger = logging.getLogger(__name__)


class KlaviyoClient:
    """Shared resources of every delivery; sending goes through a ``KlaviyoSession``."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        metrics: DeliveryMetrics | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else DeliveryMetrics()
        self.limits = (
            rate_limiter if rate_limiter is not None else RateLimiter.from_settings(settings)
        )
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._connections = asyncio.Semaphore(settings.max_connections)

    async def __aenter__(self) -> Self:
        # RetryHook logs and counts every retry; stamina's own hooks would add a second log
        # line per retry and counters in prometheus-client's global registry.
        stamina.instrumentation.set_on_retry_hooks([])
        s = self.settings
        self._http = httpx.AsyncClient(
            base_url=s.klaviyo_base_url,
            timeout=httpx.Timeout(
                connect=s.connect_timeout,
                read=s.read_timeout,
                write=s.write_timeout,
                pool=s.pool_timeout,
            ),
            limits=httpx.Limits(
                max_connections=s.max_connections,
                max_keepalive_connections=s.max_keepalive_connections,
            ),
            transport=self._transport,
            # The reference's HTTP client follows up to 5 redirects; httpx drops
            # Authorization on a cross-origin one.
            follow_redirects=True,
            max_redirects=5,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def is_open(self) -> bool:
        """Between ``__aenter__`` and ``__aexit__`` (the readiness check reads it)."""
        return self._http is not None and not self._http.is_closed

    @asynccontextmanager
    async def slot(self, endpoint: Endpoint, max_wait: float) -> AsyncIterator[None]:
        """A rate-limit slot and a connection for one exchange (raises ``RateLimited``).

        The slot spans the whole exchange, so a late departure cannot crowd one of Klaviyo's
        windows; the connection semaphore keeps requests from queueing inside httpcore's pool,
        whose bookkeeping grows with its queue.
        """
        async with self.limits[endpoint].slot(max_wait=max_wait), self._connections:
            yield

    async def call(self, request: PlannedRequest, headers: Mapping[str, str]) -> httpx.Response:
        """One HTTP exchange, measured; no retries (``KlaviyoSession.send`` has them)."""
        if self._http is None:
            msg = "KlaviyoClient is not open: use `async with KlaviyoClient(...)`"
            raise RuntimeError(msg)
        endpoint = request.endpoint
        with self.metrics.timed(endpoint.value):
            try:
                response = await self._http.request(
                    request.method,
                    request.path,
                    content=orjson.dumps(request.body),
                    headers=headers,
                )
            except httpx.TransportError as exc:
                self.metrics.answered(endpoint.value, type(exc).__name__)
                raise
        self.metrics.answered(endpoint.value, response.status_code)
        self.limits[endpoint].observe(response.headers)
        logger.debug("klaviyo %s %s -> %d", request.method, request.path, response.status_code)
        return response

    def note_throttle(self, endpoint: Endpoint, response: httpx.Response, body: Any) -> None:
        """After a 429 with a wait hint, concurrent deliveries to the endpoint wait too."""
        wait = retry_after(response.headers, body) if response.status_code == 429 else None
        if wait is not None:
            self.limits[endpoint].hold(wait)
