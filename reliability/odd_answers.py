"""Odd answers from Klaviyo, one at a time, against the service with its default settings.

Starts the emulator and the service (compose's commands, on loopback), and for each odd answer
(issue 15, items 5 and 6) injects it into the emulator once, sends one track event to
``POST /v1/events`` and prints what the caller got (status, ``Retry-After``, the event's
result), how long it took and the service's peak RSS (``VmHWM``) during the request; then,
after the fault is gone, whether the same event is delivered. The 300 MB answer is what took
the service to 1.2 GB before ``MAX_ANSWER_BYTES``; the day-long ``Retry-After`` is what held an
endpoint for a day before ``MAX_RETRY_AFTER`` (the run waits that cap out, 60 s by default:
``--cap`` sets a shorter one for the service).

``python -m reliability.odd_answers [--cap 60]``
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any, Final

import httpx

from support.emulator_control import EmulatorControl
from support.servers import Server, running

ODD_ANSWERS: Final[dict[str, dict[str, Any]]] = {
    "300 MB answer (applied)": {"status": 202, "after_processing": True, "body_size": 300 * 2**20},
    "corrupt gzip answer (applied)": {
        "status": 202,
        "after_processing": True,
        "body": "not gzip",
        "headers": {"Content-Encoding": "gzip"},
    },
    "redirect loop (302 to itself)": {
        "status": 302,
        "headers": {"Location": "/api/events"},
        "count": 10,
    },
    "429 with Retry-After: 86400": {"status": 429, "retry_after": 86400},
}


def _write(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _event(n: int) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Signed Up",
        "userId": f"odd-{n}",
        "messageId": f"odd-{n}",
        "properties": {},
        "context": {"traits": {"email": f"odd-{n}@example.com"}},
    }


def _attempt(service: httpx.Client, server: Server, event: dict[str, Any]) -> str:
    server.reset_peak_rss()
    started = time.monotonic()
    response = service.post("/v1/events", json=event)
    took = time.monotonic() - started
    result = response.json().get("results", [{}])[0] if response.status_code != 500 else {}
    error = (result.get("error") or {}).get("message", "")
    return (
        f"HTTP {response.status_code} Retry-After {response.headers.get('Retry-After', '-')}, "
        f"event {result.get('status', '-')} in {took:.2f} s, peak RSS "
        f"{server.peak_rss_mb():.0f} MB{f' ({error[:90]})' if error else ''}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reliability.odd_answers", description=__doc__)
    parser.add_argument("--cap", type=float, default=60.0, help="MAX_RETRY_AFTER (s)")
    args = parser.parse_args(argv)
    env = {"MAX_RETRY_AFTER": str(args.cap)}
    with running(env) as servers, httpx.Client(base_url=servers.emulator.url) as ctl:
        emulator = EmulatorControl(ctl)
        headers = servers.auth
        with httpx.Client(base_url=servers.service.url, headers=headers, timeout=90) as service:
            service.post("/v1/events", json=_event(0)).raise_for_status()  # warm up
            _write(f"Service RSS after one event: {servers.service.rss_kib() / 1024:.0f} MB")
            for n, (name, fault) in enumerate(ODD_ANSWERS.items(), start=1):
                emulator.reset()
                emulator.rate_limits(enabled=False)
                emulator.fault(**fault, path="/api/events")
                _write(
                    f"{name}:\n  with the fault:  {_attempt(service, servers.service, _event(n))}"
                )
                emulator.clear_faults()
                if "Retry-After" in name:
                    time.sleep(args.cap)
                _write(f"  fault gone:      {_attempt(service, servers.service, _event(n))}")
        emulator.rate_limits(enabled=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
