"""The process's one connection pool to Klaviyo, with its rate limits and metrics.

One :class:`KlaviyoClient` per app: the lifespan opens and closes it. It holds what every
delivery shares (the transport and its connection pool, the per-endpoint limiters, a connection
cap and the metrics) and knows no key: a ``KlaviyoSession(client, key)`` binds one
(``session.py``), and everything that sends goes through a session.

Requests go through an :class:`~.exchange.Exchange`: by default
:class:`~.exchange.AiohttpExchange` (aiohttp's session, called straight), in tests the
``httpx.AsyncBaseTransport`` injected (``httpx.MockTransport`` with respx,
``httpx.ASGITransport`` with the emulator) through :class:`~.exchange.HttpxExchange`. No
``httpx.AsyncClient`` and, in production, no ``httpx.Request``/``Response``: they cost more CPU
per request than the exchange itself (docs/architecture.md, "The HTTP client"). Of what
``httpx.AsyncClient`` added, this client does itself what it needs: the base URL, httpx's
default headers, the timeouts, and no redirect followed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from types import TracebackType
from typing import Final, Self

import httpx
import orjson

from ..planned import PlannedRequest
from ..settings import Settings
from .answers import KlaviyoAnswer
from .exchange import AiohttpExchange, Exchange, HttpxExchange, RequestHeaders
from .facts import Endpoint
from .metrics import DeliveryMetrics
from .ratelimit import RateLimiter, limits_of, retry_after

logger = logging.getLogger(__name__)

#: What ``httpx.AsyncClient`` sent with every request, sent still (a request's own headers win).
_DEFAULT_HEADERS: Final = {
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate",
    "Connection": "keep-alive",
    "User-Agent": f"python-httpx/{httpx.__version__}",
}

__all__ = ["KlaviyoClient", "RequestHeaders"]


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
        self.limits = rate_limiter if rate_limiter is not None else _limiter(settings)
        self.metrics.watch(self.limits)
        self._injected = transport
        self._exchange: Exchange | None = None
        self._connections = asyncio.Semaphore(settings.max_connections)
        self._url = _url_maker(settings.klaviyo_base_url)
        self._host = httpx.URL(settings.klaviyo_base_url).netloc

    async def __aenter__(self) -> Self:
        injected = self._injected
        self._exchange = (
            AiohttpExchange(self.settings)
            if injected is None
            else HttpxExchange(injected, self.settings)
        )
        await self.limits.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._exchange is not None:
            # As httpx.AsyncClient did: closing the client closes its transport.
            exchange, self._exchange = self._exchange, None
            await exchange.aclose()
        await self.limits.aclose()

    @property
    def is_open(self) -> bool:
        """Between ``__aenter__`` and ``__aexit__`` (the readiness check reads it)."""
        return self._exchange is not None

    def slot(self, endpoint: Endpoint, max_wait: float, account: str = "") -> _Slot:
        """A rate-limit slot of ``account`` (:func:`.ratelimit.account_of`; shared limits are
        per account) and a connection for one exchange (raises ``RateLimited``).

        The slot spans the whole exchange, so a late departure cannot crowd one of Klaviyo's
        windows; the connection semaphore keeps requests from queueing inside the transport's pool,
        whose bookkeeping grows with its queue. ``max_wait`` is the limiter's own deadline
        because the limiter knows its wait before it starts: a wait longer than the time left
        fails at once, with that wait as ``retry_after`` (a throttle the caller can time),
        where the delivery's ``asyncio.timeout`` would only cut it off at the deadline.
        """
        return _Slot(self, endpoint, max_wait, account)

    def request_headers(self, headers: Mapping[str, str]) -> RequestHeaders:
        """``headers`` over httpx's defaults, encoded once: a session keeps one set per
        revision. ``Host`` leads them, as httpx put it; each request adds its length."""
        merged = httpx.Headers({**_DEFAULT_HEADERS, **headers})
        return ((b"Host", self._host), *merged.raw)

    async def call(
        self, request: PlannedRequest, headers: RequestHeaders, account: str = ""
    ) -> KlaviyoAnswer:
        """One HTTP exchange, measured, its answer read once; no retries (the session's).

        Raises ``httpx.TransportError``; an answer that cannot be used (its body over
        ``max_answer_bytes`` or not decodable) raises :class:`UnusableAnswer`, one of them.
        The endpoint's limiter learns from the answer: ``RateLimit-*`` headers, and a 429's
        wait, so that concurrent deliveries to the endpoint wait too.
        """
        exchange = self._exchange
        if exchange is None:
            msg = "KlaviyoClient is not open: use `async with KlaviyoClient(...)`"
            raise RuntimeError(msg)
        endpoint = request.endpoint
        body = orjson.dumps(request.body)
        with self.metrics.timed(endpoint.value):
            try:
                answer = await exchange(request.method, self._url(request.path), headers, body)
            except httpx.TransportError as exc:
                self.metrics.answered(endpoint.value, type(exc).__name__)
                raise
        self.metrics.answered(endpoint.value, answer.status)
        limiter = self.limits.of(endpoint, account)
        limiter.observe(answer.headers)
        logger.debug("klaviyo %s %s -> %d", request.method, request.path, answer.status)
        if answer.status == 429 and (wait := retry_after(answer.headers, answer.body)) is not None:
            limiter.hold(wait)
        return answer


class _Slot:
    """:meth:`KlaviyoClient.slot`, as a class: ``@asynccontextmanager`` costs a generator and
    its frames on every request."""

    __slots__ = ("_client", "_endpoint", "_limit", "_max_wait")

    def __init__(
        self, client: KlaviyoClient, endpoint: Endpoint, max_wait: float, account: str
    ) -> None:
        self._client = client
        self._endpoint = endpoint
        self._max_wait = max_wait
        self._limit = client.limits.of(endpoint, account).slot(max_wait=max_wait)

    async def __aenter__(self) -> None:
        client = self._client
        start = time.perf_counter()
        await self._limit.__aenter__()
        try:
            client.metrics.waited(self._endpoint.value, time.perf_counter() - start)
            await client._connections.acquire()
        except BaseException:
            await self._limit.__aexit__(None, None, None)
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._client._connections.release()
        await self._limit.__aexit__(None, None, None)


def _limiter(settings: Settings) -> RateLimiter:
    """The process's own limiter; with ``REDIS_URL``, the shared one in front of it (imported
    only then: without Redis, redis-py is never loaded)."""
    local = RateLimiter.from_settings(settings)
    if settings.redis_url is None:
        return local
    from .shared_limits import SharedRateLimiter

    return SharedRateLimiter(settings, local, limits_of(settings))


def _url_maker(base_url: str) -> Callable[[str], str]:
    """``path`` below ``base_url`` (its own path kept, as ``httpx.AsyncClient(base_url=...)``
    merged them), parsed once per path: the few endpoints, and recent profile ids."""
    base = str(httpx.URL(base_url)).rstrip("/")

    @lru_cache(maxsize=256)
    def url(path: str) -> str:
        return str(httpx.URL(base + "/" + path.lstrip("/")))

    return url
