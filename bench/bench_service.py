"""The HTTP service in one process (and with two workers), driven from this process.

    .venv/bin/python bench/bench_service.py [--seconds 3]

Each scenario posts the deterministic corpus (support/events.py, no identify: identify makes a
network call while transforming) to one endpoint, ``batch`` events a request, over
``connections`` keep-alive connections, and reports events/s, p50 and p99 latency per request,
and the peak RSS (VmHWM) of the busiest worker during that scenario.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import loadgen
from support.events import CORPUS_CONFIG, corpus
from support.processes import LOOPBACK
from support.servers import Server, start_emulator, start_uvicorn_service

PROCESSOR = "/v0/destinations/klaviyo"
ROUTER = "/routerTransform"
TRANSFORM = "/v1/transform"

#: rudder-server sends the destination (config included) with every job.
DESTINATION: dict[str, Any] = {
    "ID": "2Zl2cDnD5kvMGUHRLGZDObGJrWx",
    "Name": "Klaviyo bench",
    "Config": CORPUS_CONFIG,
    "Enabled": True,
    "WorkspaceID": "2Zl2XmYJ4Kx1pGmnSPXRvdw8D3b",
    "DestinationDefinition": {
        "ID": "1WTpqGhc2UU3WfKTShsgxSPDIJK",
        "Name": "KLAVIYO",
        "DisplayName": "Klaviyo",
        "Config": {},
    },
    "Transformations": [],
    "IsProcessorEnabled": True,
    "RevisionID": "2Zl2cFvLpmG9b7ZJPTbNzdVhPQv",
}


def _job(message: dict[str, Any], index: int) -> dict[str, Any]:
    return {
        "message": message,
        "metadata": {
            "jobId": index + 1,
            "userId": f"<<>>{message['anonymousId']}<<>>{message['userId']}",
            "messageId": message["messageId"],
            "sourceId": "2Zl2Xk5Jl5vsQ5WcLvVCqaZfPMN",
            "destinationId": DESTINATION["ID"],
            "workspaceId": DESTINATION["WorkspaceID"],
            "sourceType": "Javascript",
            "sourceCategory": "",
            "destinationType": "KLAVIYO",
            "eventType": message["type"],
            "receivedAt": message["receivedAt"],
            "rudderId": f"rid-{index:07d}",
        },
        "destination": DESTINATION,
    }


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items) - size + 1, size):
        yield items[start : start + size]


def processor_bodies(events: list[dict[str, Any]], batch: int) -> list[bytes]:
    jobs = [_job(e, i) for i, e in enumerate(events)]
    return [orjson.dumps(chunk) for chunk in _batches(jobs, batch)]


def router_bodies(events: list[dict[str, Any]], batch: int) -> list[bytes]:
    jobs = [_job(e, i) for i, e in enumerate(events)]
    return [
        orjson.dumps({"input": chunk, "destType": "klaviyo"}) for chunk in _batches(jobs, batch)
    ]


def transform_bodies(events: list[dict[str, Any]], batch: int) -> list[bytes]:
    if batch == 1:
        return [orjson.dumps(e) for e in events]
    return [orjson.dumps(chunk) for chunk in _batches(events, batch)]


@dataclass(frozen=True, slots=True)
class Scenario:
    endpoint: str
    batch: int
    connections: int
    workers: int = 1
    #: RudderStack's transformer on the same kind of machine: events/s, p50 ms, p99 ms, RSS MB
    reference: tuple[float, float, float, float] | None = None

    @property
    def name(self) -> str:
        workers = f", {self.workers} workers" if self.workers > 1 else ""
        plural = "s" if self.batch > 1 else ""
        conns = "s" if self.connections > 1 else ""
        return (
            f"{self.endpoint} {self.batch} event{plural}/req, "
            f"{self.connections} conn{conns}{workers}"
        )


SCENARIOS = (
    Scenario(PROCESSOR, 1, 1, reference=(1850, 0.49, 1.3, 290)),
    Scenario(PROCESSOR, 1, 8, reference=(3200, 2.2, 5.6, 290)),
    Scenario(PROCESSOR, 100, 1, reference=(8200, 10, 15, 270)),
    Scenario(PROCESSOR, 100, 8),
    Scenario(ROUTER, 1, 1),
    Scenario(ROUTER, 100, 1, reference=(7500, 11, 18, 290)),
    Scenario(ROUTER, 100, 8),
    Scenario(TRANSFORM, 1, 1),
    Scenario(TRANSFORM, 100, 1),
    Scenario(PROCESSOR, 1, 8, workers=2),
    Scenario(PROCESSOR, 100, 8, workers=2),
    Scenario(ROUTER, 100, 8, workers=2),
)

BODIES: dict[str, Callable[[list[dict[str, Any]], int], list[bytes]]] = {
    PROCESSOR: processor_bodies,
    ROUTER: router_bodies,
    TRANSFORM: transform_bodies,
}


@dataclass(frozen=True, slots=True)
class Measured:
    scenario: Scenario
    events_per_second: float
    p50_ms: float
    p99_ms: float
    peak_rss_mb: float
    errors: int


def _corpus_without_identify(count: int) -> list[dict[str, Any]]:
    events = [e for e in corpus(count) if e["type"] != "identify"]
    assert len(events) == count, "the benchmark corpus holds no identify events"
    return events


def measure(
    service: Server, scenario: Scenario, events: list[dict[str, Any]], seconds: float
) -> Measured:
    bodies = BODIES[scenario.endpoint](events, scenario.batch)
    payloads = [loadgen.request_bytes(scenario.endpoint, body) for body in bodies]
    # Warm the worker(s) up (imports, caches, allocator) before the peak RSS is reset.
    uvloop.run(
        loadgen.run(LOOPBACK, service.port, payloads, connections=scenario.connections, seconds=0.5)
    )
    service.reset_peak_rss()
    result = uvloop.run(
        loadgen.run(
            LOOPBACK,
            service.port,
            payloads,
            connections=scenario.connections,
            seconds=seconds,
        )
    )
    return Measured(
        scenario,
        result.per_second * scenario.batch,
        result.p50 * 1000,
        result.percentile(0.99) * 1000,
        service.peak_rss_mb(),
        result.errors,
    )


def run_all(
    seconds: float, progress: Callable[[str], None], scenarios: tuple[Scenario, ...] = SCENARIOS
) -> list[Measured]:
    events = _corpus_without_identify(1000)
    results: list[Measured] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as logs,
        start_emulator(Path(logs)) as klaviyo,
    ):
        for workers in sorted({s.workers for s in scenarios}):
            with start_uvicorn_service(klaviyo.url, Path(logs), workers=workers) as service:
                for scenario in (s for s in scenarios if s.workers == workers):
                    progress(f"service: {scenario.name} ...")
                    results.append(measure(service, scenario, events, seconds))
    return results


def generator_ceiling(seconds: float) -> list[tuple[int, int, float]]:
    """Requests/s this generator reaches against a server that does nothing, per shape."""
    events = _corpus_without_identify(1000)
    out = []
    with loadgen.canned_server() as port:
        for batch, connections in ((1, 1), (1, 8), (100, 1)):
            bodies = processor_bodies(events, batch)
            payloads = [loadgen.request_bytes(PROCESSOR, b) for b in bodies]
            drive = loadgen.run(LOOPBACK, port, payloads, connections=connections, seconds=seconds)
            result = uvloop.run(drive)
            out.append((batch, connections, result.per_second))
    return out


def table(results: list[Measured]) -> str:
    lines = [
        "| scenario | events/s | p50 ms | p99 ms | peak RSS MB | reference events/s, p50, p99, RSS "
        "| ratio events/s | ratio p50 | ratio RSS |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for m in results:
        ref = m.scenario.reference
        errors = f" ({m.errors} non-200)" if m.errors else ""
        if ref is None:
            reference = ratio = ratio_p50 = ratio_rss = "-"
        else:
            reference = f"{ref[0]:,.0f}, {ref[1]} ms, {ref[2]} ms, ~{ref[3]:.0f} MB"
            ratio = f"{m.events_per_second / ref[0]:.1f}x"
            ratio_p50 = f"{ref[1] / m.p50_ms:.1f}x"
            ratio_rss = f"{m.peak_rss_mb / ref[3]:.2f}"
        lines.append(
            f"| {m.scenario.name} | {m.events_per_second:,.0f}{errors} | {m.p50_ms:.2f} | "
            f"{m.p99_ms:.2f} | {m.peak_rss_mb:.0f} | {reference} | {ratio} | {ratio_p50} | "
            f"{ratio_rss} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--only", default=None, help="run scenarios whose name contains this")
    args = parser.parse_args()
    scenarios = tuple(s for s in SCENARIOS if args.only is None or args.only in s.name)
    results = run_all(args.seconds, lambda line: print(line, flush=True), scenarios)
    print(table(results))
    if args.only is None:
        for batch, connections, rate in generator_ceiling(args.seconds):
            print(f"generator ceiling, {batch} event(s)/req, {connections} conn: {rate:,.0f} req/s")


if __name__ == "__main__":
    main()
