"""``make bench``: every benchmark, one progress line per step, then ``docs/benchmarks.md``.

    REFERENCE_DIR=/tmp/reference/rt .venv/bin/python bench/run.py [--seconds 3] [--rounds 4]

(a) the pure mapping in this process; (b) the HTTP service beside RudderStack's transformer
(``REFERENCE_DIR`` or ``REFERENCE_URL``; without one, no ratio) and a do-nothing ASGI app, all
driven by this process; (c) delivery to the emulator with 50 ms of upstream latency. The tables
are printed and written into docs/benchmarks.md, with ``bench/optimisations.md`` (what was
changed, each with its before/after figures) appended.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import timeit
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bench_delivery, bench_mapping, bench_service
from bench import sections as kept_sections

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
OPTIMISATIONS = Path(__file__).with_name("optimisations.md")


def _say(line: str) -> None:
    print(line, flush=True)


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("uvicorn", "uvloop", "httptools", "fastapi", "pydantic", "orjson")
    )
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, {versions}; "
        "klaviyo_destination: pure Python; "
        f"load average at the start {os.getloadavg()[0]:.2f}; "
        f"interpreter speed {_interpreter_speed():.1f} us for `sum(range(1000))`"
    )


def _interpreter_speed() -> float:
    """A yardstick for comparing runs: a CPU's model name does not tell machines apart (the
    same code did a one-event request in process in 97 us in one session and in 260 us in the
    next, both on a 2-vCPU "Intel(R) Xeon(R) Processor")."""
    timer = timeit.Timer("sum(range(1000))")
    loops, _ = timer.autorange()
    return min(timer.repeat(5, loops)) / loops * 1e6


def document(sections: list[str], rounds: int) -> str:
    head = f"""# Benchmarks

Written by `make bench` (`bench/run.py`) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; every figure
in (a) to (c) is from that one run; the tables of what was optimised, at the end, carry their
own dated before/after measurements. Machine: {machine()}.

**Corpus** (`support/events.py`, seed 20230222): 1,000 events of about 1.9 kB of JSON, track
(ecommerce and custom), screen and group, each with a full RudderStack JS-SDK `context`; no
identify (it calls Klaviyo while transforming, which would measure Klaviyo). rudder-server jobs
carry realistic `metadata` and the whole `destination`, as rudder-server sends them. Rows "at
v3" send the same jobs with the destination's `Config.apiVersion` `v3` (Klaviyo revision
2026-04-15, RudderStack's newer path), to both servers.

**Method** (`bench/bench_service.py`). This service runs as production runs it,
`klaviyo-destination serve` with its default settings and logging (one JSON line per request, to
a file); RudderStack's transformer runs from a built checkout as one Node process
(`CLUSTER_ENABLED=false LOG_LEVEL=error`). The load generator (`bench/loadgen.py`: raw asyncio
streams on uvloop, keep-alive HTTP/1.1, closed loop) is the benchmark's own process and drives
both with the same requests, alternating the two servers scenario by scenario over
{rounds} rounds (each 0.5 s warm-up, then the measured seconds); the figures are the
rounds' means. CPU per event is the server's user+system time over the events it answered; peak
RSS is `VmHWM`, reset per measurement. Klaviyo is a canned server answering at once, so the
`/v1/events` rows measure the service (its client-side rate limits raised out of the way). The
ceiling is a do-nothing ASGI app under the same uvicorn, uvloop and httptools, in the same run.
"""
    return head + "\n" + "\n\n".join(sections) + "\n"


def _delivery_section(service: bench_service.Run) -> str:
    lines = bench_service.delivery_lines(service)
    if not lines:
        return ""
    return (
        "Delivery cost (issue 26): the CPU `/v1/events` spends per delivered event (its rows "
        "above: the corpus's track events, Klaviyo canned), over the CPU a raw aiohttp client "
        "(`bench/clients.py`, its own process, uvloop) spends per request POSTing the bodies the "
        "service sends for the same events to the same canned server, measured in the same "
        "rounds:\n\n" + "\n".join(lines)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    # Four, not two: on a shared 2-vCPU machine two rounds' ratios moved by up to a fifth.
    parser.add_argument("--rounds", type=int, default=4, help="alternations of the two servers")
    parser.add_argument("--mapping-rounds", type=int, default=10)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    started = time.monotonic()
    _say(f"machine: {machine()}")
    _say("mapping: plan_event() over 1,000 events ...")
    plan_rate, wire_rate, size = bench_mapping.measure(1000, args.mapping_rounds)
    service = bench_service.run_all(args.seconds, _say, rounds=args.rounds)
    delivery = bench_delivery.run(_say)

    reference = service.reference or "none given (REFERENCE_DIR or REFERENCE_URL): no ratio"
    sections = [
        f"## (a) The mapping alone, one core\n\n| path | events/s |\n|---|---:|\n"
        f"| `plan_event()` (validate + plan), events of {size:,.0f} bytes | {plan_rate:,.0f} |\n"
        f"| bytes -> dry run -> JSON bytes | {wire_rate:,.0f} |",
        f"## (b) The HTTP service beside the reference\n\nReference: {reference}.\n\n"
        + bench_service.table(service)
        + "\n\n"
        + _delivery_section(service)
        + "\n\nCeiling of the HTTP stack (do-nothing ASGI app, same uvicorn), requests/s:\n\n"
        + "\n".join(bench_service.ceiling_lines(service))
        + "\n\nWhat the goals leave the processor's handler at one event a request: the service "
        "beside itself without its handler (`bench/without_handler.py`: the connection, the "
        "edge, the lane, the body read, the log line and the metrics as in production; a body "
        "it has seen answered from a cache), in the same rounds. A request's time is "
        "1 / (requests/s):\n\n" + "\n".join(bench_service.budget_lines(service)),
        "## (c) Delivery through `/v1/events`, 50 ms upstream latency\n\n"
        + bench_delivery.table(delivery),
    ]
    if OPTIMISATIONS.exists():
        sections.append(OPTIMISATIONS.read_text(encoding="utf-8").strip())
    text = document(sections, args.rounds) + kept_sections.kept(DOC)
    _say("")
    _say(text)
    if not args.no_write:
        DOC.write_text(text, encoding="utf-8")
        _say(f"written: {DOC.relative_to(ROOT)}")
    _say(f"total {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
