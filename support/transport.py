"""A socket transport without the socket, for driving uvicorn's protocol in process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class RecordingTransport:
    """The part of a socket transport that uvicorn's httptools protocol uses: what is written
    is kept (and ``on_write`` told), and ``close`` is only noted."""

    def __init__(self, on_write: Callable[[bytes], None] | None = None) -> None:
        self.written = b""
        self.closed = False
        self.on_write = on_write

    def write(self, data: bytes) -> None:
        self.written += data
        if self.on_write is not None:
            self.on_write(self.written)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        ends = {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}
        return ends.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass
