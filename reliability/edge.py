"""Edge abuse: hostile connections against the real ``serve`` process (docs/reliability.md).

Starts the emulator and the service (compose's commands, on loopback, with the token) and runs:

* **huge header**: one request whose header value is ``--header-mb`` MB (128), sent in 256 KiB
  writes; how much was sent before the service refused, its answer, its peak RSS;
* **idle flood**: ``--connections`` connections (19,000) that each send half a request line and
  headers and then nothing (slowloris); while they are open, ``GET /health``'s latency, the
  connections the service holds and its RSS; then how long until the service has closed them;
* **stalled bodies**: ``--stalled`` requests (500) whose body stops after one byte; how long
  until the service has answered and closed each;
* **413 to urllib**: a 7 MB body from Python's urllib, which writes before it reads;
* **disconnect mid-body**: 100 clients that leave halfway through their body; tracebacks and
  ``unexpected error`` lines in the service's output (must be 0).

``--source DIR`` runs the service from another checkout's ``src`` (``git archive`` of an older
commit), to measure a baseline; ``--set NAME=VALUE`` adds a setting. ``python -m
reliability.edge`` (``make edge``); ``tests/integration/test_edge_server.py`` is the fast version
with small numbers, in ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import socket
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import httpx
import psutil

from support.compose import WEBHOOK_TOKEN
from support.servers import Server, running

CHUNK: Final = 256 * 1024
OPENING: Final = 500  # connections opened at once
TRACK: Final = (
    b'{"type":"track","event":"Signed Up","userId":"u1","messageId":"e1","properties":{}}'
)


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def mb(kib: float) -> str:
    return f"{kib / 1024:.1f} MB"


def established(server: Server) -> int:
    connections = psutil.Process(server.pid).net_connections(kind="tcp")
    return sum(
        c.status == psutil.CONN_ESTABLISHED and c.laddr.port == server.port for c in connections
    )


def post_head(server: Server, length: int) -> bytes:
    return (
        f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {WEBHOOK_TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def huge_header(server: Server, size_mb: int) -> None:
    server.reset_peak_rss()
    rss_before = server.rss_kib()
    sent, outcome = 0, "all sent"
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        try:
            while sent < size_mb * 1024 * 1024:
                sock.sendall(b"a" * CHUNK)
                sent += CHUNK
        except ConnectionError as exc:
            outcome = f"refused ({type(exc).__name__})"
        elapsed = time.monotonic() - started
        answer = b""
        with contextlib.suppress(OSError):
            sock.settimeout(2)
            answer = sock.recv(4096)
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace") or "(no answer read)"
    say(
        f"huge header: {size_mb} MB offered, {sent / 2**20:.1f} MB sent, {outcome} after "
        f"{elapsed * 1000:.0f} ms; answer {status!r}; RSS {mb(rss_before)} before, peak "
        f"{server.peak_rss_mb():.1f} MB"
    )


async def health_latency(server: Server) -> str:
    timings = []
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(5):
            started = time.monotonic()
            try:
                status = (await client.get(f"{server.url}/health")).status_code
            except httpx.HTTPError as exc:
                return f"failed ({type(exc).__name__})"
            timings.append((time.monotonic() - started) * 1000)
            if status != 200:
                return f"answered {status}"
    return f"200 in {statistics.median(timings):.1f} ms (median of 5)"


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def open_flood(server: Server, count: int, first_bytes: bytes) -> list[Connection]:
    """``count`` connections that each sent ``first_bytes``; the writers are kept (one that is
    garbage-collected closes its connection)."""
    connections: list[Connection] = []
    failures = 0
    for start in range(0, count, OPENING):
        opened = await asyncio.gather(
            *(
                asyncio.open_connection("127.0.0.1", server.port)
                for _ in range(start, min(start + OPENING, count))
            ),
            return_exceptions=True,
        )
        for item in opened:
            if isinstance(item, BaseException):
                failures += 1
                continue
            with contextlib.suppress(ConnectionError):
                item[1].write(first_bytes)
            connections.append(item)
    if failures:
        say(f"  {failures} connections could not be opened")
    return connections


async def closed_after(
    connections: list[Connection], started: float, limit: float
) -> tuple[list[float], int]:
    """Seconds from ``started`` until the service closed each connection; how many it had not
    closed ``limit`` seconds after ``started``."""

    async def wait(reader: asyncio.StreamReader) -> float | None:
        try:
            async with asyncio.timeout_at(asyncio.get_running_loop().time() + remaining):
                while await reader.read(65536):
                    pass
        except TimeoutError:
            return None
        except ConnectionError:
            pass
        return time.monotonic() - started

    remaining = max(started + limit - time.monotonic(), 0.1)
    results = await asyncio.gather(*(wait(reader) for reader, _ in connections))
    for _, writer in connections:
        writer.close()
    done = [r for r in results if r is not None]
    return done, len(results) - len(done)


def spread(seconds: list[float]) -> str:
    if not seconds:
        return "none"
    return f"median {statistics.median(seconds):.1f} s, max {max(seconds):.1f} s"


async def flood(server: Server, count: int, kind: str, first_bytes: bytes, limit: float) -> None:
    started = time.monotonic()
    connections = await open_flood(server, count, first_bytes)
    opened = time.monotonic() - started
    await asyncio.sleep(0.5)
    latency = await health_latency(server)
    held, rss = established(server), server.rss_kib()
    say(
        f"{kind}: {len(connections)} connections opened in {opened:.1f} s; then /health "
        f"{latency}; the service held {held} connections, RSS {mb(rss)}"
    )
    closed, still_open = await closed_after(connections, started, limit)
    say(
        f"  closed by the service within {limit:.0f} s of the flood's start: {len(closed)} "
        f"({spread(closed)}); still open: {still_open}"
    )


def urllib_413(server: Server) -> None:
    body = b"[" + TRACK[:-1] + b',"pad":"' + b"x" * (7 * 1024 * 1024) + b'"}]'
    request = urllib.request.Request(  # noqa: S310 -- http on loopback
        f"{server.url}/v1/events",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {WEBHOOK_TOKEN}"},
    )
    try:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310 -- http on loopback
        outcome = "accepted (unexpected)"
    except urllib.error.HTTPError as exc:
        outcome = f"HTTP {exc.code} {json.loads(exc.read())['error']['code']}"
    except (urllib.error.URLError, OSError) as exc:
        outcome = f"no answer: {exc}"
    say(f"urllib, 7 MB body: {outcome}")


async def disconnects(server: Server, count: int) -> None:
    await asyncio.sleep(1)  # the lines of what came before are written
    already = len(server.output())
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(post_head(server, 100_000) + b'[{"type":"track"')
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.close()
    await asyncio.sleep(1)
    output = server.output()[already:]
    say(
        f"{count} clients left mid-body: {output.count('client_disconnected')} request lines "
        f"with error=client_disconnected, {output.count('Traceback')} tracebacks, "
        f"{output.count('unexpected error')} 'unexpected error' lines"
    )


def edge_log(server: Server) -> str:
    """What the service's edge logged: connections closed over the cap, refusals by code."""
    closed, refused = 0, Counter[str]()
    for line in server.output().splitlines():
        if '"klaviyo_destination.edge"' not in line:
            continue
        record = json.loads(line)
        closed += record.get("closed", 0)
        if "error" in record:
            refused[record["error"]] += 1
    codes = ", ".join(f"{code} {n}" for code, n in sorted(refused.items())) or "none"
    return f"closed over MAX_INBOUND_CONNECTIONS {closed}; refused: {codes}"


