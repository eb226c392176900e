"""Microseconds per event to validate events, on one core: what ``ingest.parse`` costs.

    .venv/bin/python bench/bench_parse.py [--events 1000] [--rounds 15]

Three ways in, over the corpus (support/events.py): the ``/v1`` body path, bytes to typed events
(``parse_json``, ``events_of``, then ``parse`` per event) at 1 and at 100 events a body, and the
protocol path, one job's message (a dict orjson parsed) to a typed event. Where the event
models exist it also times pydantic-core validating a whole body from its bytes
(``validate_json``, a failing event turned into its own refusal by a wrap validator), the
design measured and not taken (bench/optimisations.md). The script runs unchanged against an
older source tree (``PYTHONPATH=<tree>/src``), which is how the hand-written checks were timed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
from pydantic import (
    Discriminator,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from klaviyo_destination import ingest
from klaviyo_destination.ingest import events_of, parse, parse_config, parse_json
from klaviyo_destination.ingest.events import Event, Group, Identify, Screen, Track
from support.events import CORPUS_CONFIG, corpus

MAX_DEPTH = 64


def _per_event(run: Callable[[], object], count: int, rounds: int) -> tuple[float, float]:
    """Median and best microseconds per event over ``rounds`` runs of ``run``."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) / count * 1e6)
    return statistics.median(times), min(times)


def _or_refusal(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError as exc:
        return exc


def _validate_json_runs(
    single: list[bytes], batches: list[bytes]
) -> dict[str, Callable[[], object]]:
    """pydantic-core from the bytes; none where the events are not models (the hand checks)."""
    if not hasattr(ingest, "EVENT"):
        return {}
    one = TypeAdapter(Annotated[Event, WrapValidator(_or_refusal)])
    many = TypeAdapter(list[Annotated[Event, WrapValidator(_or_refusal)]])
    return {
        "validate_json, 1 event a body": lambda: [one.validate_json(b) for b in single],
        "validate_json, 100 events a body": lambda: [many.validate_json(b) for b in batches],
    }


def _copying(model: type[Any]) -> Any:
    """``model`` with its JSON objects typed ``dict[str, Any]``, which pydantic validates by
    copying (``context``'s own two checks left out, so this variant does less than the real)."""
    objects = dict[str, Any] | None
    fields = ("traits", "context", "properties", "integrations")
    namespace = {"__annotations__": dict.fromkeys(fields, objects), **dict.fromkeys(fields)}
    return Annotated[type(model.__name__, (model,), namespace), Tag(model.__name__.lower())]


def _tag(value: Any) -> Any:
    return value["type"].lower() if isinstance(value.get("type"), str) else None


def _models_runs(events: list[Any]) -> dict[str, Callable[[], object]]:
    """The models without ``parse``'s checks around them, and a variant that copies objects."""
    if not hasattr(ingest, "EVENT"):
        return {}
    copying: Any = Annotated[
        _copying(Identify) | _copying(Track) | _copying(Screen) | _copying(Group),
        Discriminator(_tag),
    ]
    exact, copied = ingest.EVENT, TypeAdapter[Any](copying)
    return {
        "protocol, the models alone": lambda: [exact.validate_python(e) for e in events],
        "protocol, objects copied (dict[str, Any])": lambda: [
            copied.validate_python(e) for e in events
        ],
    }


def measure(count: int = 1000, rounds: int = 15) -> list[tuple[str, float, float]]:
    """(way in, median, best) in microseconds per event."""
    events = corpus(count)
    config = parse_config(CORPUS_CONFIG)
    single = [orjson.dumps(event) for event in events]
    batches = [orjson.dumps({"batch": events[i : i + 100]}) for i in range(0, count, 100)]
    arrays = [orjson.dumps(events[i : i + 100]) for i in range(0, count, 100)]

    def from_bytes(bodies: list[bytes]) -> None:
        for body in bodies:
            for item in events_of(parse_json(body, max_depth=MAX_DEPTH), max_events=100).items:
                parse(item, config)

    runs: dict[str, Callable[[], object]] = {
        "/v1 body, 1 event a body": lambda: from_bytes(single),
        "/v1 body, 100 events a body": lambda: from_bytes(batches),
        "protocol, one message (dict)": lambda: [parse(event, config) for event in events],
        **_models_runs(events),
        **_validate_json_runs(single, arrays),
    }
    rows = []
    for name, run in runs.items():
        run()  # warm up
        rows.append((name, *_per_event(run, count, rounds)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    print(f"{'way in':42} {'median':>8} {'best':>8}  (us per event)")
    for name, median, best in measure(args.events, args.rounds):
        print(f"{name:42} {median:8.2f} {best:8.2f}")


if __name__ == "__main__":
    main()
