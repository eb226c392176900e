"""``make bench``: every benchmark, one progress line per scenario, then the tables.

    .venv/bin/python bench/run.py [--seconds 3] [--rounds 10]

(a) the pure mapping in this process; (b) the HTTP service in its own process(es), driven by
this one; (c) delivery to the emulator with 50 ms upstream latency; and the load generator's
own ceiling against a do-nothing server. Runs in about two minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bench_delivery, bench_mapping, bench_service


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
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per service scenario")
    parser.add_argument("--rounds", type=int, default=10, help="mapping rounds")
    args = parser.parse_args()
    started = time.monotonic()
    _say(f"machine: {machine()}")

    _say("mapping: plan_event() over 1,000 events ...")
    plan_rate, wire_rate, size = bench_mapping.measure(1000, args.rounds)
    service = bench_service.run_all(args.seconds, _say)
    _say("generator: ceiling against a do-nothing server ...")
    ceiling = bench_service.generator_ceiling(args.seconds)
    delivery = bench_delivery.run(_say)

    _say("")
    _say(f"(a) mapping, one core, corpus of 1,000 events of {size:,.0f} bytes on average")
    _say("| plan() path | events/s |\n|---|---:|")
    _say(f"| plan_event() (validate + plan) | {plan_rate:,.0f} |")
    _say(f"| bytes -> dry run -> JSON bytes | {wire_rate:,.0f} |")
    _say("\n(b) HTTP service (uvicorn, uvloop, httptools), load from a separate process")
    _say(bench_service.table(service))
    _say("\nload generator ceiling (same client, do-nothing server):")
    for batch, connections, rate in ceiling:
        _say(f"  {batch} event(s)/req, {connections} conn: {rate:,.0f} requests/s")
    _say("\n(c) delivery")
    _say(bench_delivery.table(delivery))
    _say(f"\ntotal {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