async def run(server: Server, args: argparse.Namespace) -> None:
    huge_header(server, args.header_mb)
    idle = b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
    await flood(server, args.connections, "idle flood (half-sent headers)", idle, args.wait)
    await flood(server, args.stalled, "stalled bodies", post_head(server, 1000) + b"[", args.wait)
    urllib_413(server)
    await disconnects(server, 100)
    say(f"the service's edge log: {edge_log(server)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--header-mb", type=int, default=128)
    parser.add_argument("--connections", type=int, default=19_000)
    parser.add_argument("--stalled", type=int, default=500)
    parser.add_argument("--wait", type=float, default=30, help="how long to wait for closes")
    parser.add_argument("--source", type=Path, help="run the service from this src directory")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument(
        "--service-files", type=int, help="the servers' open-file limit (default: this shell's)"
    )
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if args.service_files is not None:  # inherited by the servers
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.service_files, hard))
    env = dict(item.split("=", 1) for item in args.set)
    if args.source is not None:
        env["PYTHONPATH"] = str(args.source.resolve())
    say(f"service settings {env or 'defaults'}")
    with tempfile.TemporaryDirectory(prefix="edge-") as logs, running(env, Path(logs)) as servers:
        service = servers.service
        limits = psutil.Process(service.pid).rlimit(psutil.RLIMIT_NOFILE)
        say(f"service pid {service.pid}, open-file limit {limits[0]}, RSS {mb(service.rss_kib())}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the flood's own sockets
        asyncio.run(run(servers.service, args))
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        say(f"service RSS at the end {mb(servers.service.rss_kib())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
