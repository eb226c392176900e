"""The real ``redis-server`` fixtures (``support/redis_server.py``): a test that needs one skips
without the package, and fails in CI (``contract``: a skipped shared-limits test proves nothing).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.redis_server import MISSING, REDIS_SERVER, RedisServer

#: The marks of every test that runs a real redis-server.
NEEDS_REDIS = [
    pytest.mark.contract,
    pytest.mark.skipif(REDIS_SERVER is None, reason=MISSING),
]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh, empty redis-server on a free loopback port, stopped after the test."""
    with RedisServer(tmp_path) as server:
        yield server
