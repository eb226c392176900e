"""Connections to Klaviyo under load: how many the service opens, keeps and reuses.

    .venv/bin/python bench/connections.py [--seconds 4] [--source DIR] [NAME=VALUE ...]

``serve`` delivers the corpus's track events (100 a request, 4 requests in flight: up to 4 x
DELIVERY_CONCURRENCY exchanges at once) to the load generator's canned Klaviyo, with the settings
given (``MAX_CONNECTIONS=16``, say). Sampled every 0.1 s from the kernel's socket table
(``ss``): the established connections to Klaviyo; at the end, the connections the service
closed (its sockets in TIME-WAIT: each one a connection opened and not kept). Printed with the
events delivered and the service's CPU per event. ``--source`` runs another checkout's
``src`` (an older commit's copy, for a before/after).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import clients, loadgen
from bench.bench_service import UNLIMITED, WEBHOOK, bodies
from support.processes import LOOPBACK
from support.servers import start_service_with


def _sockets(port: int, state: str) -> int:
    """How many TCP sockets in ``state`` have ``port`` as their peer."""
    out = subprocess.run(  # noqa: S603
        ["ss", "-Htn", "state", state, "dport", f"= :{port}"],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return len([line for line in out.splitlines() if line.strip()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--source", default=None, help="a checkout's src to run instead")
    parser.add_argument("settings", nargs="*", help="NAME=VALUE for the service")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.settings)
    payloads = [
        loadgen.request_bytes(WEBHOOK, b) for b in bodies(WEBHOOK, clients.track_events(1000), 100)
    ]
    with tempfile.TemporaryDirectory(prefix="connections-") as folder, loadgen.canned_server() as k:
        env = {
            "KLAVIYO_PRIVATE_API_KEY": "pk_bench",
            "KLAVIYO_BASE_URL": f"http://{LOOPBACK}:{k}",
            **UNLIMITED,
            **extra,
        }
        if args.source:
            env["PYTHONPATH"] = args.source
        with start_service_with(env, Path(folder)) as service:
            established: list[int] = []
            done = threading.Event()

            def sample() -> None:
                while not done.is_set():
                    established.append(_sockets(k, "established"))
                    time.sleep(0.1)

            sampler = threading.Thread(target=sample)
            process = psutil.Process(service.pid)
            waiting_before = _sockets(k, "time-wait")
            cpu = sum(process.cpu_times()[:2])
            sampler.start()
            result = uvloop.run(
                loadgen.run(LOOPBACK, service.port, payloads, connections=4, seconds=args.seconds)
            )
            done.set()
            sampler.join()
            cpu = sum(process.cpu_times()[:2]) - cpu
            closed = _sockets(k, "time-wait") - waiting_before
    events = result.requests * 100
    seconds = args.seconds + 0.5
    print(
        f"{' '.join(args.settings) or 'defaults'}: {events / args.seconds:,.0f} events/s, "
        f"{cpu / (events * seconds / args.seconds) * 1e6:.0f} us CPU/event; connections to "
        f"Klaviyo established: max {max(established)}, median "
        f"{sorted(established)[len(established) // 2]}; closed by the service (TIME-WAIT) "
        f"{closed} in {seconds:.1f} s"
    )


if __name__ == "__main__":
    main()
