"""The upstream rudder-transformer (``RUDDER_TRANSFORMER_URL``): everything not served here.

rudder-server talks to one transformer URL for every destination, so this service passes what
it does not serve itself (other destinations, Klaviyo v2/v3, user transformations, tracking
plans, sources, regulations, the delivery proxy) through to a real transformer, unchanged: the
method, path, query, headers less the hop-by-hop ones, and the body, streamed both ways.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any, Final

import httpx
import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response, StreamingResponse

from ..errors import UpstreamError, UpstreamTimeout

logger = logging.getLogger(__name__)

#: RFC 9110 §7.6.1, plus ``host`` (the upstream's own) and ``content-length`` of a body that
#: httpx frames itself.
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
#: rudder-server reads ``/features`` every 10 s; a document this fresh is served again.
FEATURES_TTL: Final = 5.0


def _kept(headers: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(name, value) for name, value in headers if name.lower() not in _HOP_BY_HOP]


class Upstream:
    """One pooled client to the upstream transformer, owned by the app's lifespan."""

    def __init__(
        self, url: str, *, timeout: float, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            transport=transport,
            follow_redirects=False,
        )
        self._features: Any = None
        self._features_at = -FEATURES_TTL

    async def aclose(self) -> None:
        await self._http.aclose()

    async def forward(
        self,
        method: str,
        path: str,
        query: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        content: bytes | bytearray | AsyncIterator[bytes],
    ) -> Response:
        """The request passed through, and the upstream's answer streamed back as it is.

        ``content`` is the body when it was already read (to find a router request's
        ``destType``); otherwise the request's stream, forwarded as it arrives.
        """
        kept = _kept(headers)
        if isinstance(content, bytes | bytearray):
            content = bytes(content)
            kept = [(n, v) for n, v in kept if n.lower() != b"content-length"]
        sent = self._http.build_request(
            method, httpx.URL(path=path, query=query), headers=kept, content=content
        )
        response = await self._send(sent, stream=True)
        answer = StreamingResponse(
            response.aiter_raw(),
            status_code=response.status_code,
            background=BackgroundTask(response.aclose),
        )
        answer.raw_headers = _kept(response.headers.raw)
        return answer

    async def post(self, path: str, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> Any:
        """POST a body built here (a part of a batch); the answer is read whole."""
        kept = [(n, v) for n, v in _kept(headers) if n.lower() != b"content-length"]
        request = self._http.build_request("POST", path, headers=kept, content=body)
        return await self._send(request, stream=False)

    async def features(self) -> Any:
        """The upstream's ``/features`` document (fresh, or the last one it gave), or None."""
        now = time.monotonic()
        if now - self._features_at < FEATURES_TTL:
            return self._features
        try:
            response = await self._send(self._http.build_request("GET", "/features"))
            if response.status_code == 200:
                document = orjson.loads(response.content)
                if isinstance(document, dict):
                    self._features, self._features_at = document, now
            else:
                logger.error(
                    "upstream transformer answered /features with %d",
                    response.status_code,
                    extra={"upstream": self.url},
                )
        except (UpstreamError, orjson.JSONDecodeError) as exc:
            logger.error(
                "upstream transformer /features failed: %s", exc, extra={"upstream": self.url}
            )
        return self._features

    async def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        try:
            return await self._http.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            message = f"upstream transformer timed out ({type(exc).__name__})"
            logger.error(message, extra={"upstream": self.url, "path": request.url.path})
            raise UpstreamTimeout(message) from None
        except httpx.TransportError as exc:
            message = f"upstream transformer unreachable ({type(exc).__name__}: {exc})"
            logger.error(message, extra={"upstream": self.url, "path": request.url.path})
            raise UpstreamError(message) from None
