"""Events per second through the pure mapping, validation included, on one core.

    make bench      # or: .venv/bin/python bench/bench_mapping.py [--events 1000] [--rounds 20]

Reports two figures for the same deterministic 1,000-event mix (bench/corpus.py):
``transform()`` on parsed events (validation + plan), and bytes in to JSON bytes out
(orjson decode, transform, encode), which is what a request handler pays.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.corpus import CONFIG, corpus
from klaviyo_destination.mapping import transform
from klaviyo_destination.rudder import parse_config


def _rate(count: int, seconds: list[float]) -> tuple[float, float]:
    rates = [count / s for s in seconds]
    return statistics.median(rates), max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    events = corpus(args.events)
    raw = [orjson.dumps(e) for e in events]
    config = parse_config(CONFIG)
    size = sum(map(len, raw)) / len(raw)
    print(f"corpus: {len(events)} events, {size:,.0f} bytes each on average")

    plan_times, wire_times = [], []
    for round_number in range(args.rounds):
        start = time.perf_counter()
        for message in events:
            transform(message, config)
        plan_times.append(time.perf_counter() - start)

        start = time.perf_counter()
        for body in raw:
            orjson.dumps([r.as_dict() for r in transform(orjson.loads(body), config)])
        wire_times.append(time.perf_counter() - start)
        print(f"  round {round_number + 1}/{args.rounds}", end="\r", file=sys.stderr)

    median, best = _rate(len(events), plan_times)
    print(
        f"transform() (validate + plan):        {median:>10,.0f} events/s median, {best:,.0f} best"
    )
    median, best = _rate(len(events), wire_times)
    print(
        f"bytes -> transform() -> JSON bytes:    {median:>10,.0f} events/s median, {best:,.0f} best"
    )


if __name__ == "__main__":
    main()
