"""An upstream transformer on a raw loopback socket, told per test how to answer, so a test can
make it misbehave where an HTTP framework would not let it (drip bytes, close mid-answer, send
a header with a control character)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from support.processes import LOOPBACK

#: bytes a misbehaving answer drips between checks that the service is still there
DRIP_PAUSE: Final = 0.02


@dataclass(frozen=True)
class Received:
    """One request as the upstream read it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header_names(self) -> set[str]:
        return {name.lower() for name, _ in self.headers}


#: How the upstream answers a request: writes to the connection (and may close it).
Script = Callable[[Received, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class RawUpstream:
    script: Script
    url: str = ""
    received: list[Received] = field(default_factory=list)
    _open: dict[asyncio.StreamWriter, asyncio.Task[Any]] = field(default_factory=dict)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._open[writer] = task
        try:
            while (request := await _read_request(reader)) is not None:
                self.received.append(request)
                await self.script(request, reader, writer)
                if writer.is_closing():
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the service went away: what some tests are about
        finally:
            writer.close()
            self._open.pop(writer, None)

    async def close(self) -> None:
        """Every connection closed, so each one's handler reads its end and returns (a
        cancelled handler would be logged by asyncio)."""
        for writer in list(self._open):
            writer.close()
        await asyncio.gather(*self._open.values(), return_exceptions=True)


@contextlib.asynccontextmanager
async def raw_upstream(script: Script) -> AsyncIterator[RawUpstream]:
    upstream = RawUpstream(script)
    server = await asyncio.start_server(upstream.serve, LOOPBACK, 0)
    port = server.sockets[0].getsockname()[1]
    upstream.url = f"http://{LOOPBACK}:{port}"
    try:
        yield upstream
    finally:
        server.close()
        await upstream.close()
        await server.wait_closed()


async def _read_request(reader: asyncio.StreamReader) -> Received | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    line, *lines = head[:-4].decode("latin-1").split("\r\n")
    method, target, _ = line.split(" ", 2)
    headers = [tuple(part.strip() for part in h.split(":", 1)) for h in lines]
    pairs = [(name, value) for name, value in headers]
    found = {name.lower(): value for name, value in pairs}
    if "content-length" in found:
        body = await reader.readexactly(int(found["content-length"]))
    elif found.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    else:
        body = b""
    return Received(method, target, pairs, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        body += await reader.readexactly(size)
        await reader.readexactly(2)
    await reader.readuntil(b"\r\n")
    return bytes(body)


def answer(status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    """A whole HTTP/1.1 answer, with its Content-Length."""
    lines = [b"HTTP/1.1 %d X\r\n" % status]
    lines += [name + b": " + value + b"\r\n" for name, value in headers]
    lines.append(b"content-length: %d\r\n\r\n" % len(body))
    return b"".join(lines) + body


async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, byte: bytes) -> None:
    """``byte`` now and then, for as long as the service keeps the connection open."""
    while not reader.at_eof() and not writer.is_closing():
        writer.write(byte)
        await writer.drain()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader.read(1), DRIP_PAUSE)  # notices the service leaving
