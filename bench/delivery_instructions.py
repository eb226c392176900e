"""Instructions per delivered event on ``/v1/events``, counted by callgrind: the delivery rows'
path (100 corpus track events a request, Klaviyo the canned server on loopback), repeatable
where the served rows' timings move by a fifth with the machine's other work.

    .venv/bin/python bench/delivery_instructions.py [--api-version v1]

Runs this file under ``valgrind --tool=callgrind`` twice, delivering 10 and then 20 requests,
and prints the difference over the events of the 10 requests between: start-up, imports, the
pool's first connections and the first pass over the 10 bodies (what the process remembers
of them, as ``serve`` does after its first seconds: the phone verdicts, the URLs) cancel out.
A request goes as ``serve`` takes it: HTTP bytes fed to the connection ``serve`` uses
(``profile_request.py``'s ``_Connection``: uvicorn's protocol, the edge, the lane, the log
line to /dev/null) of the app ``serve`` builds, with the settings of the delivery rows
(client-side rate limits raised), and the events delivered by aiohttp to the load
generator's canned server (its own process, not counted). Only the service's user-space work
is counted: the kernel's share of a served request (its system calls) is not.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import uvloop
from asgi_lifespan import LifespanManager
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import clients, loadgen
from bench.bench_service import UNLIMITED, WEBHOOK, bodies
from bench.instructions import callgrind_total
from bench.profile_request import _Connection
from klaviyo_destination import cli, logs, serving
from klaviyo_destination.app import create_app
from klaviyo_destination.settings import Settings
from support.processes import LOOPBACK

FEW, MANY = 10, 20
BATCH = 100


async def _requests(port: int, api_version: str, count: int) -> None:
    settings = Settings(
        klaviyo_private_api_key=SecretStr("pk_bench"),
        klaviyo_base_url=f"http://{LOOPBACK}:{port}",
        klaviyo_api_version=api_version,
        events_rate_burst=int(UNLIMITED["EVENTS_RATE_BURST"]),
        events_rate_steady=int(UNLIMITED["EVENTS_RATE_STEADY"]),
        profiles_rate_burst=int(UNLIMITED["PROFILES_RATE_BURST"]),
        profiles_rate_steady=int(UNLIMITED["PROFILES_RATE_STEADY"]),
    )
    payloads = bodies(WEBHOOK, clients.track_events(1000), BATCH)
    app = serving.wrap(create_app(settings), settings)
    async with LifespanManager(app) as manager:
        cli.apply_process_policy()  # as serve does once the app has started
        connection = _Connection(app, manager._state, WEBHOOK)
        for index in range(count):
            await connection.request(payloads[index % len(payloads)])


def _counted(port: int, api_version: str, count: int) -> int:
    return callgrind_total(
        [__file__, "--api-version", api_version, "--port", str(port), "--run", str(count)]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-version", default="v1")
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--run", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run is not None:  # under callgrind
        stdout, sys.stdout = sys.stdout, open(os.devnull, "w")  # noqa: SIM115
        logs.configure(["pk_bench"], "INFO", json=True)  # the handler keeps /dev/null
        sys.stdout = stdout
        uvloop.run(_requests(args.port, args.api_version, args.run))
        return
    logging.disable(logging.CRITICAL)
    with loadgen.canned_server() as port:
        few = _counted(port, args.api_version, FEW)
        many = _counted(port, args.api_version, MANY)
    per_event = (many - few) / ((MANY - FEW) * BATCH)
    print(
        f"/v1/events at {args.api_version}, {BATCH} track events a request: "
        f"{per_event:,.0f} instructions an event delivered"
    )


if __name__ == "__main__":
    main()
