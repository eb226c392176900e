"""A small keep-alive HTTP/1.1 load generator on raw asyncio streams (uvloop when installed).

It runs in the benchmark's own process, never inside the service. Each connection sends one
request, reads the whole answer, and sends the next (closed loop), so ``connections`` is the
number of requests in flight. httpx costs ~150 us of client CPU per request, more than the
service spends on a one-event request; this client costs a fraction of that, and
:func:`ceiling` measures what it can do against a server that does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from support.processes import LOOPBACK, free_port, stop_process, wait_listening


@dataclass(frozen=True, slots=True)
class Result:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]  # seconds, one per measured request

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) if self.latencies else float("nan")


def request_bytes(path: str, body: bytes, host: str = "127.0.0.1") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _answer(reader: asyncio.StreamReader) -> int:
    """Read one response; return its status. Only Content-Length framing is expected."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
            break
    if length:
        await reader.readexactly(length)
    return status


async def _connection(
    host: str,
    port: int,
    payloads: Sequence[bytes],
    start: int,
    warmup_until: float,
    stop_at: float,
    latencies: list[float],
    counters: list[int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    clock = time.perf_counter
    try:
        for payload in itertools.islice(itertools.cycle(payloads), start, None):
            sent = clock()
            if sent >= stop_at:
                break
            writer.write(payload)
            status = await _answer(reader)
            if sent >= warmup_until:
                latencies.append(clock() - sent)
                counters[0] += 1
                if status != 200:
                    counters[1] += 1
    finally:
        writer.close()


async def run(
    host: str,
    port: int,
    payloads: Sequence[bytes],
    *,
    connections: int,
    seconds: float,
    warmup: float = 0.5,
) -> Result:
    """Drive ``connections`` closed-loop connections for ``warmup + seconds``; measure the last."""
    latencies: list[float] = []
    counters = [0, 0]
    begin = time.perf_counter()
    warmup_until, stop_at = begin + warmup, begin + warmup + seconds
    step = max(1, len(payloads) // connections)
    await asyncio.gather(
        *(
            _connection(host, port, payloads, i * step, warmup_until, stop_at, latencies, counters)
            for i in range(connections)
        )
    )
    measured = time.perf_counter() - warmup_until
    return Result(counters[0], counters[1], measured, latencies)


async def once(host: str, port: int, payloads: Sequence[bytes]) -> int:
    """Send each payload once over one connection, in order; return how many were not 200."""
    reader, writer = await asyncio.open_connection(host, port)
    failed = 0
    try:
        for payload in payloads:
            writer.write(payload)
            failed += await _answer(reader) != 200
    finally:
        writer.close()
    return failed


class _Canned(asyncio.Protocol):
    """The cheapest possible HTTP/1.1 server: a fixed 200 for each request it sees."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            assert self.transport is not None
            self.transport.write(self.ANSWER)


async def serve_canned(port: int) -> None:
    """Run the canned server forever (the generator's ceiling is measured against it)."""
    server = await asyncio.get_running_loop().create_server(_Canned, LOOPBACK, port)
    async with server:
        await server.serve_forever()


@contextlib.contextmanager
def canned_server() -> Iterator[int]:
    """:func:`serve_canned` in a process of its own; yields its port."""
    port = free_port()
    code = (
        "import asyncio, sys, uvloop; sys.path.insert(0, sys.argv[2]); "
        "from bench.loadgen import serve_canned; uvloop.run(serve_canned(int(sys.argv[1])))"
    )
    root = str(Path(__file__).resolve().parent.parent)
    process = subprocess.Popen([sys.executable, "-c", code, str(port), root])  # noqa: S603
    try:
        wait_listening(port)
        yield port
    finally:
        stop_process(process)
