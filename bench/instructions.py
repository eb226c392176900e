"""Instructions per event of a protocol route's handler work, counted by callgrind: repeatable
to a fraction of a per cent on a busy machine, where timings move by a fifth.

    .venv/bin/python bench/instructions.py [--route processor] [--batch 100]

Runs this file under ``valgrind --tool=callgrind`` twice, handling 5 and then 25 requests
(``bench_service.bodies``: the corpus with rudder-server's metadata and whole destination per
job), and prints the difference over the events of the 20 requests between: start-up, imports
and the first requests' warm-up cancel out. What a request does is what the route does after
reading the body: ``parse_json``, the body's jobs and depth proof, planning, the items, and the
answer's ``orjson.dumps``, under the process policy ``serve`` sets (a frozen GC heap). The
service's connection, edge and log line are left out (``profile_request.py`` has them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_service import PROCESSOR, ROUTER, bodies, corpus_without_identify
from klaviyo_destination import cli
from klaviyo_destination.ingest.body import parse_json
from klaviyo_destination.js import JsonObject
from klaviyo_destination.klaviyo.facts import DEFAULT_BASE_URL
from klaviyo_destination.protocol.bodies import Limits, processor_body, router_body
from klaviyo_destination.protocol.front import Front
from klaviyo_destination.settings import Settings

FEW, MANY = 5, 25


async def _no_lookup(_body: JsonObject, _key: Any) -> tuple[int, Any]:
    raise AssertionError("the corpus has no identify")


async def _requests(route: str, batch: int, count: int) -> None:
    settings = Settings()
    front = Front(_no_lookup, Limits(settings.max_json_depth, settings.max_event_bytes))
    payloads = bodies(
        PROCESSOR if route == "processor" else ROUTER, corpus_without_identify(1000), batch
    )
    for index in range(count):
        raw = bytearray(payloads[index % len(payloads)])
        parsed = parse_json(raw, max_depth=None)
        if route == "processor":
            body = processor_body(
                parsed, compacted=False, size=len(raw), limits=front.limits, raw=raw
            )
            orjson.dumps(await front.processor(body, filter_code=False, base_url=DEFAULT_BASE_URL))
        else:
            body = router_body(parsed, compacted=False, size=len(raw), limits=front.limits, raw=raw)
            outputs = await front.router(body, filter_code=False, base_url=DEFAULT_BASE_URL)
            orjson.dumps({"output": outputs})


def _counted(route: str, batch: int, count: int) -> int:
    return callgrind_total([__file__, "--route", route, "--batch", str(batch), "--run", str(count)])


def callgrind_total(script: list[str]) -> int:
    """Instructions ``python script...`` executes under callgrind, its whole run."""
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
    argv += script
    # One hash seed for every run: string hashes decide dict and set layouts, so the counts.
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)  # noqa: S603
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no callgrind total in: {done.stderr[-500:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--route", choices=["processor", "router"], default="processor")
    parser.add_argument("--batch", type=int, default=100, help="events a request")
    parser.add_argument("--run", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run is not None:  # under callgrind
        cli.apply_process_policy()
        asyncio.run(_requests(args.route, args.batch, args.run))
        return
    few, many = _counted(args.route, args.batch, FEW), _counted(args.route, args.batch, MANY)
    per_event = (many - few) / ((MANY - FEW) * args.batch)
    print(f"{args.route}, {args.batch} event(s) a request: {per_event:,.0f} instructions an event")


if __name__ == "__main__":
    main()
