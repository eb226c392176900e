"""Run the emulator as its own service (``klaviyo-destination emulator --port``, compose)."""

from __future__ import annotations

import uvicorn

from klaviyo_destination.emulator.app import create_emulator


def run(host: str, port: int) -> None:
    uvicorn.run(create_emulator(), host=host, port=port)
