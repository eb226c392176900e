"""The HTTP service side by side with RudderStack's transformer: one machine, one run, one load
generator, the two servers alternating on the same corpus.

    REFERENCE_DIR=/tmp/reference/rt .venv/bin/python bench/bench_service.py [--seconds 3]
    REFERENCE_URL=http://127.0.0.1:9090 .venv/bin/python bench/bench_service.py

``REFERENCE_DIR`` is a built rudder-transformer (``../shared/tools/build-reference.sh``), started
here as one Node process (``CLUSTER_ENABLED=false LOG_LEVEL=error``); ``REFERENCE_URL`` is one
already running (then its RSS and CPU are not read). Without either, only this service is
measured and no ratio is reported. The service runs as production runs it:
``klaviyo-destination serve`` with its default settings and logging (one JSON line per request,
to a file). A do-nothing ASGI app under the same uvicorn, uvloop and httptools gives the ceiling
of the HTTP stack in the same run. Klaviyo is a canned server answering at once, so ``/v1/events``
measures the service, not Klaviyo; its client-side rate limits are raised out of the way there.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson
import psutil
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import clients, loadgen
from support.events import CORPUS_CONFIG, corpus
from support.processes import LOOPBACK, free_port
from support.servers import REPOSITORY, Server, start, start_service_with

PROCESSOR: Final = "/v0/destinations/klaviyo"
ROUTER: Final = "/routerTransform"
WEBHOOK: Final = "/v1/events"

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
#: Issue 26: a delivered event at most this many times the raw client's CPU per request.
DELIVERY_GOAL: Final = 2.5
#: Only our limits: Klaviyo is canned here, and 350 events/s would measure the limiter.
UNLIMITED: Final = {
    "EVENTS_RATE_BURST": "10000000",
    "EVENTS_RATE_STEADY": "100000000",
    "PROFILES_RATE_BURST": "10000000",
    "PROFILES_RATE_STEADY": "100000000",
}


def _destination(api_version: str) -> dict[str, Any]:
    """The destination rudder-server sends, its config at ``api_version`` (v1: none named, as
    RudderStack's older connections have it)."""
    if api_version == "v1":
        return DESTINATION
    return {**DESTINATION, "Config": {**CORPUS_CONFIG, "apiVersion": api_version}}


def _job(message: dict[str, Any], index: int, destination: dict[str, Any]) -> dict[str, Any]:
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
        "destination": destination,
    }


def _batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start_at in range(0, len(items) - size + 1, size):
        yield items[start_at : start_at + size]


def bodies(
    endpoint: str, events: list[dict[str, Any]], batch: int, api_version: str = "v1"
) -> list[bytes]:
    if endpoint == WEBHOOK:
        if batch == 1:
            return [orjson.dumps(e) for e in events]
        return [orjson.dumps(chunk) for chunk in _batches(events, batch)]
    destination = _destination(api_version)
    jobs = [_job(e, i, destination) for i, e in enumerate(events)]
    if endpoint == ROUTER:
        return [orjson.dumps({"input": c, "destType": "KLAVIYO"}) for c in _batches(jobs, batch)]
    return [orjson.dumps(chunk) for chunk in _batches(jobs, batch)]


@dataclass(frozen=True, slots=True)
class Scenario:
    endpoint: str
    batch: int
    connections: int
    #: the destination's ``apiVersion`` (the protocol routes' jobs carry it)
    api_version: str = "v1"
    #: the corpus's track events only: a delivery row, measured beside the raw-client floor
    track: bool = False

    @property
    def name(self) -> str:
        plural = "s" if self.batch > 1 else ""
        conns = "s" if self.connections > 1 else ""
        where = {PROCESSOR: "processor", ROUTER: "router", WEBHOOK: "/v1/events"}[self.endpoint]
        at = "" if self.api_version == "v1" else f" at {self.api_version}"
        kind = " track" if self.track else ""
        return f"{where}{at}, {self.batch}{kind} event{plural}/req, {self.connections} conn{conns}"

    @property
    def compared(self) -> bool:
        """Whether the reference serves it (it has no webhook)."""
        return self.endpoint != WEBHOOK


SCENARIOS: Final = (
    Scenario(PROCESSOR, 1, 1),
    Scenario(PROCESSOR, 1, 8),
    Scenario(PROCESSOR, 100, 1),
    Scenario(PROCESSOR, 100, 8),
    Scenario(ROUTER, 100, 1),
    Scenario(ROUTER, 100, 8),
    Scenario(WEBHOOK, 1, 1),
    # Delivery (issue 26): 100 track events a request, 4 requests in flight, beside the floor.
    Scenario(WEBHOOK, 100, 4, track=True),
    # Today's Klaviyo (revision 2026-04-15), the same corpus: RudderStack's newer path.
    Scenario(PROCESSOR, 1, 1, "v3"),
    Scenario(PROCESSOR, 100, 1, "v3"),
    Scenario(ROUTER, 100, 1, "v3"),
    Scenario(WEBHOOK, 100, 4, "v3", track=True),
)
#: The floor's requests in flight: a raw aiohttp client (``bench/clients.py``), as issue 26 set it.
FLOOR_IN_FLIGHT: Final = 16


@dataclass
class Measured:
    events_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_event: float | None
    peak_rss_mb: float | None


@dataclass
class Row:
    scenario: Scenario
    ours: list[Measured] = field(default_factory=list)
    reference: list[Measured] = field(default_factory=list)
    #: the service without its handler (``bench/without_handler.py``), one-event processor rows
    bare: list[Measured] = field(default_factory=list)
    #: a raw aiohttp client's CPU us per request, the same Klaviyo bodies (delivery rows)
    floor: list[float] = field(default_factory=list)

    @property
    def measures_bare(self) -> bool:
        s = self.scenario
        return s.endpoint == PROCESSOR and s.batch == 1 and s.api_version == "v1"


@dataclass(frozen=True)
class Target:
    """A server under load: its port, and its process when it runs here (RSS, CPU)."""

    name: str
    port: int
    pid: int | None

    def process(self) -> psutil.Process | None:
        return psutil.Process(self.pid) if self.pid is not None else None


