"""The service's app in process, as a test talks to it: its lifespan run, an httpx client on it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI


@contextlib.asynccontextmanager
async def served(
    app: FastAPI, base_url: str = "http://localhost"
) -> AsyncIterator[httpx.AsyncClient]:
    """``localhost`` by default: without a token the service answers loopback names only."""
    async with (
        LifespanManager(app) as manager,
        httpx.AsyncClient(transport=httpx.ASGITransport(manager.app), base_url=base_url) as c,
    ):
        yield c
