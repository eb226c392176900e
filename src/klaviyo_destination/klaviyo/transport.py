"""aiohttp under httpx's rules: the pieces :class:`~.exchange.AiohttpExchange` is made of.

The client kept these rules through httpx, and keeps them on aiohttp:

* **timeouts** as httpx had them: ``pool`` bounds the wait for a connection slot
  (:class:`httpx.PoolTimeout`, :func:`acquire_slot`), ``connect`` the TCP connect and TLS handshake
  (:class:`httpx.ConnectTimeout`), ``write`` the time to hand the request to the socket
  (:class:`httpx.WriteTimeout`, :class:`Written`), ``read`` each wait for the answer's bytes
  (:class:`httpx.ReadTimeout`);
* **errors** as httpx's transport errors (:class:`mapped_errors`), so ``answers.transport_error``
  classifies them as before;
* the answer **streamed** (:class:`AnswerStream`, for httpx's decoding of a gzip answer): a
  caller that stops reading (``MAX_ANSWER_BYTES``) closes the connection instead of draining it
  (:func:`give_back`).

Round 1 of issue 26 wrapped them in an ``httpx.AsyncBaseTransport``; ``bench/own_transport.py``
keeps that class for the comparison of clients (``bench/clients.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Final

import aiohttp
import httpx

#: Wider than aiohttp's 8,190: httpx's parser (h11) took header blocks up to 16 KiB.
MAX_HEADER_LINE: Final = 16 * 1024
#: How many URLs (and sets of headers, timeout pairs) are kept worked out, at most.
KEPT: Final = 256


async def acquire_slot(slots: asyncio.Semaphore, pool: float | None) -> None:
    if not slots.locked():
        await slots.acquire()  # a free slot: no timer
        return
    try:
        async with asyncio.timeout(pool):
            await slots.acquire()
    except TimeoutError:
        raise httpx.PoolTimeout(f"no connection free within {pool} s") from None


class Written:
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


class AnswerStream(httpx.AsyncByteStream):
    """The answer's bytes as aiohttp reads them; closing it returns the connection to the pool
    when the answer was read to its end, and closes it otherwise."""

    def __init__(self, response: aiohttp.ClientResponse, slots: asyncio.Semaphore | None) -> None:
        self._response = response
        self._slots = slots

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        with mapped_errors(connecting=False):
            while chunk := await content.readany():
                yield chunk

    async def aclose(self) -> None:
        slots, self._slots = self._slots, None
        try:
            give_back(self._response)
        finally:
            if slots is not None:
                slots.release()


def give_back(response: aiohttp.ClientResponse) -> None:
    """An answer read to its end returns its connection to the pool; any other is closed, not
    drained (an answer over the cap)."""
    if response.content.is_eof():
        response.release()
    else:
        response.close()


class mapped_errors:
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
        raise translate_error(exc, connecting=self._connecting) from exc


def translate_error(exc: BaseException, *, connecting: bool) -> httpx.TransportError:
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