def _cpu_seconds(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    times = [process.cpu_times(), *(c.cpu_times() for c in process.children(recursive=True))]
    return sum(t.user + t.system for t in times)


def _peak_rss_mb(process: psutil.Process | None) -> float | None:
    if process is None:
        return None
    status = Path(f"/proc/{process.pid}/status").read_text()
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    return kib / 1024


def _reset_peak(process: psutil.Process | None) -> None:
    if process is not None:
        with contextlib.suppress(OSError):  # clear_refs needs the process to be ours
            Path(f"/proc/{process.pid}/clear_refs").write_text("5")


def measure(target: Target, scenario: Scenario, payloads: list[bytes], seconds: float) -> Measured:
    drive = loadgen.run
    uvloop.run(
        drive(LOOPBACK, target.port, payloads, connections=scenario.connections, seconds=0.5)
    )
    process = target.process()
    _reset_peak(process)
    cpu_before = _cpu_seconds(process)
    result = uvloop.run(
        drive(LOOPBACK, target.port, payloads, connections=scenario.connections, seconds=seconds)
    )
    # The generator's warm-up half second is in the CPU figure too: count its events as well.
    cpu = _cpu_seconds(process) - cpu_before
    events = result.requests * scenario.batch * (seconds + 0.5) / seconds
    return Measured(
        result.per_second * scenario.batch,
        result.p50 * 1000,
        result.percentile(0.99) * 1000,
        result.errors,
        cpu / events * 1e6 if process is not None and events else None,
        _peak_rss_mb(process),
    )


@contextlib.contextmanager
def reference_server(logs: Path) -> Iterator[Target | None]:
    """The reference from REFERENCE_DIR (started here) or REFERENCE_URL, or None."""
    url = os.environ.get("REFERENCE_URL")
    folder = os.environ.get("REFERENCE_DIR")
    if url:
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        yield Target("reference", port, None)
    elif folder:
        port = free_port()
        env = {"CLUSTER_ENABLED": "false", "LOG_LEVEL": "error", "PORT": str(port)}
        argv = ["node", str(Path(folder) / "dist" / "src" / "index.js")]
        server = start("reference", argv, port=port, logs=logs, health="/health", env=env)
        try:
            yield Target("reference", port, server.pid)
        finally:
            server.stop()
    else:
        yield None


def reference_version() -> str | None:
    folder = os.environ.get("REFERENCE_DIR")
    if not folder:
        return os.environ.get("REFERENCE_URL")
    version = orjson.loads((Path(folder) / "package.json").read_bytes())["version"]
    commit = subprocess.run(  # noqa: S603 -- git in the reference's checkout
        ["git", "-C", folder, "rev-parse", "--short", "HEAD"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"rudder-transformer {version} (commit {commit or 'unknown'}), one Node process"


def start_ours(
    logs: Path, klaviyo_url: str, *, module: str | None = None, api_version: str = "v1"
) -> Server:
    """``klaviyo-destination serve`` as production runs it, Klaviyo canned; ``module``: an
    instrument run in its place (``bench.without_handler``); ``api_version``: the revision
    ``/v1/events`` delivers at (``KLAVIYO_API_VERSION``)."""
    env = {"KLAVIYO_PRIVATE_API_KEY": "pk_bench", "KLAVIYO_BASE_URL": klaviyo_url, **UNLIMITED}
    return start_service_with({**env, "KLAVIYO_API_VERSION": api_version}, logs, module=module)


@contextlib.contextmanager
def null_app(logs: Path) -> Iterator[Server]:
    """A do-nothing ASGI app under uvicorn as ``serve`` runs it (uvloop, httptools)."""
    port = free_port()
    argv = [
        sys.executable, "-m", "uvicorn", "bench.null_app:app",
        "--host", LOOPBACK, "--port", str(port),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    env = {"PYTHONPATH": str(REPOSITORY)}
    with start("null-app", argv, port=port, logs=logs, health="/health", env=env) as server:
        yield server


def ceiling(
    port: int, events: list[dict[str, Any]], seconds: float
) -> dict[tuple[int, int], float]:
    """Requests/s of the do-nothing app, per (events/request, connections)."""
    out = {}
    for batch, connections in ((1, 1), (1, 8), (100, 1), (100, 8)):
        payloads = [loadgen.request_bytes(PROCESSOR, b) for b in bodies(PROCESSOR, events, batch)]
        result = uvloop.run(
            loadgen.run(LOOPBACK, port, payloads, connections=connections, seconds=seconds)
        )
        out[(batch, connections)] = result.per_second
    return out


def corpus_without_identify(count: int) -> list[dict[str, Any]]:
    events = [e for e in corpus(count) if e["type"] != "identify"]
    assert len(events) == count, "the benchmark corpus holds no identify events"
    return events


@dataclass
class Run:
    rows: list[Row]
    ceiling: dict[tuple[int, int], float]
    reference: str | None


def run_all(
    seconds: float,
    progress: Callable[[str], None],
    scenarios: tuple[Scenario, ...] = SCENARIOS,
    rounds: int = 2,
) -> Run:
    events = corpus_without_identify(1000)
    rows = [Row(s) for s in scenarios]
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as folder,
        loadgen.canned_server() as klaviyo,
    ):
        logs = Path(folder)
        with null_app(logs) as null:
            progress("ceiling: a do-nothing ASGI app under the same uvicorn ...")
            limit = ceiling(null.port, events, seconds)
        klaviyo_url = f"http://{LOOPBACK}:{klaviyo}"
        with (
            start_ours(logs, klaviyo_url) as ours,
            start_ours(logs, klaviyo_url, api_version="v3") as ours_v3,
            start_ours(logs, klaviyo_url, module="bench.without_handler") as without,
            reference_server(logs) as reference,
        ):
            us = Target("ours", ours.port, ours.pid)
            # The webhook's revision is the service's setting, not the request's: one at v3.
            us_v3 = Target("ours at v3", ours_v3.port, ours_v3.pid)
            bare = Target("without its handler", without.port, without.pid)
            tracks = clients.track_events(len(events))
            requests = {
                s: [
                    loadgen.request_bytes(s.endpoint, b)
                    for b in bodies(
                        s.endpoint, tracks if s.track else events, s.batch, s.api_version
                    )
                ]
                for s in (row.scenario for row in rows)
            }
            # The one-event rows send the same bodies: one pass fills the instrument's cache.
            if primer := next((row.scenario for row in rows if row.measures_bare), None):
                progress("without its handler: each one-event body once, to fill its cache ...")
                if failed := uvloop.run(loadgen.once(LOOPBACK, without.port, requests[primer])):
                    progress(f"without its handler: {failed} of those answers were not 200")
            for round_number in range(1, rounds + 1):
                for row in rows:
                    s = row.scenario
                    payloads = requests[s]
                    step = f"round {round_number}/{rounds}: {s.name}:"
                    progress(f"{step} this service ...")
                    webhook_v3 = s.endpoint == WEBHOOK and s.api_version == "v3"
                    row.ours.append(measure(us_v3 if webhook_v3 else us, s, payloads, seconds))
                    if reference is not None and s.compared:
                        progress(f"{step} reference ...")
                        row.reference.append(measure(reference, s, payloads, seconds))
                    if row.measures_bare:
                        progress(f"{step} this service without its handler ...")
                        row.bare.append(measure(bare, s, payloads, seconds))
                    if s.track:
                        progress(f"{step} the floor, a raw aiohttp client ...")
                        floor = clients.run_client(
                            "aiohttp", klaviyo, s.api_version, FLOOR_IN_FLIGHT, seconds
                        )
                        row.floor.append(floor.cpu_us)
    return Run(rows, limit, reference_version())


def _mean(values: list[float]) -> float:
    return statistics.fmean(values)


def summary(measured: list[Measured]) -> Measured:
    """The rounds of one side averaged (events/s, p50, p99); errors summed; RSS at its peak."""
    cpu = [m.cpu_us_per_event for m in measured if m.cpu_us_per_event is not None]
    rss = [m.peak_rss_mb for m in measured if m.peak_rss_mb is not None]
    return Measured(
        _mean([m.events_per_second for m in measured]),
        _mean([m.p50_ms for m in measured]),
        _mean([m.p99_ms for m in measured]),
        sum(m.errors for m in measured),
        _mean(cpu) if cpu else None,
        max(rss) if rss else None,
    )


def table(run: Run) -> str:
    lines = [
        "| scenario | events/s | p50 ms | p99 ms | CPU us/event | peak RSS MB "
        "| reference events/s | p50 ms | p99 ms | peak RSS MB | ratio events/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in run.rows:
        ours = summary(row.ours)
        cells = [
            row.scenario.name,
            f"{ours.events_per_second:,.0f}" + (f" ({ours.errors} non-200)" if ours.errors else ""),
            f"{ours.p50_ms:.2f}",
            f"{ours.p99_ms:.2f}",
            f"{ours.cpu_us_per_event:.0f}" if ours.cpu_us_per_event is not None else "-",
            f"{ours.peak_rss_mb:.0f}" if ours.peak_rss_mb is not None else "-",
        ]
        if row.reference:
            ref = summary(row.reference)
            cells += [
                f"{ref.events_per_second:,.0f}"
                + (f" ({ref.errors} non-200)" if ref.errors else ""),
                f"{ref.p50_ms:.2f}",
                f"{ref.p99_ms:.2f}",
                f"{ref.peak_rss_mb:.0f}" if ref.peak_rss_mb is not None else "-",
                f"**{ours.events_per_second / ref.events_per_second:.2f}x**",
            ]
        else:
            reason = "no reference given" if row.scenario.compared else "the reference has none"
            cells += ["-", "-", "-", "-", reason]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ceiling_lines(run: Run) -> list[str]:
    lines = []
    first = next((r for r in run.rows if r.scenario == Scenario(PROCESSOR, 1, 1)), None)
    for (batch, connections), rate in sorted(run.ceiling.items()):
        line = f"- {batch} event(s)/request, {connections} connection(s): {rate:,.0f} requests/s"
        if first is not None and (batch, connections) == (1, 1):
            ours = summary(first.ours).events_per_second
            line += f" (this service: {ours / rate:.0%} of it)"
        lines.append(line)
    return lines


def delivery_lines(run: Run) -> list[str]:
    """Issue 26's delivery goal: the service's CPU per delivered event over a raw client's."""
    rows = [row for row in run.rows if row.floor]
    if not rows:
        return []
    lines = [
        "| delivery row | this service, CPU us/event (rounds) | raw aiohttp client, CPU us/request "
        f"({FLOOR_IN_FLIGHT} in flight; rounds) | ratio | goal <= {DELIVERY_GOAL}x |",
        "|---|---:|---:|---:|---|",
    ]
    for row in rows:
        ours = [m.cpu_us_per_event for m in row.ours if m.cpu_us_per_event is not None]
        if not ours:
            continue
        ratio = _mean(ours) / _mean(row.floor)
        verdict = "met" if ratio <= DELIVERY_GOAL else f"{ratio / DELIVERY_GOAL:.2f}x over"
        lines.append(
            f"| {row.scenario.name} | {_mean(ours):.0f} ({_span(ours)}) "
            f"| {_mean(row.floor):.0f} ({_span(row.floor)}) | **{ratio:.2f}x** | {verdict} |"
        )
    return lines


def _span(values: list[float]) -> str:
    return f"{min(values):.0f}-{max(values):.0f}"


def budget_lines(run: Run) -> list[str]:
    """What the goals leave the processor's handler at one event a request, from this run.

    A request's time is 1 / (requests/s): at one connection its round trip, at eight the
    service's time per request under load. The handler's share is the service's time less
    the time of the service without it; the time a goal allows a request, less the latter, is
    what the goal leaves it."""
    lines = []
    for row in run.rows:
        if not row.bare:
            continue
        ours = summary(row.ours).events_per_second
        bare = summary(row.bare).events_per_second
        parts = [
            f"- {row.scenario.connections} connection(s): this service {ours:,.0f} requests/s, "
            f"without its handler {bare:,.0f}; the handler takes {_us(ours) - _us(bare):.0f} us"
        ]
        if row.reference:
            reference = summary(row.reference).events_per_second
            parts.append(_left("2x the reference", 2 * reference, bare))
        if row.scenario.connections == 1 and (1, 1) in run.ceiling:
            parts.append(_left("80% of the ceiling", 0.8 * run.ceiling[(1, 1)], bare))
        lines.append("; ".join(parts) + ".")
    return lines


def _us(per_second: float) -> float:
    return 1e6 / per_second


def _left(goal: str, rate: float, bare: float) -> str:
    left = _us(rate) - _us(bare)
    if left <= 0:
        return f"{goal} ({rate:,.0f}/s) leaves it nothing: the service without it is slower"
    return f"{goal} ({rate:,.0f}/s) leaves it {left:.0f} us"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", default=None, help="run scenarios whose name contains this")
    args = parser.parse_args()
    scenarios = tuple(s for s in SCENARIOS if args.only is None or args.only in s.name)
    run = run_all(args.seconds, lambda line: print(line, flush=True), scenarios, args.rounds)
    print(table(run))
    print("\n".join(delivery_lines(run)))
    print("\n".join(ceiling_lines(run)))
    print("\n".join(budget_lines(run)))


if __name__ == "__main__":
    main()
