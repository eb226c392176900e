"""The connection side of the HTTP edge: the limits uvicorn lacks, and how ``serve`` gets them.

uvicorn bounds neither the size nor the time of a request's headers (a 128 MB header is held in
memory; a connection that never finishes its headers is held for ever), and its
``limit_concurrency`` answers 503 to everyone once idle connections fill it: a flood of idle
connections takes ``/health`` down with it (docs/reliability.md, "Edge abuse"). The protocol
``serve`` runs (:class:`.edge_protocol.EdgeProtocol`) adds:

* ``MAX_HEADER_BYTES``: a request's target and headers (each with its ": " and CRLF) longer
  than that are answered 431 and the connection is closed: when the headers end, whatever
  the reads they came in, and for headers still arriving after at most one socket read more;
* ``HEADER_TIMEOUT``: from connecting (or a later request's first byte) to the end of the
  headers; then 408 and close (a silent connection is closed without an answer). A request
  begun while an earlier one's answer is owed (pipelining) is timed from when that answer is
  written, and a refusal waits for the answers before it, as uvicorn alone would send them;
* ``MAX_INBOUND_CONNECTIONS``: beyond it the oldest idle connections (no request in progress)
  are closed, so a flood of idle or half-sent connections cannot keep anyone else out; only
  when every connection is inside a request does a new one get 503.

That costs a few per cent of a one-event request (bench/optimisations.md, "What the serving
layers cost"). It extends uvicorn's private httptools protocol, so it is used only with the
uvicorn minor it was written against (pyproject pins ``uvicorn~=`` that minor); with any other,
``serve`` runs uvicorn's own protocol and warns that these three limits are not enforced. The
body's deadline is :mod:`..api.edge`'s (ASGI), either way.
"""

from __future__ import annotations

import resource
from typing import Any, Final

import uvicorn

from ..settings import Settings
from .refusals import NoWebSockets

#: The uvicorn minor whose ``HttpToolsProtocol`` internals :mod:`.edge_protocol` uses.
UVICORN_MINOR: Final = "0.54"
#: What uvicorn serves with when the installed minor is another: its own protocol, httptools
#: when installed (``uvicorn[standard]``).
FALLBACK_HTTP: Final = "auto"
UNENFORCED: Final = "MAX_HEADER_BYTES, HEADER_TIMEOUT and MAX_INBOUND_CONNECTIONS"
#: File descriptors the process needs besides its inbound and outbound connections.
_SPARE_FILES: Final = 64


def minor_of(version: str) -> str:
    return ".".join(version.split(".")[:2])


def serve_options(
    settings: Settings, *, uvicorn_version: str = uvicorn.__version__
) -> tuple[dict[str, Any], str | None]:
    """``uvicorn.run`` arguments for the edge's limits, and a warning when some are not
    enforced (the installed uvicorn is not the minor :mod:`.edge_protocol` extends)."""
    options: dict[str, Any] = {
        "ws": NoWebSockets,
        "timeout_keep_alive": settings.keepalive_timeout,
        "timeout_graceful_shutdown": settings.shutdown_timeout,
    }
    if minor_of(uvicorn_version) != UVICORN_MINOR:
        warning = (
            f"uvicorn {uvicorn_version} is not {UVICORN_MINOR}.x, whose protocol "
            f"serving/edge_protocol.py extends: serving with uvicorn's own, so {UNENFORCED} "
            "are not enforced"
        )
        return {"http": FALLBACK_HTTP, **options}, warning
    from .edge_protocol import EdgeProtocol  # imported only with the pinned uvicorn

    return {"http": EdgeProtocol, **options}, None


def raise_file_limit(settings: Settings) -> str | None:
    """Raise the soft limit of open files to what the connection limits need, as far as the
    hard limit allows (Go's runtime does the same); a warning when it stays below."""
    needed = settings.max_inbound_connections + settings.max_connections + _SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target >= needed:
        return None
    return (
        f"open-file limit {target} is below the {needed} that MAX_INBOUND_CONNECTIONS "
        f"({settings.max_inbound_connections}) and MAX_CONNECTIONS need: raise it (ulimit -n) "
        "or lower MAX_INBOUND_CONNECTIONS"
    )
