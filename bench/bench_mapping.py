"""Events per second through the pure mapping, validation included, on one core.

    .venv/bin/python bench/bench_mapping.py [--events 1000] [--rounds 20]   # part of make bench

Reports two figures for the same deterministic 1,000-event mix (support/events.py):
``plan_event()`` on parsed events (validation + plan), and bytes in to JSON bytes out
(orjson decode, the dry run, encode), which is what the ``/v1/transform`` handler pays.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from klaviyo_destination.api.dry_run import dry_run
from klaviyo_destination.ingest import parse_config
from klaviyo_destination.phones import PhoneRule
from klaviyo_destination.pipeline import plan_event
from support.events import CORPUS_CONFIG, corpus

BASE_URL = "https://a.klaviyo.com"


def _rate(count: int, seconds: list[float]) -> tuple[float, float]:
    rates = [count / s for s in seconds]
    return statistics.median(rates), max(rates)


def measure(count: int = 1000, rounds: int = 20) -> tuple[float, float, float]:
    """Median events/s of ``plan_event()`` and of bytes -> JSON bytes; average event size."""
    events = corpus(count)
    raw = [orjson.dumps(e) for e in events]
    config = parse_config(CORPUS_CONFIG)
    plan_times, wire_times = [], []
    for round_number in range(rounds):
        start = time.perf_counter()
        for message in events:
            plan_event(message, config)
        plan_times.append(time.perf_counter() - start)

        start = time.perf_counter()
        for body in raw:
            orjson.dumps(dry_run([orjson.loads(body)], config, BASE_URL, phones=PhoneRule()))
        wire_times.append(time.perf_counter() - start)
        print(f"  round {round_number + 1}/{rounds}", end="\r", file=sys.stderr)
    size = sum(map(len, raw)) / len(raw)
    return _rate(len(events), plan_times)[0], _rate(len(events), wire_times)[0], size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    plan_rate, wire_rate, size = measure(args.events, args.rounds)
    print(f"corpus: {args.events} events, {size:,.0f} bytes each on average")
    print(f"plan_event() (validate + plan):       {plan_rate:>10,.0f} events/s median")
    print(f"bytes -> dry run -> JSON bytes:        {wire_rate:>10,.0f} events/s median")


if __name__ == "__main__":
    main()
