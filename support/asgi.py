"""An ASGI request scope built by hand, for calling the app directly (no server, no socket)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .processes import LOOPBACK


def post_scope(
    path: str, headers: Iterable[tuple[bytes, bytes]], state: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A ``POST path`` HTTP/1.1 scope from a loopback client, with these headers and state."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": list(headers),
        "client": (LOOPBACK, 50000),
        "server": (LOOPBACK, 8080),
        "state": dict(state or {}),
    }
