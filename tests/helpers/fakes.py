"""Test doubles shared by several test modules (injected, never patched in)."""

from __future__ import annotations

import asyncio


class FakeClock:
    """Time that moves only when code under test sleeps: waits are recorded, not slept."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)
