"""One HTTP exchange with Klaviyo, read to a ``KlaviyoAnswer``: the seam under the client.

An :class:`Exchange` sends a request (method, URL, encoded headers, body) and returns the answer
read once, its body capped at ``MAX_ANSWER_BYTES`` and decoded; it raises
``httpx.TransportError`` (connect, read, write and pool timeouts, a dropped connection, ...),
:class:`UnusableAnswer` among them, so ``answers.transport_error`` and the retry policy classify
failures as they always did. Two of them:

* :class:`AiohttpExchange`, production: an ``aiohttp.ClientSession`` called straight, with no
  ``httpx.Request``/``Response`` between (they were about 90 us of the 150 an exchange cost:
  docs/architecture.md, "The HTTP client"). It keeps every rule the httpx transport kept
  (``transport.py`` holds the shared pieces): the four timeouts with httpx's error classes, no
  redirect followed, no decompression by aiohttp (a gzip answer is decoded by httpx's
  ``Response``, as before), the proxies of the environment.
* :class:`HttpxExchange`, for an injected ``httpx.AsyncBaseTransport``: ``httpx.MockTransport``
  with respx, ``httpx.ASGITransport`` with the emulator; the test doubles work as before.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Final, Protocol

import aiohttp
import httpx
import yarl

from ..content_length import declared_length
from ..errors import UnusableAnswer
from ..settings import Settings
from .answers import KlaviyoAnswer
from .transport import (
    KEPT,
    MAX_HEADER_LINE,
    AnswerStream,
    Written,
    acquire_slot,
    give_back,
    mapped_errors,
)

#: A request's headers, encoded: ``KlaviyoClient.request_headers`` makes them.
RequestHeaders = tuple[tuple[bytes, bytes], ...]
#: Seconds an idle connection is kept (httpx's ``keepalive_expiry``, as the client had it).
_KEEPALIVE: Final = 5.0
#: Headers about the body as sent, not as read (decoded, possibly of another length).
_RAW: Final = frozenset({"content-encoding", "content-length", "transfer-encoding"})
#: The headers aiohttp adds to a request that lacks them; the request's headers are all its own.
_AUTO_HEADERS: Final = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")
#: A body up to this size goes as plain bytes, without the write timer (:class:`Written`):
#: aiohttp hands the request's head and body to the transport in one write and waits for the
#: socket (drains) only once a request has written more than 64 KiB (``StreamWriter.write``),
#: so the write of such a body never waits and its timer could never fire. A quarter of the
#: 64 KiB is left for the head (a few hundred bytes here). Every event is far below it; a
#: bulk job of 100 profiles is near it.
UNTIMED_BODY: Final = 48 * 1024


class Exchange(Protocol):
    """Send one request, return its answer read (see the module's docstring)."""

    async def __call__(
        self, method: str, url: str, headers: RequestHeaders, body: bytes
    ) -> KlaviyoAnswer: ...

    async def aclose(self) -> None: ...


class AiohttpExchange:
    """The production exchange: one ``aiohttp.ClientSession`` (made on first use, inside the
    running loop; closed by :meth:`aclose`), the settings' timeouts and connection cap."""

    def __init__(
        self, settings: Settings, *, trust_env: bool = True, verify: ssl.SSLContext | bool = True
    ) -> None:
        self._cap = settings.max_answer_bytes
        self._max_connections = settings.max_connections
        self._pool = settings.pool_timeout
        self._write = settings.write_timeout
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=None,
            sock_connect=settings.connect_timeout,
            sock_read=settings.read_timeout,
        )
        # As httpx's client read them (``trust_env``): once, at start-up. aiohttp's own
        # ``trust_env`` would read ~/.netrc in a thread for every request.
        self._proxies = urllib.request.getproxies_environment() if trust_env else {}
        self._ssl: ssl.SSLContext | bool = (
            httpx.create_ssl_context(verify=verify) if verify is not False else False
        )
        self._session: aiohttp.ClientSession | None = None
        # A client sends to a few URLs with a few sets of headers: each worked out once.
        self._target = functools.lru_cache(maxsize=KEPT)(self._target_of)
        self._slots = asyncio.Semaphore(self._max_connections) if self._max_connections else None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections or 0,
            limit_per_host=0,
            keepalive_timeout=_KEEPALIVE,
            ssl=self._ssl,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            trust_env=False,  # proxies: _target
            max_line_size=MAX_HEADER_LINE,
            max_field_size=MAX_HEADER_LINE,
            # No skip_auto_headers here: aiohttp would merge that set into every request's
            # headers (1.7 us). A request that lacks one of them says so itself (_latin1).
        )
        return self._session

    async def __call__(
        self, method: str, url: str, headers: RequestHeaders, body: bytes
    ) -> KlaviyoAnswer:
        session = self._session or self._open()
        slots = self._slots
        if slots is not None:
            await acquire_slot(slots, self._pool)
        try:
            response = await self._send(session, method, url, headers, body)
            try:
                return await self._read(response)
            finally:
                give_back(response)
        finally:
            if slots is not None:
                slots.release()

    async def _send(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        headers: RequestHeaders,
        body: bytes,
    ) -> aiohttp.ClientResponse:
        target, proxy = self._target(url)
        decoded, skipped = _latin1(headers)
        sent = [*decoded, ("Content-Length", str(len(body)))]
        # A small body is written in the call that sends the head: nothing waits on the
        # socket for it, so there is no write to time (UNTIMED_BODY).
        written = None if len(body) <= UNTIMED_BODY else Written(self._write)
        try:
            with mapped_errors(connecting=True):
                return await session.request(
                    method,
                    target,
                    headers=sent,
                    skip_auto_headers=skipped,
                    data=(body or None) if written is None else written.body(body),
                    allow_redirects=False,
                    proxy=proxy,
                    timeout=self._timeout,
                )
        except httpx.TransportError:
            if written is not None and written.timed_out:
                raise httpx.WriteTimeout(f"request not written within {self._write} s") from None
            raise
        finally:
            if written is not None:
                written.cancel()

    async def _read(self, response: aiohttp.ClientResponse) -> KlaviyoAnswer:
        read = headers_of(response.raw_headers)
        if plain_within(read, self._cap):
            # The usual answer: Content-Length framing bounds this read, no decoding needed.
            with mapped_errors(connecting=False):
                content = await response.content.read()
            return KlaviyoAnswer.read(response.status, read, content)
        # Encoded or of unknown length (rare): httpx's Response decodes it, as it always did.
        streamed = httpx.Response(
            response.status, headers=response.raw_headers, stream=AnswerStream(response, None)
        )
        return await read_encoded(streamed, read, self._cap)

    def _target_of(self, url: str) -> tuple[yarl.URL, str | None]:
        """``url`` as aiohttp takes it, and its proxy: ``HTTP(S)_PROXY`` or ``ALL_PROXY``, unless
        ``NO_PROXY`` names the host."""
        proxy = None
        if self._proxies:
            parsed = httpx.URL(url)
            bypass = urllib.request.proxy_bypass(parsed.netloc.decode("ascii"))
            proxy = self._proxies.get(parsed.scheme) or self._proxies.get("all")
            proxy = None if bypass else proxy
        return yarl.URL(url, encoded=True), proxy

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class HttpxExchange:
    """An ``httpx.AsyncBaseTransport`` as the exchange (a test double, or another transport):
    an ``httpx.Request`` with the settings' timeouts as its ``timeout`` extension."""

    def __init__(self, transport: httpx.AsyncBaseTransport, settings: Settings) -> None:
        self._transport = transport
        self._cap = settings.max_answer_bytes
        self._timeout = httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.write_timeout,
            pool=settings.pool_timeout,
        ).as_dict()

    async def __call__(
        self, method: str, url: str, headers: RequestHeaders, body: bytes
    ) -> KlaviyoAnswer:
        # A stream, not content=: httpx then adds no headers of its own, so the request is
        # not parsed again for Host and Content-Length (both are here already).
        outgoing = httpx.Request(
            method,
            _httpx_url(url),
            headers=[*headers, (b"Content-Length", str(len(body)).encode())],
            stream=httpx.ByteStream(body),
            extensions={"timeout": self._timeout},
        )
        try:
            streamed = await self._transport.handle_async_request(outgoing)
            streamed.request = outgoing
            try:
                read = headers_of(streamed.headers.raw)
                if not plain_within(read, self._cap):
                    return await read_encoded(streamed, read, self._cap)
                if streamed.is_stream_consumed:  # a test double's, read when built
                    content = streamed.content
                else:
                    content = b"".join([chunk async for chunk in streamed.aiter_raw()])
                return KlaviyoAnswer.read(streamed.status_code, read, content)
            finally:
                await streamed.aclose()
        except httpx.TransportError:
            raise
        except (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL) as exc:
            raise UnusableAnswer(f"{type(exc).__name__}: {exc}") from None

    async def aclose(self) -> None:
        await self._transport.aclose()


