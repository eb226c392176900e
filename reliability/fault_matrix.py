"""Fault matrix: mixed events through the real service while the emulator misbehaves.

For each fault kind the emulator is emptied, the fault is injected into about 30% of the
Klaviyo requests, and a seeded stream of identify/track/screen/group events (plus ~5% the
mapping rejects) is sent to ``POST /v1/events`` as ``{"batch": [...]}`` requests. The sender
works like rudder-server with its per-user barrier: users are split over a few lanes, each lane
sends its batches one after another, and a batch answered 429/503 is resent (by default only
its events whose result is ``failed``; ``--resend batch`` resends all of them) until no event
is ``failed``. Then the emulator's state is compared with what the answers claimed:

* **delivered** events must be in Klaviyo's state: the event stored under its ``unique_id``
  (= messageId), the profile present with the attributes of the user's last identify, the
  list membership present;
* **rejected** events must carry a reason (code and message; for Klaviyo's verdicts its status
  and ``errors[]``) and must not be stored;
* **duplicated** counts events stored twice for one ``unique_id`` and users with two profiles:
  must be 0. The emulator dedups on (profile, metric, unique_id) and answers 202 either way,
  so "Klaviyo accepted this event more than once and deduplicated it" is counted separately
  (``accepted twice``) from ``GET /__emulator/requests``: every 202 to ``POST /api/events``,
  plus every request that was processed and then lost its answer (drop after processing);
* **lost** counts delivered events whose effect is missing, and events still ``failed`` when
  the sender gave up: must be 0.

``python -m reliability.fault_matrix`` (``make reliability``) runs 2,000 events per fault; the
matrix itself is in ``support/fault_matrix/``, which ``tests/integration/test_fault_matrix.py``
runs with 200.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

from support.fault_matrix.faults import EXTRA_FAULTS, FAULT_SHARE, FAULTS
from support.fault_matrix.report import problems, reasons, table
from support.fault_matrix.running import FAST_SERVICE_ENV, SEED, run_matrix
from support.fault_matrix.sending import BATCH_SIZE, LANES
from support.servers import running


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reliability.fault_matrix", description=__doc__)
    parser.add_argument("--events", type=int, default=2000, help="events per fault (2000)")
    parser.add_argument("--resend", choices=("failed", "batch"), default="failed")
    parser.add_argument("--max-wait", type=float, default=0.2, help="cap on Retry-After (s)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--only", help="run the faults whose name contains this text")
    parser.add_argument("--extra", action="store_true", help="add the slow opt-in rows")
    args = parser.parse_args(argv)
    candidates = FAULTS + EXTRA_FAULTS if args.extra else FAULTS
    faults = [f for f in candidates if args.only is None or args.only.lower() in f.name.lower()]
    _write(
        f"Fault matrix: {args.events} events per fault, batches of {BATCH_SIZE}, {LANES} lanes, "
        f"faults in ~{FAULT_SHARE:.0%} of Klaviyo requests, resend={args.resend}, "
        f"seed={args.seed}"
    )
    _write("Service: " + " ".join(f"{k}={v}" for k, v in FAST_SERVICE_ENV.items()))
    started = time.monotonic()
    with running(FAST_SERVICE_ENV) as servers:
        rows = asyncio.run(
            run_matrix(
                servers.service.url,
                servers.emulator.url,
                events_per_fault=args.events,
                faults=faults,
                resend=args.resend,
                max_wait=args.max_wait,
                seed=args.seed,
                headers=servers.auth,
                progress=lambda row: _write(f"  done: {row.fault} in {row.seconds:.1f} s"),
            )
        )
    _write("")
    _write(table(rows))
    _write("")
    _write(reasons(rows))
    if any(row.problems for row in rows):
        _write("\nProblems:\n" + problems(rows))
    verdict = all(row.ok for row in rows)
    _write(f"\nTotal {time.monotonic() - started:.1f} s. " + ("PASS" if verdict else "FAIL"))
    return 0 if verdict else 1


if __name__ == "__main__":
    raise SystemExit(main())
