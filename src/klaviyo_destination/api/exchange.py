"""One request and its answer, whichever way the request came in: through FastAPI (a Starlette
``Request``) or through a lane (``serving/lanes.py``, raw ASGI). The routes are written against
these two, so each route has one implementation for both ways in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope

from .request_log import annotate_scope
from .state import State

Headers = Sequence[tuple[bytes, bytes]]
JSON: Final = b"application/json"


@dataclass(frozen=True, slots=True)
class Answer:
    """A JSON answer, rendered once: the lane sends its bytes, FastAPI wraps them."""

    status: int
    body: bytes
    headers: Headers = ()

    @classmethod
    def json(
        cls, content: Any, status: int = 200, headers: Mapping[str, str] | None = None
    ) -> Answer:
        pairs = tuple((k.lower().encode(), v.encode()) for k, v in (headers or {}).items())
        return cls(status, orjson.dumps(content), pairs)

    def response(self) -> Response:
        """The same answer as a Starlette response (the FastAPI way in)."""
        response = Response(self.body, status_code=self.status, media_type="application/json")
        response.raw_headers.extend(self.headers)
        return response


class Call:
    """What a route reads of its request: the ASGI scope and receive, the app's state, and
    the headers by lower-case name (the first of repeated ones, as Starlette's ``get``)."""

    __slots__ = ("headers", "raw_headers", "receive", "scope", "state")

    def __init__(
        self, scope: Scope, receive: Receive, headers: Mapping[str, str] | None = None
    ) -> None:
        self.scope = scope
        self.receive = receive
        self.state = state_of(scope)
        self.raw_headers: Headers = scope["headers"]
        if headers is None:
            found: dict[str, str] = {}
            for name, value in self.raw_headers:
                found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
            headers = found
        self.headers: Mapping[str, str] = headers

    @classmethod
    def of(cls, request: Request) -> Call:
        return cls(request.scope, request.receive, request.headers)

    @property
    def method(self) -> str:
        method: str = self.scope["method"]
        return method

    @property
    def path(self) -> str:
        path: str = self.scope["path"]
        return path

    @property
    def query(self) -> bytes:
        query: bytes = self.scope.get("query_string", b"")
        return query

    def annotate(self, **fields: Any) -> None:
        """Add fields to this request's log line."""
        annotate_scope(self.scope, **fields)

    def base_url(self) -> str:
        """How the caller reached this service (scheme, host, root path)."""
        return str(Request(self.scope).base_url)

    def stream(self) -> AsyncIterator[bytes]:
        """The body as it arrives (for passing it on unread): Starlette's own reading."""
        return Request(self.scope, self.receive).stream()


def state_of(scope: Scope) -> State:
    """The request's copy of the lifespan's state (as ``request.state`` reads it), typed: the
    lifespan yields a :class:`State`, and the server copies it into every scope."""
    return cast(State, scope.setdefault("state", {}))