# A client sends to a few URLs with a few sets of headers: each worked out once.
@functools.lru_cache(maxsize=KEPT)
def _latin1(headers: RequestHeaders) -> tuple[list[tuple[str, str]], tuple[str, ...] | None]:
    """The headers as aiohttp takes them (Latin-1, as HTTP has it), and those of aiohttp's own
    it must not add since they are missing (``None``: none missing, as with the client's)."""
    decoded = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
    present = {name.lower() for name, _ in decoded}
    missing = tuple(name for name in _AUTO_HEADERS if name.lower() not in present)
    return decoded, missing or None


@functools.lru_cache(maxsize=KEPT)
def _httpx_url(url: str) -> httpx.URL:
    return httpx.URL(url)


def headers_of(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The answer's headers read once, names lower-case, repeated ones joined with ", " (as
    ``httpx.Headers.get`` joins them)."""
    read: dict[str, str] = {}
    for raw_name, raw_value in raw:
        name = raw_name.decode("latin-1").lower()
        try:
            value = raw_value.decode("utf-8")
        except UnicodeDecodeError:
            value = raw_value.decode("latin-1")
        read[name] = f"{read[name]}, {value}" if name in read else value
    return read


def plain_within(headers: Mapping[str, str], cap: int) -> bool:
    """A body of a declared length within ``cap`` that needs no decoding."""
    declared = declared_length(headers.get("content-length"))
    encoding = headers.get("content-encoding", "identity").strip().lower()
    return declared is not None and declared <= cap and encoding in ("", "identity")


async def read_encoded(
    response: httpx.Response, headers: Mapping[str, str], cap: int
) -> KlaviyoAnswer:
    """The answer decoded by httpx (gzip, deflate), read until ``cap`` bytes at most (then
    ``UnusableAnswer``); a body that does not decode is ``UnusableAnswer`` too."""
    too_large = UnusableAnswer(f"answer over MAX_ANSWER_BYTES ({cap} bytes): not read")
    declared = declared_length(headers.get("content-length"))
    if declared is not None and declared > cap:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > cap:
                raise too_large
            chunks.append(chunk)
    except httpx.TransportError:
        raise
    except (httpx.HTTPError, httpx.StreamError) as exc:
        # DecodingError (a corrupt gzip body) and the like: the answer came, unusable.
        raise UnusableAnswer(f"{type(exc).__name__}: {exc}") from None
    # The body is decoded now, so the headers must no longer say it is encoded.
    kept = {name: value for name, value in headers.items() if name not in _RAW}
    return KlaviyoAnswer.read(response.status_code, kept, b"".join(chunks))
