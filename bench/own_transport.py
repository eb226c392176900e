"""Round 1's transport (issue 26): httpx's transport interface on aiohttp's pool.

No longer on the service's path (``klaviyo/exchange.py`` calls aiohttp straight); kept for
``bench/clients.py``'s ``httpx-ours`` and ``own-transport-direct`` rows, which show what
httpx's ``Request``/``Response`` cost on top of aiohttp.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request

import aiohttp
import httpx
import yarl

from klaviyo_destination.klaviyo.transport import (
    KEPT,
    MAX_HEADER_LINE,
    AnswerStream,
    Written,
    acquire_slot,
    mapped_errors,
)


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
            max_line_size=MAX_HEADER_LINE,
            max_field_size=MAX_HEADER_LINE,
            # httpx's own default headers arrive with the request; aiohttp adds none of its own.
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
        )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session or self._open()
        timeout = request.extensions.get("timeout", {})
        slots = self._slots
        if slots is not None:
            await acquire_slot(slots, timeout.get("pool"))
        try:
            response = await self._send(session, request, timeout)
        except BaseException:
            if slots is not None:
                slots.release()
            raise
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=AnswerStream(response, slots),
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
        written = Written(write)
        try:
            with mapped_errors(connecting=True):
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
            if len(self._urls) < KEPT:
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
            if len(self._timeouts) < KEPT:
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
