"""Request amplification: small protocol requests with large answers (issue 27 A1, A4, C4).

Starts the emulator and the service (compose's commands, on loopback) and sends, one at a time:

* **million zeros**: a 1,979-byte gzip body to the processor route, a JSON array of a million
  ``0``s;
* **tiny jobs**: a plain 600 KB processor body of ``{}`` jobs;
* **shared destination**: a compacted ``/routerTransform`` body whose 8 MB destination is shared
  by 50 track jobs;
* **a full batch**: 1,000 valid track jobs (``MAX_PROTOCOL_JOBS``) to the processor route;
* **deep metadata**: three jobs, one with metadata 254 levels deep, to both routes;
* **gzip members / trailing garbage**: the same small batch as two gzip members, and with bytes
  after the stream.

For each: its answer (status, size, time), the service's peak RSS during it (``VmHWM``, reset
before each) and ``GET /health``'s slowest answer, asked every 20 ms while the request runs.
``--source DIR`` runs the service from another checkout's ``src`` (``git archive`` of an older
commit) for a baseline. ``python -m reliability.amplify``; the figures are in
docs/reliability.md; ``tests/api/test_protocol_limits.py`` and ``test_compressed_bodies.py``
are the fast versions, in ``make test``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import httpx
import orjson

from support.events import signed_up
from support.servers import Server, running

PROCESSOR: Final = "/v0/destinations/klaviyo"
ROUTER: Final = "/routerTransform"
JSON: Final = {"Content-Type": "application/json"}
GZIP: Final = {**JSON, "Content-Encoding": "gzip"}
COMPACTED: Final = {**JSON, "X-Content-Format": "json+compactedv1"}
DESTINATION: Final[dict[str, Any]] = {
    "ID": "d1",
    "Name": "klaviyo",
    "DestinationDefinition": {"Name": "KLAVIYO"},
    "Config": {"privateApiKey": "pk_amplify"},
}


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _job(n: int, **metadata: Any) -> dict[str, Any]:
    return {
        "message": signed_up(f"m{n}"),
        "metadata": {"jobId": n, "destinationId": "d1"} | metadata,
        "destination": DESTINATION,
    }


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def attacks() -> list[tuple[str, str, bytes, dict[str, str]]]:
    """(name, path, body, headers) of each request sent."""
    zeros = gzip.compress(b"[" + b",".join([b"0"] * 1_000_000) + b"]", 9)
    tiny = b"[" + b",".join([b"{}"] * 200_000) + b"]"
    big = DESTINATION | {"Config": DESTINATION["Config"] | {"pad": "x" * 8_000_000}}
    shared = {
        "destType": "klaviyo",
        "input": [
            {"message": signed_up(f"m{n}"), "metadata": _job(n)["metadata"]} for n in range(50)
        ],
        "destinations": {"d1": big},
        "connections": {},
    }
    full = orjson.dumps([_job(n) for n in range(1000)])
    deep = [_job(1), _job(2, trace=_nested(254)), _job(3)]
    small = orjson.dumps([_job(n) for n in range(3)])
    return [
        ("million zeros (gzip)", PROCESSOR, zeros, GZIP),
        ("600 KB of tiny jobs", PROCESSOR, tiny, JSON),
        ("8 MB destination x 50 compacted jobs", ROUTER, orjson.dumps(shared), COMPACTED),
        ("1,000 track jobs", PROCESSOR, full, JSON),
        ("deep metadata, processor", PROCESSOR, json.dumps(deep).encode(), JSON),
        (
            "deep metadata, router",
            ROUTER,
            json.dumps({"destType": "klaviyo", "input": deep}).encode(),
            JSON,
        ),
        (
            "two gzip members",
            PROCESSOR,
            gzip.compress(small[:100]) + gzip.compress(small[100:]),
            GZIP,
        ),
        ("gzip + trailing garbage", PROCESSOR, gzip.compress(small) + b"garbage", GZIP),
    ]


async def _health_while(server: Server, done: asyncio.Event) -> float:
    """The slowest ``/health`` answer (ms) while ``done`` is unset, asked every 20 ms."""
    slowest = 0.0
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        while not done.is_set():
            started = time.monotonic()
            await client.get("/health")
            slowest = max(slowest, (time.monotonic() - started) * 1000)
            await asyncio.sleep(0.02)
    return slowest


def _outcome(answer: httpx.Response) -> str:
    if answer.status_code != 200:
        return f"{answer.status_code} {answer.json()['error']['message'][:60]!r}"
    body = answer.json()
    items = body["output"] if isinstance(body, dict) else body
    statuses = sorted({item["statusCode"] for item in items})
    return f"200, {len(items)} items, statuses {statuses}"


async def attack(
    server: Server, name: str, path: str, body: bytes, headers: dict[str, str]
) -> None:
    server.reset_peak_rss()
    done = asyncio.Event()
    health = asyncio.create_task(_health_while(server, done))
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=server.url, timeout=300) as client:
        try:
            answer = await client.post(path, content=body, headers=headers)
            outcome = f"{_outcome(answer)}; answer {len(answer.content):,} B"
        except httpx.HTTPError as exc:
            outcome = f"failed ({type(exc).__name__})"
    elapsed = time.monotonic() - started
    done.set()
    slowest = await health
    say(
        f"{name}: {len(body):,} B sent; {outcome}; {elapsed:.2f} s; peak RSS "
        f"{server.peak_rss_mb():.0f} MB; slowest /health {slowest:.0f} ms"
    )


async def run(server: Server) -> None:
    for name, path, body, headers in attacks():
        await attack(server, name, path, body, headers)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, help="run the service from this src directory")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.set)
    if args.source is not None:
        env["PYTHONPATH"] = str(args.source.resolve())
    say(f"service settings {env or 'defaults'}")
    with (
        tempfile.TemporaryDirectory(prefix="amplify-") as logs,
        running(env, Path(logs)) as servers,
    ):
        say(f"service RSS at the start {servers.service.rss_kib() / 1024:.0f} MB")
        asyncio.run(run(servers.service))
    return 0


if __name__ == "__main__":
    sys.exit(main())
