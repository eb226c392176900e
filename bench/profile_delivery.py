"""Where `/v1/events` spends its CPU while delivering: py-spy on `serve` under the delivery rows.

    .venv/bin/python bench/profile_delivery.py [--api-version v1] [--seconds 10] [--top 40]

The service runs as ``make bench`` runs it (``klaviyo-destination serve``, logging on, Klaviyo
the load generator's canned server, client-side rate limits raised); the load generator sends
100 corpus track events a request on 4 connections while ``py-spy record`` samples the service
(``--nonblocking``, 250 Hz, idle frames left out). Printed: the functions with the most samples
on the stack (inclusive) and at the top of it (self), as a share of all samples, and the CPU the
service spent per delivered event over the same seconds.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import psutil
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import clients, loadgen
from bench.bench_service import WEBHOOK, bodies, start_ours
from support.processes import LOOPBACK


def _frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rpartition(" ")
    return stack.split(";"), int(count)


def summarise(raw: Path, top: int) -> None:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    roots: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        frames, count = _frames(line)
        total += count
        own[frames[-1]] += count
        roots[frames[0]] += count
        for frame in set(frames):
            inclusive[frame] += count
    print("stacks' roots:", ", ".join(f"{f} {n / total:.1%}" for f, n in roots.most_common(4)))
    for title, counter in (("inclusive", inclusive), ("self", own)):
        print(f"\n{title} (share of {total} samples)")
        for frame, count in counter.most_common(top):
            print(f"{count / total:6.1%}  {frame}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-version", default="v1")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    events = clients.track_events(1000)
    payloads = [
        loadgen.request_bytes(WEBHOOK, b) for b in bodies(WEBHOOK, events, 100, args.api_version)
    ]
    spy = Path(sys.executable).with_name("py-spy")
    with tempfile.TemporaryDirectory(prefix="profile-") as folder, loadgen.canned_server() as k:
        logs = Path(folder)
        url = f"http://{LOOPBACK}:{k}"
        with start_ours(logs, url, api_version=args.api_version) as ours:
            drive = loadgen.run(
                LOOPBACK, ours.port, payloads, connections=args.connections, seconds=1
            )
            uvloop.run(drive)  # warm
            raw = logs / "profile.txt"
            argv = [
                str(spy), "record", "--pid", str(ours.pid), "--format", "raw", "--rate", "250",
                "--nonblocking", "--duration", str(int(args.seconds)), "--output", str(raw),
            ]  # fmt: skip
            recorder = threading.Thread(
                target=subprocess.run,
                args=(argv,),
                kwargs={"check": True, "capture_output": True},
            )
            process = psutil.Process(ours.pid)
            before = sum(process.cpu_times()[:2])
            recorder.start()
            result = uvloop.run(
                loadgen.run(
                    LOOPBACK,
                    ours.port,
                    payloads,
                    connections=args.connections,
                    seconds=args.seconds - 0.5,
                    warmup=0.0,
                )
            )
            cpu = sum(process.cpu_times()[:2]) - before
            recorder.join()
            delivered = result.requests * 100
            print(
                f"{delivered:,} events delivered, {result.errors} non-200 answers; "
                f"{cpu / delivered * 1e6:.0f} us of CPU per event (py-spy's own cost included)"
            )
            summarise(raw, args.top)


if __name__ == "__main__":
    main()
