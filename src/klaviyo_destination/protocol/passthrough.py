"""Which requests go to the upstream rudder-transformer, and the path they go with.

Only rudder-transformer's own routes are passed through (a typo such as ``POST /v1/event`` is
a 404 here, not a request the upstream would 404 after a long way round). The table is its
router, ``src/routes/*.ts`` of rudder-transformer c98d160, each route with its file and line;
``:name`` matches one path segment. The paths are matched as written there, case and all (its
@koa/router would also take ``/ROUTERTRANSFORM/``; rudder-server sends none such, and such a
path must not carry a Klaviyo body upstream). ``GET /health``, ``GET /features`` and
``GET /docs`` are in that router too, but answered by this service.

The path goes upstream as the caller sent it (the ASGI ``raw_path``), percent-encoded once:
decoding it and encoding it again changed what reached the upstream, and a decoded
``..%2F`` walked out of ``RUDDER_TRANSFORMER_URL``'s base path. So a path that would mean
something else once decoded (an encoded slash or backslash, a dot segment, a control
character) is refused with a 400.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import quote, unquote_to_bytes

from starlette.types import Scope

from ..errors import BadRequest

_SEGMENT: Final = "[^/]+"
#: (method, route): rudder-transformer c98d160's router.
TRANSFORMER_ROUTES: Final = (
    # src/routes/delivery.ts:8-24
    ("POST", "/v0/destinations/:destination/proxy"),
    ("POST", "/v1/destinations/:destination/proxy"),
    ("POST", "/:version/destinations/:destination/proxyTest"),
    # src/routes/destination.ts:13-40
    ("POST", "/:version/destinations/:destination"),
    ("POST", "/routerTransform"),
    ("POST", "/batch"),
    ("POST", "/deleteUsers"),
    # src/routes/misc.ts:7-9
    ("GET", "/transformerBuildVersion"),
    ("GET", "/buildVersion"),
    ("GET", "/version"),
    # src/routes/source.ts:7-15
    ("POST", "/:version/sources/:source"),
    ("POST", "/:version/sources/:source/hydrate"),
    # src/routes/testEvents.ts:5-18 (the router's prefix is /test-router)
    ("POST", "/test-router/custom_audience/parse-template"),
    ("POST", "/test-router/:version/:destination/batch"),
    ("POST", "/test-router/:version/:destination"),
    ("GET", "/test-router/:version/health"),
    # src/routes/trackingPlan.ts:6
    ("POST", "/:version/validate"),
    # src/routes/userTransform.ts:9-43
    ("POST", "/workspaces/:wId/reconcileFunction"),
    ("POST", "/customTransform"),
    ("POST", "/transformation/test"),
    ("POST", "/transformation/testRun"),
    ("POST", "/transformationLibrary/test"),
    ("POST", "/transformation/sethandle"),
    ("POST", "/extractLibs"),
)


def _pattern(route: str) -> str:
    parts = (_SEGMENT if part.startswith(":") else re.escape(part) for part in route.split("/"))
    return "/".join(parts)


_ROUTES: Final = {
    method: re.compile("|".join(_pattern(route) for m, route in TRANSFORMER_ROUTES if m == method))
    for method in {method for method, _ in TRANSFORMER_ROUTES}
}
#: bytes that decode to a path separator: the upstream's router would split on them
_ENCODED_SEPARATORS: Final = re.compile(rb"%(?:2f|5c)|\\", re.IGNORECASE)
_CONTROL: Final = re.compile(rb"[\x00-\x1f\x7f]")
#: RFC 3986 ``pchar`` and ``/``, besides the unreserved characters ``quote`` keeps; ``%``
#: keeps the caller's escapes as they are.
_PATH_SAFE: Final = "/%:@!$&'()*+,;="


def is_transformer_route(method: str, path: str) -> bool:
    """Whether rudder-transformer has a route for ``method path`` (the decoded path)."""
    pattern = _ROUTES.get(method)
    return pattern is not None and pattern.fullmatch(path) is not None


def upstream_path(scope: Scope) -> str:
    """The request's path as it goes upstream: the path it came with, percent-encoded once.

    Raises :class:`BadRequest` for a path whose meaning would change on the way.
    """
    raw: bytes | None = scope.get("raw_path")
    if raw is None:  # a server that keeps only the decoded path: encode it as ASGI says
        raw = quote(scope["path"], safe=_PATH_SAFE.replace("%", "")).encode()
    if _ENCODED_SEPARATORS.search(raw):
        raise BadRequest(
            "an encoded slash or backslash in the path is not passed through", field="path"
        )
    segments = [unquote_to_bytes(segment) for segment in raw.split(b"/")]
    if any(segment in (b".", b"..") for segment in segments):
        raise BadRequest("a '.' or '..' segment in the path is not passed through", field="path")
    if any(_CONTROL.search(segment) for segment in segments):
        raise BadRequest("a control character in the path is not passed through", field="path")
    return quote(raw, safe=_PATH_SAFE)
