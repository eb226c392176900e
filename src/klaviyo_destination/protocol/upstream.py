"""The upstream rudder-transformer (``RUDDER_TRANSFORMER_URL``): everything not served here.

rudder-server talks to one transformer URL for every destination, so this service passes what
it does not serve itself (other destinations, user transformations, tracking plans, sources,
regulations, the delivery proxy: ``passthrough.TRANSFORMER_ROUTES``) through to a real
transformer: the method, the path as it came (``passthrough.upstream_path``), the query, the
headers rudder-transformer reads (:data:`FORWARDED`; never the caller's credentials), and the
body, streamed both ways.

``RUDDER_TRANSFORMER_TIMEOUT`` is one deadline for the whole exchange (connect, the request,
the answer's headers and its whole body): httpx's timeouts are per read, so an upstream that
sent a byte a second held a request for as long as it liked. An answer's headers are sent on
once its first :data:`HEAD_BYTES` (or all of it) arrived; an upstream that fails before that
gets a 502 (504 past the deadline), one that fails later a closed connection, since the status
is gone by then. Either way one WARNING line, no traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, Final

import httpx
import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..errors import UpstreamError, UpstreamTimeout

logger = logging.getLogger(__name__)

Headers = list[tuple[bytes, bytes]]
#: The request headers that go upstream: the ones rudder-transformer c98d160 reads, and those
#: rudder-server sends it (rudder-server f2655fb). The caller's Authorization (the webhook
#: token), cookies and anything else stay here.
FORWARDED: Final = frozenset(
    {
        # rudder-transformer src/index.ts:105: koa-bodyparser reads the body's framing
        b"content-type",
        b"content-encoding",
        b"content-length",
        b"accept-encoding",
        # src/middlewares/destTransformCompactedPayloadV1.ts:16 and
        # routerTransformCompactedPayloadV1.ts:16; rudder-server router/transformer/
        # transformer.go:235, processor/internal/transformer/destination_transformer/
        # destination_transformer.go:235
        b"x-content-format",
        # src/controllers/regulation.ts:13; rudder-server services/oauth/v2/extensions/
        # augmenter.go:43 (the destination's OAuth secret, for /deleteUsers)
        b"x-rudder-dest-info",
        # src/middlewares/arraySpreader.ts:48-58 (/routerTransform); rudder-server
        # augmenter.go:47, router/transformer/transformer.go:677
        b"oauth-secret",
        # src/middlewares/errorHandler.ts:54-56
        b"user-agent",
        b"x-request-id",
        # rudder-server router/transformer/transformer.go:758 sends it with every proxy
        # request for the transformer's own client; c98d160 does not read it yet
        b"rdproxy-timeout",
    }
)
#: src/middlewares/featureFlag.ts:18: every ``X-Feature-*`` header is a feature flag
#: (rudder-server: X-Feature-Gzip-Support, X-Feature-Filter-Code, transformer.go:237-239).
FEATURE_PREFIX: Final = b"x-feature-"
#: RFC 9110 §7.6.1, never relayed from an answer; ``host`` is the upstream's own.
_HOP_BY_HOP: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
    }
)
#: RFC 9110 §5.1 (a token) and §5.5 (no control character but HTAB): uvicorn refuses to send
#: anything else, and a header it refused left the caller with no answer at all.
_TOKEN: Final = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL: Final = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
#: The start of an answer read before its headers are sent on (the whole of a small answer).
HEAD_BYTES: Final = 64 * 1024
#: rudder-server reads ``/features`` every 10 s; a document this fresh is served again.
FEATURES_TTL: Final = 5.0
#: what the pass-through's answers say when broken after their headers were sent
Broken = Callable[[UpstreamError], None]


def forwarded(headers: Iterable[tuple[bytes, bytes]], *, body_read: bool) -> Headers:
    """The request headers rudder-transformer reads; a body read here (and decoded) is
    framed by httpx, so its own length and encoding stay behind."""
    kept = []
    for name, value in headers:
        low = name.lower()
        if low in FORWARDED or low.startswith(FEATURE_PREFIX):
            if body_read and low in (b"content-length", b"content-encoding"):
                continue
            kept.append((low, value))
    return kept


def relayed(headers: Iterable[tuple[bytes, bytes]], upstream: str) -> Headers:
    """The answer's headers less hop-by-hop ones and any that cannot be sent on."""
    kept, dropped = [], []
    for name, value in headers:
        if not _TOKEN.fullmatch(name) or _CONTROL.search(value):
            dropped.append(name.decode("latin-1")[:40])
        elif name.lower() not in _HOP_BY_HOP:
            kept.append((name, value))
    if dropped:
        logger.warning(
            "upstream transformer answered with headers that cannot be sent on: dropped %s",
            ", ".join(repr(name) for name in dropped),
            extra={"upstream": upstream},
        )
    return kept


