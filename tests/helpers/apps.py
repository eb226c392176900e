"""The service's app in process, as a test talks to it: its lifespan run, an httpx client on it.

The API tests get the app both ways ``serve`` can serve it (the ``build`` fixture in conftest):
``create_app`` plain, and behind the hot routes' lanes (``serving.wrap``, ``SERVE_LANES=on``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final, Protocol

import httpx
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp

from klaviyo_destination import serving
from klaviyo_destination.app import create_app
from klaviyo_destination.settings import Settings

#: The two ways: FastAPI's whole way for every request, and the lanes in front of it.
WAYS: Final = ("plain", "lanes")


class Build(Protocol):
    def __call__(self, settings: Settings, **options: Any) -> ASGIApp:
        """``create_app(settings, **options)``, served one of the :data:`WAYS`."""


def built(way: str, settings: Settings, **options: Any) -> ASGIApp:
    return served_way(way, create_app(settings, **options), settings)


def served_way(way: str, app: ASGIApp, settings: Settings) -> ASGIApp:
    """``app`` as served ``way``."""
    return app if way == "plain" else serving.wrap(app, settings)


@contextlib.asynccontextmanager
async def served(
    app: ASGIApp, base_url: str = "http://localhost"
) -> AsyncIterator[httpx.AsyncClient]:
    """``localhost`` by default: without a token the service answers loopback names only."""
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(transport=httpx.ASGITransport(manager.app), base_url=base_url) as c,
    ):
        yield c
