"""Shared fixtures. Test doubles are injected (transports, settings), never patched in."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
