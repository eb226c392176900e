"""The process's one connection pool to Klaviyo, with its rate limits and metrics.

One :class:`KlaviyoClient` per app: the lifespan opens and closes it. It holds what every
delivery shares (the ``httpx.AsyncClient``, the per-endpoint limiters, a connection cap and the
metrics) and knows no key: a ``KlaviyoSession(client, key)`` binds one (``session.py``), and
everything that sends goes through a session.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Final, Self

import httpx
import orjson

from ..content_length import declared_length
from ..errors import UnusableAnswer
from ..planned import PlannedRequest
from ..settings import Settings
from .answers import KlaviyoAnswer
from .facts import Endpoint
from .metrics import DeliveryMetrics
from .ratelimit import RateLimiter, retry_after

logger = logging.getLogger(__name__)

#: Headers about the body as sent, not as read (decoded, possibly of another length).
_RAW: Final = frozenset({"content-encoding", "content-length", "transfer-encoding"})


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
        self.metrics.watch(self.limits)
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._connections = asyncio.Semaphore(settings.max_connections)

    async def __aenter__(self) -> Self:
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
            # Unlike the reference's HTTP client: the key goes nowhere but KLAVIYO_BASE_URL,
            # and a 3xx is a final answer (``errors.KlaviyoRedirected``).
            follow_redirects=False,
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
        whose bookkeeping grows with its queue. ``max_wait`` is the limiter's own deadline
        because the limiter knows its wait before it starts: a wait longer than the time left
        fails at once, with that wait as ``retry_after`` (a throttle the caller can time),
        where the delivery's ``asyncio.timeout`` would only cut it off at the deadline.
        """
        start = time.perf_counter()
        async with self.limits[endpoint].slot(max_wait=max_wait):
            self.metrics.waited(endpoint.value, time.perf_counter() - start)
            async with self._connections:
                yield

    async def call(self, request: PlannedRequest, headers: Mapping[str, str]) -> KlaviyoAnswer:
        """One HTTP exchange, measured, its answer read once; no retries (the session's).

        Raises ``httpx.TransportError``; an answer that cannot be used (its body over
        ``max_answer_bytes`` or not decodable) raises :class:`UnusableAnswer`, one of them.
        The endpoint's limiter learns from the answer: ``RateLimit-*`` headers, and a 429's
        wait, so that concurrent deliveries to the endpoint wait too.
        """
        if self._http is None:
            msg = "KlaviyoClient is not open: use `async with KlaviyoClient(...)`"
            raise RuntimeError(msg)
        endpoint = request.endpoint
        with self.metrics.timed(endpoint.value):
            try:
                answer = await self._exchange(self._http, request, headers)
            except httpx.TransportError as exc:
                self.metrics.answered(endpoint.value, type(exc).__name__)
                raise
        self.metrics.answered(endpoint.value, answer.status)
        limiter = self.limits[endpoint]
        limiter.observe(answer.headers)
        logger.debug("klaviyo %s %s -> %d", request.method, request.path, answer.status)
        if answer.status == 429 and (wait := retry_after(answer.headers, answer.body)) is not None:
            limiter.hold(wait)
        return answer

    async def _exchange(
        self, http: httpx.AsyncClient, request: PlannedRequest, headers: Mapping[str, str]
    ) -> KlaviyoAnswer:
        outgoing = http.build_request(
            request.method, request.path, content=orjson.dumps(request.body), headers=headers
        )
        cap = self.settings.max_answer_bytes
        try:
            streamed = await http.send(outgoing, stream=True)
            try:
                if _plain_within(streamed.headers, cap):
                    # The usual answer: Content-Length framing bounds this read.
                    content = await streamed.aread()
                    return KlaviyoAnswer.read(streamed.status_code, streamed.headers, content)
                content = await _read_capped(streamed, cap)
            finally:
                await streamed.aclose()
        except httpx.TransportError:
            raise
        except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as exc:
            # DecodingError (a corrupt gzip body) and the like: the answer came, unusable.
            raise UnusableAnswer(f"{type(exc).__name__}: {exc}") from None
        # The body is decoded now, so the headers must no longer say it is encoded.
        kept = [(k, v) for k, v in streamed.headers.multi_items() if k.lower() not in _RAW]
        return KlaviyoAnswer.read(streamed.status_code, httpx.Headers(kept), content)


def _plain_within(headers: httpx.Headers, cap: int) -> bool:
    """A body of a declared length within ``cap`` that needs no decoding."""
    declared = declared_length(headers.get("content-length"))
    encoding = headers.get("content-encoding", "identity").strip().lower()
    return declared is not None and declared <= cap and encoding in ("", "identity")


async def _read_capped(response: httpx.Response, cap: int) -> bytes:
    """The decoded body, read until ``cap`` bytes at most (then ``UnusableAnswer``)."""
    too_large = UnusableAnswer(f"answer over MAX_ANSWER_BYTES ({cap} bytes): not read")
    declared = declared_length(response.headers.get("content-length"))
    if declared is not None and declared > cap:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)
