"""How ``serve`` serves the app: the hot routes' lanes in front of it, and the connection limits.

``create_app`` gives a plain FastAPI app (middleware and exception handlers can be added as
FastAPI has it). :func:`wrap` puts the lanes in front of it (:mod:`.lanes`, ``SERVE_LANES``);
:mod:`.connection` gives uvicorn the protocol that enforces the connection limits. Nothing in
``api/`` knows about either.
"""

from __future__ import annotations

from starlette.types import ASGIApp

from ..settings import Settings
from .lanes import HOT_ROUTES, Handlers, Lanes, hot_lanes

__all__ = ["HOT_ROUTES", "Handlers", "wrap"]


def wrap(app: ASGIApp, settings: Settings, *, handlers: Handlers | None = None) -> ASGIApp:
    """``app`` as ``serve`` serves it: behind the lanes with ``SERVE_LANES=on``, else itself.

    ``handlers`` replaces hot routes' handlers in their lanes (a benchmark's instrument); they
    need the lanes, since the app's own routes keep their handlers.
    """
    if settings.serve_lanes == "off":
        if handlers:
            raise ValueError("handlers replace lanes' handlers: they need SERVE_LANES=on")
        return app
    # Without a token the service is on loopback only; the edge keeps web pages out too.
    return Lanes(
        app,
        hot_lanes(handlers),
        loopback_only=settings.webhook_token is None,
        body_timeout=settings.body_timeout,
    )
