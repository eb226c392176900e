"""HTTP clients side by side: CPU per request against the same canned Klaviyo.

    .venv/bin/python bench/clients.py [--clients aiohttp,httpx,...] [--api-version v1]
        [--in-flight 16] [--seconds 3] [--rounds 3]

Each client POSTs the bodies ``/v1/events`` sends Klaviyo for the corpus's track events (the
webhook path's own planning: ``pipeline.plan_events`` with the service's config at
``--api-version``, the headers of ``klaviyo/facts.py``), ``--in-flight`` requests at a time
(closed loop), to the load generator's canned server (``bench/loadgen.py``: a bare
``asyncio.Protocol`` answering 200 at once), and reads each answer's body. Every client runs in
a process of its own under uvloop, as ``serve`` runs; its figure is that process's user+system
CPU over the measured seconds (after a 0.5 s warm-up) divided by the requests answered. The
clients alternate round by round; the table gives each one's rounds (min-max) and median.

``aiohttp`` is the floor of issue 26: ``make bench`` runs it (:func:`run_client`) beside the
``/v1/events`` delivery rows, in the same rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen
from support.events import corpus
from support.processes import LOOPBACK

ROOT: Final = Path(__file__).resolve().parent.parent
#: path, headers, body: one request as ``/v1/events`` sends it
Exchange = tuple[str, dict[str, str], bytes]
#: one request sent and its answer read; returns the status
Send = Callable[[Exchange], Awaitable[int]]


def track_events(count: int) -> list[dict[str, Any]]:
    """The first ``count`` track events of the benchmark corpus."""
    events = [e for e in corpus(count * 3) if e["type"] == "track"][:count]
    assert len(events) == count, "the corpus holds fewer track events than asked"
    return events


def klaviyo_requests(api_version: str, count: int = 300) -> list[Exchange]:
    """What ``/v1/events`` sends Klaviyo for ``count`` corpus track events at ``api_version``."""
    import orjson
    from pydantic import SecretStr

    from klaviyo_destination.ingest.config import from_settings
    from klaviyo_destination.klaviyo.facts import klaviyo_headers
    from klaviyo_destination.phones import PhoneRule
    from klaviyo_destination.pipeline import plan_events
    from klaviyo_destination.settings import Settings

    settings = Settings(
        klaviyo_private_api_key=SecretStr("pk_bench"),
        klaviyo_base_url="http://127.0.0.1:1",
        klaviyo_api_version=api_version,
    )
    planned = plan_events(track_events(count), from_settings(settings), phones=PhoneRule())
    out: list[Exchange] = []
    for event in planned:
        assert event.error is None, event.error
        for request in event.requests:
            headers = klaviyo_headers(settings.klaviyo_private_api_key, request.revision.name)
            out.append((request.path, headers, orjson.dumps(request.body)))
    return out


# --- the clients, each run in a process of its own -------------------------------------------


async def _aiohttp(base: str, in_flight: int) -> tuple[Send, Callable[[], Awaitable[None]]]:
    import aiohttp

    session = aiohttp.ClientSession(
        base, connector=aiohttp.TCPConnector(limit=in_flight), auto_decompress=False
    )

    async def send(exchange: Exchange) -> int:
        path, headers, body = exchange
        async with session.post(path, data=body, headers=headers, allow_redirects=False) as r:
            await r.read()
            return r.status

    return send, session.close


def _httpx_like(module: Any, transport: Any, base: str, in_flight: int) -> tuple[Send, Any]:
    limits = module.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    client = module.AsyncClient(
        base_url=base, limits=limits, transport=transport, follow_redirects=False
    )

    async def send(exchange: Exchange) -> int:
        path, headers, body = exchange
        answer = await client.post(path, content=body, headers=headers)
        return int(answer.status_code)

    return send, client.aclose


async def _httpx(base: str, in_flight: int) -> tuple[Send, Any]:
    import httpx

    return _httpx_like(httpx, None, base, in_flight)


async def _httpx2(base: str, in_flight: int) -> tuple[Send, Any]:
    import httpx2

    return _httpx_like(httpx2, None, base, in_flight)


async def _httpx_aiohttp(base: str, in_flight: int) -> tuple[Send, Any]:
    import httpx
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    return _httpx_like(httpx, AiohttpTransport(limits=limits), base, in_flight)


async def _httpx_ours(base: str, in_flight: int) -> tuple[Send, Any]:
    import httpx

    from bench.own_transport import AiohttpTransport

    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    return _httpx_like(httpx, AiohttpTransport(limits=limits), base, in_flight)


async def _ours_direct(base: str, in_flight: int) -> tuple[Send, Any]:
    """Our transport called with an ``httpx.Request``, as ``KlaviyoClient`` calls it."""
    import httpx

    from bench.own_transport import AiohttpTransport

    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    transport = AiohttpTransport(limits=limits)
    timeout = httpx.Timeout(10.0).as_dict()

    async def send(exchange: Exchange) -> int:
        path, headers, body = exchange
        request = httpx.Request(
            "POST", base + path, content=body, headers=headers, extensions={"timeout": timeout}
        )
        answer = await transport.handle_async_request(request)
        try:
            await answer.aread()
        finally:
            await answer.aclose()
        return answer.status_code

    return send, transport.aclose


async def _exchange_direct(base: str, in_flight: int) -> tuple[Send, Any]:
    """The service's production exchange (``AiohttpExchange``) called straight, as
    ``KlaviyoClient.call`` calls it: aiohttp with httpx's rules and no httpx types."""
    from pydantic import SecretStr

    from klaviyo_destination.klaviyo.exchange import AiohttpExchange, RequestHeaders
    from klaviyo_destination.settings import Settings

    settings = Settings(
        klaviyo_private_api_key=SecretStr("pk_bench"),
        klaviyo_base_url=base,
        max_connections=in_flight,
    )
    made = AiohttpExchange(settings)
    encoded: dict[int, RequestHeaders] = {}

    async def send(exchange: Exchange) -> int:
        path, headers, body = exchange
        sent = encoded.get(id(headers))
        if sent is None:
            sent = encoded[id(headers)] = tuple(
                (k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
            )
        return (await made("POST", base + path, sent, body)).status

    return send, made.aclose


async def _session(base: str, _in_flight: int) -> tuple[Send, Any]:
    """The service's own path: ``KlaviyoSession.run_one`` (retries, deadline, rate-limit slot,
    metrics, the answer's verdict) on ``KlaviyoClient``'s default exchange."""
    import orjson
    from pydantic import SecretStr

    from klaviyo_destination.klaviyo import KlaviyoClient, KlaviyoSession
    from klaviyo_destination.planned import PlannedRequest
    from klaviyo_destination.settings import Settings

    settings = Settings(
        klaviyo_private_api_key=SecretStr("pk_bench"),
        klaviyo_base_url=base,
        events_rate_burst=10**7,
        events_rate_steady=10**8,
    )
    client = KlaviyoClient(settings)
    await client.__aenter__()
    session = KlaviyoSession(client, SecretStr("pk_bench"))
    planned: dict[bytes, PlannedRequest] = {}

    async def send(exchange: Exchange) -> int:
        path, _, body = exchange
        request = planned.get(body)
        if request is None:
            request = planned[body] = PlannedRequest("POST", path, orjson.loads(body))
        sent: list[Any] = []
        await session.run_one(request, time.monotonic() + 25, sent)
        return int(sent[0].status_code)

    async def close() -> None:
        await client.__aexit__(None, None, None)

    return send, close


CLIENTS: Final[dict[str, Callable[[str, int], Awaitable[tuple[Send, Any]]]]] = {
    "aiohttp": _aiohttp,
    "httpx": _httpx,
    "httpx2": _httpx2,
    "httpx+httpx-aiohttp": _httpx_aiohttp,
    "httpx+own-transport": _httpx_ours,
    "own-transport-direct": _ours_direct,
    "exchange-direct": _exchange_direct,
    "session": _session,
}


async def _drive(send: Send, requests: list[Exchange], in_flight: int, until: float) -> int:
    done = 0

    async def worker(start: int) -> None:
        nonlocal done
        index = start
        while time.perf_counter() < until:
            status = await send(requests[index % len(requests)])
            assert status == 200, status
            index += 1
            done += 1

    step = max(1, len(requests) // in_flight)
    await asyncio.gather(*(worker(i * step) for i in range(in_flight)))
    return done


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure_client(
    name: str, port: int, api_version: str, in_flight: int, seconds: float
) -> dict[str, float]:
    """In this process: ``name`` against the canned server; CPU us per request."""
    requests = klaviyo_requests(api_version)
    send, close = await CLIENTS[name](f"http://{LOOPBACK}:{port}", in_flight)
    try:
        await _drive(send, requests, in_flight, time.perf_counter() + 0.5)
        cpu, wall = _cpu(), time.perf_counter()
        count = await _drive(send, requests, in_flight, wall + seconds)
        cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    finally:
        await close()
    return {"requests": count, "cpu_us": cpu / count * 1e6, "per_second": count / wall}


@dataclass(frozen=True, slots=True)
class Figure:
    client: str
    cpu_us: float
    per_second: float


def run_client(
    name: str, port: int, api_version: str, in_flight: int = 16, seconds: float = 3.0
) -> Figure:
    """``name`` in a fresh process of its own (its CPU alone), against the server on ``port``."""
    argv = [
        sys.executable, str(Path(__file__).resolve()), "--child", name, "--port", str(port),
        "--api-version", api_version, "--in-flight", str(in_flight), "--seconds", str(seconds),
    ]  # fmt: skip
    # This tree's source, whatever .venv has installed: a copy of another commit measures that.
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}"}
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)  # noqa: S603
    if done.returncode != 0:
        raise RuntimeError(f"{name}: {done.stderr.strip()[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return Figure(name, result["cpu_us"], result["per_second"])


def _rounds(names: list[str], rounds: int) -> Iterator[tuple[int, str]]:
    for number in range(rounds):
        # Rotate the order each round, so no client always runs first (or after the same one).
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            yield number, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--api-version", default="v1")
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import uvloop

        result = uvloop.run(
            measure_client(args.child, args.port, args.api_version, args.in_flight, args.seconds)
        )
        print(json.dumps(result))
        return
    names = args.clients.split(",")
    figures: dict[str, list[Figure]] = {name: [] for name in names}
    with loadgen.canned_server() as port:
        for number, name in _rounds(names, args.rounds):
            figure = run_client(name, port, args.api_version, args.in_flight, args.seconds)
            figures[name].append(figure)
            print(
                f"round {number + 1}: {name}: {figure.cpu_us:.1f} us CPU/request, "
                f"{figure.per_second:,.0f} requests/s",
                flush=True,
            )
    print(f"\n{args.in_flight} in flight, bodies at {args.api_version}, {args.rounds} rounds")
    print("| client | CPU us/request (rounds) | median | requests/s (median) |")
    print("|---|---:|---:|---:|")
    for name, measured in figures.items():
        cpu = [f.cpu_us for f in measured]
        rate = statistics.median(f.per_second for f in measured)
        print(
            f"| {name} | {min(cpu):.0f}-{max(cpu):.0f} | {statistics.median(cpu):.0f} "
            f"| {rate:,.0f} |"
        )


if __name__ == "__main__":
    main()
