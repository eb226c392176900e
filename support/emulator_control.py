"""Clients of the emulator's control surface (``/__emulator/...``): state, recorded requests,
faults, the rate limiter and reset. :class:`EmulatorControl` is synchronous (tests, benchmarks);
:class:`AsyncEmulatorControl` is the same for asyncio code (fault matrix, soak)."""

from __future__ import annotations

from typing import Any, Final

import httpx

Json = dict[str, Any]

RESET: Final = "/__emulator/reset"
STATE: Final = "/__emulator/state"
REQUESTS: Final = "/__emulator/requests"
FAULTS: Final = "/__emulator/faults"
RATE_LIMITS: Final = "/__emulator/rate-limits"


def _params(path: str | None) -> dict[str, str]:
    return {} if path is None else {"path": path}


class EmulatorControl:
    """The control surface through a client whose ``base_url`` is the emulator's."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def reset(self) -> None:
        """Empty everything: data, recorded requests, faults, rate-limit windows."""
        self.client.post(RESET).raise_for_status()

    def state(self) -> Json:
        state: Json = self.client.get(STATE).raise_for_status().json()
        return state

    def requests(self, path: str | None = None) -> list[Json]:
        """The recorded requests, optionally only those whose path starts with ``path``."""
        response = self.client.get(REQUESTS, params=_params(path)).raise_for_status()
        recorded: list[Json] = response.json()["requests"]
        return recorded

    def forget_requests(self) -> None:
        self.client.delete(REQUESTS).raise_for_status()

    def fault(self, **spec: Any) -> None:
        """Add a fault (``status``, ``latency_ms``, ``error_rate``, ``path``, ...)."""
        self.client.post(FAULTS, json=spec).raise_for_status()

    def clear_faults(self) -> None:
        self.client.delete(FAULTS).raise_for_status()

    def rate_limits(self, *, enabled: bool) -> None:
        self.client.post(RATE_LIMITS, json={"enabled": enabled}).raise_for_status()


class AsyncEmulatorControl:
    """:class:`EmulatorControl` over an ``httpx.AsyncClient``."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def reset(self) -> None:
        (await self.client.post(RESET)).raise_for_status()

    async def state(self) -> Json:
        state: Json = (await self.client.get(STATE)).raise_for_status().json()
        return state

    async def requests(self, path: str | None = None) -> list[Json]:
        response = (await self.client.get(REQUESTS, params=_params(path))).raise_for_status()
        recorded: list[Json] = response.json()["requests"]
        return recorded

    async def forget_requests(self) -> None:
        (await self.client.delete(REQUESTS)).raise_for_status()

    async def fault(self, **spec: Any) -> None:
        (await self.client.post(FAULTS, json=spec)).raise_for_status()

    async def clear_faults(self) -> None:
        (await self.client.delete(FAULTS)).raise_for_status()

    async def rate_limits(self, *, enabled: bool) -> None:
        (await self.client.post(RATE_LIMITS, json={"enabled": enabled})).raise_for_status()
