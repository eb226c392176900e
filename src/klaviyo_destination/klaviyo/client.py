"""The process's one connection pool to Klaviyo, with its rate limits and metrics.

One :class:`KlaviyoClient` per app: the lifespan opens and closes it. It holds what every
delivery shares (the transport and its connection pool, the per-endpoint limiters, a connection
cap and the metrics) and knows no key: a ``KlaviyoSession(client, key)`` binds one
(``session.py``), and everything that sends goes through a session.

Requests are ``httpx.Request`` objects handed straight to an ``httpx.AsyncBaseTransport``: by
default :class:`~.transport.AiohttpTransport` (aiohttp's pool), in tests whichever transport is
injected (``httpx.MockTransport`` with respx, ``httpx.ASGITransport`` with the emulator). No
``httpx.AsyncClient`` in between: it cost more CPU per request than the whole exchange on
aiohttp (docs/architecture.md, "The HTTP client"), and of what it adds this client needs only
what it does here itself: the base URL, httpx's default headers, the timeouts as the request's
``timeout`` extension, and no redirect followed (a transport never follows one).
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

from ..content_length import declared_length
from ..errors import UnusableAnswer
from ..planned import PlannedRequest
from ..settings import Settings
from .answers import KlaviyoAnswer
from .facts import Endpoint
from .metrics import DeliveryMetrics
from .ratelimit import RateLimiter, retry_after
from .transport import AiohttpTransport

logger = logging.getLogger(__name__)

#: Headers about the body as sent, not as read (decoded, possibly of another length).
_RAW: Final = frozenset({"content-encoding", "content-length", "transfer-encoding"})
#: What ``httpx.AsyncClient`` sent with every request, sent still (a request's own headers win).
_DEFAULT_HEADERS: Final = {
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate",
    "Connection": "keep-alive",
    "User-Agent": f"python-httpx/{httpx.__version__}",
}


#: A request's headers, encoded: ``KlaviyoClient.request_headers`` makes them.
RequestHeaders = tuple[tuple[bytes, bytes], ...]


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
        self._injected = transport
        self._transport: httpx.AsyncBaseTransport | None = None
        self._connections = asyncio.Semaphore(settings.max_connections)
        self._timeout = httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.write_timeout,
            pool=settings.pool_timeout,
        ).as_dict()
        self._url = _url_maker(settings.klaviyo_base_url)
        self._host = httpx.URL(settings.klaviyo_base_url).netloc

    async def __aenter__(self) -> Self:
        s = self.settings
        self._transport = self._injected or AiohttpTransport(
            limits=httpx.Limits(
                max_connections=s.max_connections,
                max_keepalive_connections=s.max_keepalive_connections,
            )
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._transport is not None:
            # As httpx.AsyncClient did: closing the client closes its transport.
            transport, self._transport = self._transport, None
            await transport.aclose()

    @property
    def is_open(self) -> bool:
        """Between ``__aenter__`` and ``__aexit__`` (the readiness check reads it)."""
        return self._transport is not None

    def slot(self, endpoint: Endpoint, max_wait: float) -> _Slot:
        """A rate-limit slot and a connection for one exchange (raises ``RateLimited``).

        The slot spans the whole exchange, so a late departure cannot crowd one of Klaviyo's
        windows; the connection semaphore keeps requests from queueing inside the transport's pool,
        whose bookkeeping grows with its queue. ``max_wait`` is the limiter's own deadline
        because the limiter knows its wait before it starts: a wait longer than the time left
        fails at once, with that wait as ``retry_after`` (a throttle the caller can time),
        where the delivery's ``asyncio.timeout`` would only cut it off at the deadline.
        """
        return _Slot(self, endpoint, max_wait)

    def request_headers(self, headers: Mapping[str, str]) -> RequestHeaders:
        """``headers`` over httpx's defaults, encoded once: a session keeps one set per
        revision. ``Host`` leads them, as httpx put it; each request adds its length."""
        merged = httpx.Headers({**_DEFAULT_HEADERS, **headers})
        return ((b"Host", self._host), *merged.raw)

    async def call(self, request: PlannedRequest, headers: RequestHeaders) -> KlaviyoAnswer:
        """One HTTP exchange, measured, its answer read once; no retries (the session's).

        Raises ``httpx.TransportError``; an answer that cannot be used (its body over
        ``max_answer_bytes`` or not decodable) raises :class:`UnusableAnswer`, one of them.
        The endpoint's limiter learns from the answer: ``RateLimit-*`` headers, and a 429's
        wait, so that concurrent deliveries to the endpoint wait too.
        """
        transport = self._transport
        if transport is None:
            msg = "KlaviyoClient is not open: use `async with KlaviyoClient(...)`"
            raise RuntimeError(msg)
        endpoint = request.endpoint
        with self.metrics.timed(endpoint.value):
            try:
                answer = await self._exchange(transport, request, headers)
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
        self,
        transport: httpx.AsyncBaseTransport,
        request: PlannedRequest,
        headers: RequestHeaders,
    ) -> KlaviyoAnswer:
        body = orjson.dumps(request.body)
        # A stream, not content=: httpx then adds no headers of its own, so the request is
        # not parsed again for Host and Content-Length (both are here already).
        outgoing = httpx.Request(
            request.method,
            self._url(request.path),
            headers=[*headers, (b"Content-Length", str(len(body)).encode())],
            stream=httpx.ByteStream(body),
            extensions={"timeout": self._timeout},
        )
        cap = self.settings.max_answer_bytes
        try:
            streamed = await transport.handle_async_request(outgoing)
            streamed.request = outgoing
            try:
                read = _headers_of(streamed.headers)
                if _plain_within(read, cap):
                    # The usual answer: Content-Length framing bounds this read, and the
                    # bytes need no decoding.
                    if streamed.is_stream_consumed:  # a test double's, read when built
                        content = streamed.content
                    else:
                        content = b"".join([chunk async for chunk in streamed.aiter_raw()])
                    return KlaviyoAnswer.read(streamed.status_code, read, content)
                content = await _read_capped(streamed, read, cap)
            finally:
                await streamed.aclose()
        except httpx.TransportError:
            raise
        except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as exc:
            # DecodingError (a corrupt gzip body) and the like: the answer came, unusable.
            raise UnusableAnswer(f"{type(exc).__name__}: {exc}") from None
        # The body is decoded now, so the headers must no longer say it is encoded.
        kept = {name: value for name, value in read.items() if name not in _RAW}
        return KlaviyoAnswer.read(streamed.status_code, kept, content)


class _Slot:
    """:meth:`KlaviyoClient.slot`, as a class: ``@asynccontextmanager`` costs a generator and
    its frames on every request."""

    __slots__ = ("_client", "_endpoint", "_limit", "_max_wait")

    def __init__(self, client: KlaviyoClient, endpoint: Endpoint, max_wait: float) -> None:
        self._client = client
        self._endpoint = endpoint
        self._max_wait = max_wait
        self._limit = client.limits[endpoint].slot(max_wait=max_wait)

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
        await self._limit.__aexit__(*exc)


def _url_maker(base_url: str) -> Callable[[str], httpx.URL]:
    """``path`` below ``base_url`` (its own path kept, as ``httpx.AsyncClient(base_url=...)``
    merged them), parsed once per path: the few endpoints, and recent profile ids."""
    base = str(httpx.URL(base_url)).rstrip("/")

    @lru_cache(maxsize=256)
    def url(path: str) -> httpx.URL:
        return httpx.URL(base + "/" + path.lstrip("/"))

    return url


def _headers_of(headers: httpx.Headers) -> dict[str, str]:
    """The answer's headers read once, names lower-case, repeated ones joined with ", " (as
    ``httpx.Headers.get`` joins them): each ``get`` on ``httpx.Headers`` decodes them all."""
    read: dict[str, str] = {}
    for raw_name, raw_value in headers.raw:
        name = raw_name.decode("latin-1").lower()
        try:
            value = raw_value.decode("utf-8")
        except UnicodeDecodeError:
            value = raw_value.decode("latin-1")
        read[name] = f"{read[name]}, {value}" if name in read else value
    return read


def _plain_within(headers: Mapping[str, str], cap: int) -> bool:
    """A body of a declared length within ``cap`` that needs no decoding."""
    declared = declared_length(headers.get("content-length"))
    encoding = headers.get("content-encoding", "identity").strip().lower()
    return declared is not None and declared <= cap and encoding in ("", "identity")


async def _read_capped(response: httpx.Response, headers: Mapping[str, str], cap: int) -> bytes:
    """The decoded body, read until ``cap`` bytes at most (then ``UnusableAnswer``)."""
    too_large = UnusableAnswer(f"answer over MAX_ANSWER_BYTES ({cap} bytes): not read")
    declared = declared_length(headers.get("content-length"))
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
