"""httpx's transport interface on aiohttp's connection pool: what carries every Klaviyo request.

httpx 0.28's own pool (httpcore 1.0) costs about twenty times aiohttp's CPU per request on this
service's load (docs/architecture.md, "The HTTP client"); :class:`AiohttpTransport` keeps
httpx's types and test doubles (``httpx.Request``/``Response``, ``MockTransport``, respx,
``ASGITransport``) and puts aiohttp's pool underneath, with httpx's rules kept:

* **timeouts** from the request's ``timeout`` extension, as httpx sets them: ``pool`` bounds the
  wait for a connection slot (:class:`httpx.PoolTimeout`), ``connect`` the TCP connect and TLS
  handshake (:class:`httpx.ConnectTimeout`), ``write`` the time to hand the request to the
  socket (:class:`httpx.WriteTimeout`), ``read`` each wait for the answer's bytes
  (:class:`httpx.ReadTimeout`);
* **errors** as httpx's transport errors (:func:`_mapped`), so ``answers.transport_error``
  classifies them as before;
* **no redirect followed**, **no decoding** (httpx's ``Response`` decodes gzip and deflate as it
  is read), the answer **streamed**: a caller that stops reading (``MAX_ANSWER_BYTES``) closes
  the connection instead of draining it;
* ``trust_env`` (``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY``) and httpx's CA bundle, as httpx's
  client had them.

Idle connections are kept up to ``max_connections`` for ``keepalive_expiry`` seconds (aiohttp's
pool has no separate cap on idle ones). HTTP/1.1 only: aiohttp's client has no HTTP/2.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import AsyncIterator
from typing import Final

import aiohttp
import httpx
import yarl

#: Wider than aiohttp's 8,190: httpx's parser (h11) took header blocks up to 16 KiB.
_MAX_HEADER_LINE: Final = 16 * 1024
#: How many URLs and timeout pairs are kept parsed, at most.
_KEPT: Final = 256


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` on one ``aiohttp.ClientSession`` (made on first use,
    inside the running loop; closed by :meth:`aclose`)."""

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        trust_env: bool = True,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._max_connections = limits.max_connections
        self._keepalive = limits.keepalive_expiry
        # As httpx's client read them (``trust_env``): once, at start-up. aiohttp's own
        # ``trust_env`` would read ~/.netrc in a thread for every request.
        self._proxies = urllib.request.getproxies_environment() if trust_env else {}
        self._proxy_of: dict[tuple[str, str], str | None] = {}
        self._ssl: ssl.SSLContext | bool = (
            httpx.create_ssl_context(verify=verify) if verify is not False else False
        )
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, yarl.URL] = {}
        self._timeouts: dict[tuple[float | None, float | None], aiohttp.ClientTimeout] = {}
        self._slots = asyncio.Semaphore(self._max_connections) if self._max_connections else None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections or 0,
            limit_per_host=0,
            keepalive_timeout=self._keepalive if self._keepalive is not None else 5.0,
            ssl=self._ssl,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            trust_env=False,  # proxies: _proxy
            max_line_size=_MAX_HEADER_LINE,
            max_field_size=_MAX_HEADER_LINE,
            # httpx's own default headers arrive with the request; aiohttp adds none of its own.
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        timeout = request.extensions.get("timeout", {})
        slots = self._slots
        if slots is not None:
            await _acquire(slots, timeout.get("pool"))
        try:
            response = await self._send(session, request, timeout)
        except BaseException:
            if slots is not None:
                slots.release()
            raise
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response, slots),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode(),
            },
        )

    async def _send(
        self, session: aiohttp.ClientSession, request: httpx.Request, limits: dict[str, float]
    ) -> aiohttp.ClientResponse:
        body = await request.aread()
        write = limits.get("write")
        written = _Written(write)
        try:
            with _mapped(connecting=True):
                return await session.request(
                    request.method,
                    self._url(request.url),
                    # Latin-1, as HTTP has it: httpx's multi_items() guesses an encoding
                    # over all the headers again for each request.
                    headers=[
                        (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                    ],
                    data=written.body(body) if body else None,
                    allow_redirects=False,
                    proxy=self._proxy(request.url),
                    timeout=self._timeout(limits.get("connect"), limits.get("read")),
                )
        except httpx.TransportError:
            if written.timed_out:
                raise httpx.WriteTimeout(f"request not written within {write} s") from None
            raise
        finally:
            written.cancel()

    def _url(self, url: httpx.URL) -> yarl.URL:
        """``url`` as aiohttp takes it, parsed once (a client sends to a few URLs)."""
        text = str(url)
        found = self._urls.get(text)
        if found is None:
            found = yarl.URL(text, encoded=True)
            if len(self._urls) < _KEPT:
                self._urls[text] = found
        return found

    def _timeout(self, connect: float | None, read: float | None) -> aiohttp.ClientTimeout:
        """aiohttp's timeouts for httpx's ``connect`` and ``read`` (``pool`` and ``write`` are
        this transport's own), made once per pair."""
        found = self._timeouts.get((connect, read))
        if found is None:
            found = aiohttp.ClientTimeout(
                total=None, connect=None, sock_connect=connect, sock_read=read
            )
            if len(self._timeouts) < _KEPT:
                self._timeouts[(connect, read)] = found
        return found

    def _proxy(self, url: httpx.URL) -> str | None:
        """The ``HTTP(S)_PROXY`` or ``ALL_PROXY`` for ``url``, unless ``NO_PROXY`` names it."""
        if not self._proxies:
            return None
        key = (url.scheme, url.netloc.decode("ascii"))
        if key not in self._proxy_of:
            bypass = urllib.request.proxy_bypass(key[1])  # NO_PROXY, read from the environment
            found = self._proxies.get(url.scheme) or self._proxies.get("all")
            self._proxy_of[key] = None if bypass else found
        return self._proxy_of[key]

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _acquire(slots: asyncio.Semaphore, pool: float | None) -> None:
    if not slots.locked():
        await slots.acquire()  # a free slot: no timer
        return
    try:
        async with asyncio.timeout(pool):
            await slots.acquire()
    except TimeoutError:
        raise httpx.PoolTimeout(f"no connection free within {pool} s") from None


class _Written:
    """The write timeout: the request must be handed to the socket within ``seconds``.

    The body goes as a one-chunk async iterable, so aiohttp resumes it only once that chunk is
    written (drained, if the socket's buffer was full); a timer running from the first byte
    to then closes the connection when it fires."""

    def __init__(self, seconds: float | None) -> None:
        self._seconds = seconds
        self._timer: asyncio.TimerHandle | None = None
        self.timed_out = False

    async def body(self, content: bytes) -> AsyncIterator[bytes]:
        if self._seconds is not None:
            task = asyncio.current_task()
            self._timer = asyncio.get_running_loop().call_later(self._seconds, self._fire, task)
        yield content
        self.cancel()

    def _fire(self, task: asyncio.Task[object] | None) -> None:
        self.timed_out = True
        if task is not None:
            task.cancel()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Body(httpx.AsyncByteStream):
    """The answer's bytes as aiohttp reads them; closing it returns the connection to the pool
    when the answer was read to its end, and closes it otherwise."""

    def __init__(self, response: aiohttp.ClientResponse, slots: asyncio.Semaphore | None) -> None:
        self._response = response
        self._slots = slots

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        with _mapped(connecting=False):
            while chunk := await content.readany():
                yield chunk

    async def aclose(self) -> None:
        response = self._response
        slots, self._slots = self._slots, None
        try:
            if response.content.is_eof():
                response.release()
            else:
                response.close()
        finally:
            if slots is not None:
                slots.release()


class _mapped:
    """aiohttp's exceptions as httpx's transport errors, as httpcore raised them."""

    def __init__(self, *, connecting: bool) -> None:
        self._connecting = connecting

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None or not isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError):
            return
        raise _translate(exc, connecting=self._connecting) from exc


def _translate(exc: BaseException, *, connecting: bool) -> httpx.TransportError:
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's SocketTimeoutError among them
        return httpx.ReadTimeout(message)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, TLS
        return httpx.ConnectError(message)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(message)
    if isinstance(exc, aiohttp.ClientResponseError):  # an answer aiohttp could not parse
        return httpx.RemoteProtocolError(message)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.ReadError(message)
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return httpx.UnsupportedProtocol(message)
    if connecting and isinstance(exc, aiohttp.ClientOSError):
        return httpx.WriteError(message)
    return httpx.ReadError(message)
