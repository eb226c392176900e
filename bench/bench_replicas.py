"""Several ``serve`` processes on one Klaviyo account, with and without REDIS_URL (issue 28).

    .venv/bin/python bench/bench_replicas.py [--no-write]      (make bench-replicas)

(a) Sharing: N = 1, 2, 3 processes (``klaviyo-destination serve``, as production starts it)
deliver 600 track events sent at once (30 requests of 20, round robin) to the emulator with
its own rate limiter on at the same limits as the processes' (events: 40/s, 600/min). Without
REDIS_URL each process spends the whole budget and the emulator answers 429 for the excess;
with it the processes share one budget. Reported: the busiest 1-s and 60-s windows of the
requests the emulator accepted, the 429s it answered, and events delivered per second.

(b) Cost: one process, limits raised out of the way and the emulator's limiter off, 2,000
events (20 requests of 100 at once), three rounds each way alternating: CPU (user + system)
of the service per delivered event with REDIS_URL and without.

Writes its tables into docs/benchmarks.md between the markers of :mod:`bench.sections`, which
``make bench`` keeps.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import sections
from bench.bench_delivery import track_events
from support.emulator_control import RATE_LIMITS, EmulatorControl
from support.redis_server import RedisServer
from support.servers import Server, start_emulator, start_service_with
from support.windows import busiest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
BURST, STEADY = 40, 600
EVENTS, PER_REQUEST = 600, 20
#: The key of ``cost()``'s Redis round trips per event.
CALLS: Final = 2
COST_EVENTS, COST_PER_REQUEST, COST_ROUNDS = 2000, 100, 5


@dataclass(frozen=True, slots=True)
class Sharing:
    processes: int
    shared: bool
    delivered: int
    seconds: float
    busiest_second: int
    busiest_minute: int
    throttled: int


def _say(line: str) -> None:
    print(line, flush=True)


def _env(emulator_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "KLAVIYO_PRIVATE_API_KEY": "pk_bench_replicas",
        "KLAVIYO_BASE_URL": emulator_url,
        "DELIVERY_DEADLINE": "120",
        "REDIS_URL": redis_url,
        **extra,
    }


@contextmanager
def _services(count: int, env: Mapping[str, str], logs: Path) -> Iterator[list[Server]]:
    with ExitStack() as stack:
        folders = [Path(tempfile.mkdtemp(dir=logs)) for _ in range(count)]
        yield [stack.enter_context(start_service_with(env, folder)) for folder in folders]


async def _send(servers: list[Server], bodies: list[bytes]) -> tuple[float, int]:
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(timeout=300) as client:
        started = time.perf_counter()
        answers = await asyncio.gather(
            *(
                client.post(
                    f"{servers[i % len(servers)].url}/v1/events", content=b, headers=headers
                )
                for i, b in enumerate(bodies)
            )
        )
        seconds = time.perf_counter() - started
    statuses = [r["status"] for a in answers for r in a.json()["results"]]
    return seconds, statuses.count("delivered")


def _bodies(count: int, size: int) -> list[bytes]:
    events = track_events(count)
    return [orjson.dumps(events[i : i + size]) for i in range(0, count, size)]


def _cpu(servers: list[Server]) -> float:
    total = 0.0
    for server in servers:
        process = psutil.Process(server.pid)
        for p in [process, *process.children(recursive=True)]:
            times = p.cpu_times()
            total += times.user + times.system
    return total


def sharing(emulator: EmulatorControl, redis: RedisServer, logs: Path) -> list[Sharing]:
    rows = []
    for count in (1, 2, 3):
        for shared in (False, True):
            _say(f"replicas: {count} process(es), REDIS_URL {'set' if shared else 'unset'} ...")
            emulator.reset()
            emulator.client.post(
                RATE_LIMITS,
                json={"enabled": True, "limits": {"events": {"burst": BURST, "steady": STEADY}}},
            ).raise_for_status()
            if shared:
                redis.stop()  # an empty Redis for each row, as after a restart
                redis.start()
            env = _env(
                str(emulator.client.base_url).rstrip("/"),
                redis.url if shared else "",
                EVENTS_RATE_BURST=str(BURST),
                EVENTS_RATE_STEADY=str(STEADY),
            )
            with _services(count, env, logs) as servers:
                seconds, delivered = asyncio.run(_send(servers, _bodies(EVENTS, PER_REQUEST)))
            accepted = [_at(r) for r in emulator.requests("/api/events")]
            accepted_times = [t for t, status in accepted if status == 202]
            rows.append(
                Sharing(
                    count,
                    shared,
                    delivered,
                    seconds,
                    busiest(accepted_times, 1.0),
                    busiest(accepted_times, 60.0),
                    sum(1 for _, status in accepted if status == 429),
                )
            )
    return rows


def _at(recorded: dict[str, Any]) -> tuple[float, int]:
    return datetime.fromisoformat(recorded["time"]).timestamp(), recorded["status"]


def _redis_calls(server: Server) -> float:
    metrics = httpx.get(server.url + "/metrics").text
    lines = [x for x in metrics.splitlines() if x.startswith("klaviyo_rate_limit_redis_calls_")]
    return float(lines[0].split()[1]) if lines else 0.0


def cost(emulator: EmulatorControl, redis: RedisServer, logs: Path) -> dict[int, list[float]]:
    """CPU seconds per delivered event, per round, with REDIS_URL (True) and without; Redis
    round trips per delivered event under ``CALLS``."""
    found: dict[int, list[float]] = {False: [], True: []}
    calls: list[float] = []
    for round_ in range(COST_ROUNDS):
        for shared in (False, True):
            _say(f"cost: round {round_ + 1}, REDIS_URL {'set' if shared else 'unset'} ...")
            emulator.reset()
            emulator.rate_limits(enabled=False)
            env = _env(
                str(emulator.client.base_url).rstrip("/"),
                redis.url if shared else "",
                EVENTS_RATE_BURST="1000000",
                EVENTS_RATE_STEADY="10000000",
            )
            bodies = _bodies(COST_EVENTS, COST_PER_REQUEST)
            with _services(1, env, logs) as servers:
                asyncio.run(_send(servers, bodies[:2]))  # warm-up: connections, caches
                before, called = _cpu(servers), _redis_calls(servers[0])
                _, delivered = asyncio.run(_send(servers, bodies))
                found[shared].append((_cpu(servers) - before) / delivered)
                if shared:
                    calls.append((_redis_calls(servers[0]) - called) / delivered)
    found[CALLS] = calls
    return found


def table(rows: list[Sharing], costs: dict[int, list[float]]) -> str:
    lines = [
        f"### (a) {EVENTS} track events at once, account limit {BURST}/s and {STEADY}/min "
        "(the processes' and the emulator's)",
        "",
        "| processes | REDIS_URL | delivered | events/s | busiest 1 s at Klaviyo "
        "| busiest 60 s | 429s answered |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.processes} | {'set' if r.shared else 'unset'} | {r.delivered} | "
            f"{r.delivered / r.seconds:,.1f} | {r.busiest_second} | {r.busiest_minute} | "
            f"{r.throttled} |"
        )
    local, shared = (sorted(costs[k])[len(costs[k]) // 2] * 1e6 for k in (False, True))
    lines += [
        "",
        f"### (b) What sharing costs: CPU per delivered event, one process, {COST_EVENTS:,} "
        "events, limits out of the way, median of "
        f"{COST_ROUNDS} alternating rounds",
        "",
        "| REDIS_URL | CPU per delivered event (us) | rounds (us) |",
        "|---|---:|---|",
        f"| unset | {local:.0f} | {', '.join(f'{c * 1e6:.0f}' for c in costs[False])} |",
        f"| set | {shared:.0f} | {', '.join(f'{c * 1e6:.0f}' for c in costs[True])} |",
        "",
        f"Shared over local: {shared / local - 1:+.1%} CPU per event; Redis round trips per "
        f"delivered event: {', '.join(f'{c:.3f}' for c in costs[CALLS])}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench-replicas-") as folder,
        start_emulator(Path(folder)) as emulator_server,
        httpx.Client(base_url=emulator_server.url, timeout=60) as client,
        RedisServer(Path(folder)) as redis,
    ):
        emulator = EmulatorControl(client)
        rows = sharing(emulator, redis, Path(folder))
        costs = cost(emulator, redis, Path(folder))
    body = (
        f"## Several processes, one account (issue 28)\n\nWritten by `make bench-replicas` "
        f"(`bench/bench_replicas.py`) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; kept by "
        "`make bench`. Each process is `klaviyo-destination serve`; Redis is Debian's "
        "redis-server on loopback.\n\n" + table(rows, costs)
    )
    _say(body)
    if not args.no_write:
        DOC.write_text(sections.replace(DOC.read_text(encoding="utf-8"), body), encoding="utf-8")
        _say(f"written: {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