class Upstream:
    """One pooled client to the upstream transformer, owned by the app's lifespan."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        max_answer_bytes: int,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.max_answer_bytes = max_answer_bytes
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            transport=transport,
            follow_redirects=False,
            # the answer goes back as it came: compressed only if the caller asked for it
            headers={"accept-encoding": "identity"},
        )
        self._features: Any = None
        self._features_at = -FEATURES_TTL
        #: the one /features request in flight, which every caller meanwhile waits for
        self._asking: asyncio.Task[Any] | None = None

    async def aclose(self) -> None:
        if self._asking is not None:
            self._asking.cancel()
        await self._http.aclose()

    async def forward(
        self,
        method: str,
        path: str,
        query: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        content: bytes | bytearray | AsyncIterator[bytes],
        broken: Broken,
    ) -> Response:
        """The request passed through, and the upstream's answer streamed back as it is.

        ``path`` is :func:`passthrough.upstream_path`'s; ``content`` is the body when it was
        already read (to find a router request's ``destType``), else the request's stream.
        ``broken`` is told when the answer breaks after its headers were sent.
        """
        read = isinstance(content, bytes | bytearray)
        url = self.url + path + ("?" + query.decode("latin-1") if query else "")
        sent = self._http.build_request(
            method,
            url,
            headers=forwarded(headers, body_read=read),
            content=bytes(content) if isinstance(content, bytearray) else content,
        )
        deadline = asyncio.get_running_loop().time() + self.timeout
        with self._failures(path):
            async with asyncio.timeout_at(deadline):
                response = await self._http.send(sent, stream=True)
        chunks = response.aiter_raw()
        try:
            head, ended = await self._head(chunks, deadline, path)
        except UpstreamError:
            await response.aclose()
            raise
        rest = None if ended else self._rest(chunks, deadline, path)
        headers = relayed(response.headers.raw, self.url)
        return PassedAnswer(response.status_code, headers, head, rest, broken, response.aclose)

    async def _head(
        self, chunks: AsyncIterator[bytes], deadline: float, path: str
    ) -> tuple[list[bytes], bool]:
        """The answer's first :data:`HEAD_BYTES` (or all of it), and whether it ended."""
        head: list[bytes] = []
        size = 0
        with self._failures(path):
            async with asyncio.timeout_at(deadline):
                async for chunk in chunks:
                    head.append(chunk)
                    size += len(chunk)
                    if size >= HEAD_BYTES:
                        return head, False
        return head, True

    async def _rest(
        self, chunks: AsyncIterator[bytes], deadline: float, path: str
    ) -> AsyncIterator[bytes]:
        while True:
            # the deadline around each read, not around the yield: the caller's send is no
            # part of the upstream exchange, and a timeout must not cancel it
            with self._failures(path, cut=True):
                async with asyncio.timeout_at(deadline):
                    chunk = await anext(chunks, None)
            if chunk is None:
                return
            yield chunk

    async def features(self) -> Any:
        """The upstream's ``/features`` document (fresh, or the last one it gave), or None.

        One request at a time: callers that come while it is under way wait for its answer
        (shielded, so a caller that leaves does not cancel it for the others)."""
        if time.monotonic() - self._features_at < FEATURES_TTL:
            return self._features
        if self._asking is None:
            self._asking = asyncio.create_task(self._ask_features())
        return await asyncio.shield(self._asking)

    async def _ask_features(self) -> Any:
        try:
            document = await self._read_features()
            if isinstance(document, dict):
                self._features, self._features_at = document, time.monotonic()
        except UpstreamError:
            pass  # logged by _failures; the last document stands
        except orjson.JSONDecodeError as exc:
            logger.warning(
                "upstream transformer /features is not JSON: %s", exc, extra={"upstream": self.url}
            )
        finally:
            self._asking = None
        return self._features

    async def _read_features(self) -> Any:
        """``GET /features``, read whole up to ``RUDDER_TRANSFORMER_MAX_ANSWER_BYTES``."""
        limit = self.max_answer_bytes
        deadline = asyncio.get_running_loop().time() + self.timeout
        with self._failures("/features"):
            async with asyncio.timeout_at(deadline):
                request = self._http.build_request("GET", self.url + "/features")
                response = await self._http.send(request, stream=True)
                try:
                    if response.status_code != 200:
                        logger.warning(
                            "upstream transformer answered /features with %d",
                            response.status_code,
                            extra={"upstream": self.url},
                        )
                        return None
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > limit:
                            raise UpstreamError(
                                f"the upstream transformer's /features answer is larger than "
                                f"RUDDER_TRANSFORMER_MAX_ANSWER_BYTES ({limit} bytes)"
                            )
                finally:
                    await response.aclose()
        return orjson.loads(body)

    @contextlib.contextmanager
    def _failures(self, path: str, *, cut: bool = False) -> Iterator[None]:
        """An exchange's failures as :class:`UpstreamError` (504 past the deadline), each
        logged once: a WARNING line without traceback (``cut``: the answer's headers went)."""
        try:
            yield
        except UpstreamError as exc:
            self._log(exc, path, cut=cut)
            raise
        except (TimeoutError, httpx.TimeoutException):
            limit = f"RUDDER_TRANSFORMER_TIMEOUT, {self.timeout:g} s"
            timeout = UpstreamTimeout(f"upstream transformer did not answer in time ({limit})")
            self._log(timeout, path, cut=cut)
            raise timeout from None
        except (httpx.TransportError, httpx.DecodingError) as exc:
            error = UpstreamError(f"upstream transformer failed ({type(exc).__name__}: {exc})")
            self._log(error, path, cut=cut)
            raise error from None

    def _log(self, error: UpstreamError, path: str, *, cut: bool) -> None:
        message = error.message
        if cut:
            message += "; the answer was cut off after its headers went, its connection closed"
        logger.warning(message, extra={"upstream": self.url, "path": path})


class PassedAnswer(Response):
    """The upstream's answer as an ASGI answer: its status and headers, the head already read,
    then the rest as it arrives. Broken after the headers went, it ends without its last
    message, and the server closes the connection: the caller sees a cut answer (rudder-server
    retries it), never one that looks whole."""

    def __init__(
        self,
        status: int,
        headers: Headers,
        head: list[bytes],
        rest: AsyncIterator[bytes] | None,
        broken: Broken,
        closing: Callable[[], Awaitable[None]],
    ) -> None:
        # not Response's own: it renders a body, and this one is streamed
        self.status_code = status
        self.raw_headers = headers
        self.background = None
        self.head, self.rest, self.broken, self.closing = head, rest, broken, closing

    async def __call__(self, _scope: Scope, _receive: Receive, send: Send) -> None:
        try:
            start = {"type": "http.response.start", "status": self.status_code}
            await send({**start, "headers": self.raw_headers})
            for chunk in self.head:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if self.rest is not None:
                async for chunk in self.rest:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except UpstreamError as error:
            self.broken(error)  # logged already; the answer stays unfinished
        finally:
            await self.closing()
