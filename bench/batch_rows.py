"""The protocol rows of ``make bench`` alone, for a quicker before/after than the whole run.

    REFERENCE_DIR=/tmp/reference/rt .venv/bin/python bench/batch_rows.py [--rounds 2]
        [--seconds 3] [--one-event]

The four batch rows (processor and router, 100 events a request, 1 and 8 connections) and with
``--one-event`` the two one-event processor rows, measured exactly as ``make bench`` measures
them (``bench_service.run_all``: the service as ``serve`` runs it, the reference beside it,
alternated scenario by scenario), printed as its table; nothing is written. Without
``REFERENCE_DIR`` (or ``REFERENCE_URL``) only this service's figures are printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_service import PROCESSOR, ROUTER, Scenario, budget_lines, run_all, table

BATCH_ROWS = (
    Scenario(PROCESSOR, 100, 1),
    Scenario(PROCESSOR, 100, 8),
    Scenario(ROUTER, 100, 1),
    Scenario(ROUTER, 100, 8),
)
ONE_EVENT_ROWS = (Scenario(PROCESSOR, 1, 1), Scenario(PROCESSOR, 1, 8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two servers")
    parser.add_argument("--one-event", action="store_true", help="the one-event rows too")
    args = parser.parse_args()
    scenarios = BATCH_ROWS + (ONE_EVENT_ROWS if args.one_event else ())
    run = run_all(args.seconds, lambda line: print(line, flush=True), scenarios, args.rounds)
    print(table(run))
    print("\n".join(budget_lines(run)))


if __name__ == "__main__":
    main()
