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

``python -m reliability.fault_matrix`` (``make reliability``) runs 2,000 events per fault.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import httpx

from reliability.events import Planned, generate
from reliability.servers import FAST_SERVICE_ENV, running

#: The share of Klaviyo requests each fault is injected into.
FAULT_SHARE: Final = 0.3
SEED: Final = 20230222
BATCH_SIZE: Final = 50
LANES: Final = 8
MAX_ROUNDS: Final = 40
#: Klaviyo requests per event of the generated mix without faults (measured: 229 per 200).
REQUESTS_PER_EVENT: Final = 1.15
#: Latency for a read timeout (above the service's READ_TIMEOUT) and for a slow answer.
TIMEOUT_LATENCY_MS: Final = 800
SLOW_LATENCY_MS: Final = 250
#: Latency faults are global in the emulator, so they are switched on 30% of each period.
TICK_SECONDS: Final = 1.0
CLOUDFLARE_403: Final = (
    "<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head>"
    "<body><h1>Sorry, you have been blocked</h1></body></html>"
)
PERMANENT_CODES: Final = frozenset(
    {
        "klaviyo_rejected",
        "klaviyo_auth_rejected",
        "klaviyo_revision_retired",
        "klaviyo_profile_conflict",
    }
)
MAPPING_CODES: Final = frozenset({"invalid_event", "unsupported_event"})

Json = dict[str, Any]
Injection = Literal["none", "rate", "burst", "ticker"]
Resend = Literal["failed", "batch"]


@dataclass(frozen=True)
class Fault:
    """One row: how the fault is injected and what a dropped request did."""

    name: str
    injection: Injection
    spec: Json = field(default_factory=dict)
    #: The request was applied before its answer was lost (drop after processing).
    processed: bool = False
    #: Klaviyo's answer is final (410): rejections are expected, not retries.
    permanent: bool = False
    #: ticker: the fault is on for 30% of each period of this many seconds.
    period: float = TICK_SECONDS
    #: Requests the service gave up on (read timeout) are still applied later by Klaviyo.
    late_writes: bool = False


#: Opt-in rows (``--extra``): 30% of requests answered 429 + Retry-After: 1 in bursts keeps
#: the service's endpoints paused most of the time; 1,000 events take ~30 s.
EXTRA_FAULTS: Final[tuple[Fault, ...]] = (
    Fault("429 with Retry-After: 1 (bursts)", "burst", {"status": 429, "retry_after": 1}),
)


FAULTS: Final[tuple[Fault, ...]] = (
    Fault("none (control)", "none"),
    Fault("5xx random (503)", "rate", {"status": 503}),
    Fault("5xx bursts (500, 502)", "burst", {"status": 500}),
    # Klaviyo's window is closed 30% of the time: every request then gets 429 + Retry-After.
    # A 429 with Retry-After pauses the whole endpoint class in the service (Klaviyo's limits
    # are per account), so few requests meet the closed window. The period is not a multiple
    # of the Retry-After, so a retry does not land in the next closed window every time.
    Fault(
        "429 with Retry-After: 1 (window)",
        "ticker",
        {"status": 429, "retry_after": 1},
        period=2.0,
    ),
    Fault("429 without Retry-After", "rate", {"status": 429}),
    Fault(
        f"read timeout ({TIMEOUT_LATENCY_MS} ms)",
        "ticker",
        {"latency_ms": TIMEOUT_LATENCY_MS},
        late_writes=True,
    ),
    Fault(f"slow answer ({SLOW_LATENCY_MS} ms)", "ticker", {"latency_ms": SLOW_LATENCY_MS}),
    Fault("drop before processing", "burst", {"drop_connection": True}),
    Fault(
        "drop after processing",
        "burst",
        {"drop_connection": True, "after_processing": True},
        processed=True,
    ),
    Fault(
        "HTML 403 from a proxy",
        "rate",
        {"status": 403, "body": CLOUDFLARE_403, "content_type": "text/html; charset=UTF-8"},
    ),
    Fault("410 revision retired", "rate", {"status": 410}, permanent=True),
)


# --- sending ------------------------------------------------------------------------------


@dataclass
class Tracked:
    """One event and what the service said about it, across resends."""

    planned: Planned
    sends: int = 0
    status: str | None = None  # the last result's status: delivered, rejected or failed
    error: Json | None = None


@dataclass
class Traffic:
    answers: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0
    gave_up: int = 0


class Injector:
    """Puts one :class:`Fault` into the emulator: once, before every send, or on a timer."""

    def __init__(self, control: httpx.AsyncClient, fault: Fault, seed: int) -> None:
        self.control, self.fault, self.seed = control, fault, seed
        self._burst = itertools.cycle((500, 502))

    async def add(self, spec: Json) -> None:
        (await self.control.post("/__emulator/faults", json=spec)).raise_for_status()

    @contextlib.asynccontextmanager
    async def active(self) -> AsyncIterator[None]:
        fault = self.fault
        if fault.injection == "rate":
            await self.add(fault.spec | {"error_rate": FAULT_SHARE, "seed": self.seed})
        if fault.injection != "ticker":
            yield
            return
        ticker = asyncio.create_task(self._tick())
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            await self._off()

    async def before_batch(self, events: int) -> None:
        """A burst fault: as many failures as ~30% of the batch's requests, queued together.

        Only before a batch's first send: queueing more for every resend would add faults
        faster than the service, paused by a 429's Retry-After, can use them up.
        """
        if self.fault.injection != "burst":
            return
        spec = dict(self.fault.spec)
        if spec.get("status") == 500:
            spec["status"] = next(self._burst)
        # Faulted requests are retried, so 30% of all requests is 0.3/0.7 of the clean ones.
        share = FAULT_SHARE / (1 - FAULT_SHARE) * REQUESTS_PER_EVENT
        await self.add(spec | {"count": max(1, round(share * events))})

    async def _tick(self) -> None:
        """On for 30% of each period: a latency, or a status every request gets."""
        spec, period = self.fault.spec, self.fault.period
        while True:
            if "latency_ms" in spec:
                await self.add(spec)
            else:
                await self.add(spec | {"error_rate": 1.0, "seed": self.seed})
            await asyncio.sleep(FAULT_SHARE * period)
            await self._off()
            await asyncio.sleep((1 - FAULT_SHARE) * period)

    async def _off(self) -> None:
        if "latency_ms" in self.fault.spec:
            await self.add({"latency_ms": 0})
        else:
            (await self.control.delete("/__emulator/faults")).raise_for_status()


class Sender:
    """Sends one lane's batches in order, resending retryable events until none is left."""

    def __init__(
        self,
        service: httpx.AsyncClient,
        injector: Injector,
        traffic: Traffic,
        *,
        resend: Resend,
        max_wait: float,
    ) -> None:
        self.service, self.injector, self.traffic = service, injector, traffic
        self.resend, self.max_wait = resend, max_wait

    async def lane(self, batches: Iterable[list[Tracked]]) -> None:
        for batch in batches:
            await self._deliver(batch)

    async def _deliver(self, batch: list[Tracked]) -> None:
        pending = batch
        await self.injector.before_batch(len(batch))
        for _ in range(MAX_ROUNDS):
            wait = await self._send(pending)
            failed = [t for t in pending if t.status not in ("delivered", "rejected")]
            if not failed:
                return
            pending = failed if self.resend == "failed" else batch
            await asyncio.sleep(min(wait, self.max_wait))
        self.traffic.gave_up += sum(t.status not in ("delivered", "rejected") for t in batch)

    async def _send(self, pending: list[Tracked]) -> float:
        """One request; records each event's result; returns the Retry-After to honour."""
        body = {"batch": [t.planned.message for t in pending]}
        for tracked in pending:
            tracked.sends += 1
        try:
            response = await self.service.post("/v1/events", json=body)
        except httpx.TransportError:
            self.traffic.transport_errors += 1
            for tracked in pending:
                tracked.status = "failed"
            return 1.0
        self.traffic.answers[response.status_code] += 1
        if response.status_code not in (200, 207, 400, 429, 503):
            raise RuntimeError(f"unexpected answer {response.status_code}: {response.text}")
        results = response.json()["results"]
        for tracked, result in zip(pending, results, strict=True):
            if result["messageId"] != tracked.planned.message_id:
                raise RuntimeError(f"results out of order: {result['messageId']}")
            tracked.status, tracked.error = result["status"], result.get("error")
        return float(response.headers.get("Retry-After", "1"))


def lanes(events: Sequence[Planned], count: int, size: int) -> list[list[list[Tracked]]]:
    """Events split by user over ``count`` lanes (order kept), each cut into batches."""
    per_lane: list[list[Tracked]] = [[] for _ in range(count)]
    for planned in events:
        per_lane[int(planned.user.rsplit("-", 1)[1]) % count].append(Tracked(planned))
    return [[lane[i : i + size] for i in range(0, len(lane), size)] for lane in per_lane]


# --- checking -----------------------------------------------------------------------------


@dataclass
class Row:
    fault: str
    sent: int = 0
    delivered: int = 0
    rejected: int = 0
    resends: int = 0
    answers: Counter[int] = field(default_factory=Counter)
    klaviyo_requests: int = 0
    injected: int = 0
    accepted_twice: int = 0
    duplicated: int = 0
    lost: int = 0
    wrong: int = 0
    stale: int = 0
    no_reason: int = 0
    seconds: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)
    samples: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.duplicated or self.lost or self.wrong or self.no_reason)

    def problem(self, text: str) -> None:
        if len(self.problems) < 10:
            self.problems.append(text)


def _has_reason(error: Json | None) -> bool:
    if not error or not error.get("code") or not error.get("message"):
        return False
    if error["code"] in PERMANENT_CODES:
        details = [e.get("detail") for e in error.get("klaviyo_errors") or []]
        return error.get("klaviyo_status") is not None and any(details)
    return True


class Checker:
    """Compares what the answers claimed with the emulator's state and request log."""

    def __init__(self, row: Row, fault: Fault, state: Json, recorded: list[Json]) -> None:
        self.row, self.fault = row, fault
        self.profiles: dict[str, list[Json]] = defaultdict(list)
        self.emails: dict[str, str] = {}
        for profile in state["profiles"]:
            attributes = profile["attributes"]
            email = (attributes.get("email") or "").lower()
            self.profiles[email].append(profile)
            self.emails[profile["id"]] = email
        self.stored: dict[str, list[Json]] = defaultdict(list)
        for event in state["events"]:
            self.stored[event["attributes"]["unique_id"]].append(event["attributes"])
        self.members = {
            (list_id, member["profile_id"])
            for list_id, members in state["lists"].items()
            for member in members
        }
        self.recorded = recorded

    def run(self, tracked: Sequence[Tracked]) -> None:
        row = self.row
        for item in tracked:
            self._result(item)
        self._profiles(tracked)
        row.duplicated += sum(len(events) - 1 for events in self.stored.values())
        for email, profiles in self.profiles.items():
            if len(profiles) > 1:
                row.duplicated += len(profiles) - 1
                row.problem(f"{len(profiles)} profiles for {email!r}")
        self._accepted()

    def _result(self, item: Tracked) -> None:
        row, planned = self.row, item.planned
        row.sent += 1
        row.resends += item.sends - 1
        if item.status == "delivered":
            row.delivered += 1
            if planned.kind == "invalid":
                row.wrong += 1
                row.problem(f"{planned.message_id}: an invalid event was delivered")
            self._effect(item)
        elif item.status == "rejected":
            row.rejected += 1
            self._rejection(item)
        else:
            row.lost += 1
            row.problem(f"{planned.message_id}: still {item.status} when the sender gave up")

    def _rejection(self, item: Tracked) -> None:
        row, planned, error = self.row, item.planned, item.error or {}
        code = str(error.get("code"))
        status = error.get("klaviyo_status")
        key = code if status is None else f"{code} ({status})"
        row.reasons[key] += 1
        row.samples.setdefault(key, _reason_text(error))
        if not _has_reason(error):
            row.no_reason += 1
            row.problem(f"{planned.message_id}: rejected without a reason: {error}")
        expected = MAPPING_CODES if planned.kind == "invalid" else set()
        if self.fault.permanent and planned.kind != "invalid":
            expected = {"klaviyo_revision_retired"}
        if code not in expected:
            row.wrong += 1
            row.problem(f"{planned.message_id} ({planned.kind}): unexpected rejection {key}")
        if planned.kind in ("track", "screen") and self.stored.get(planned.message_id):
            row.wrong += 1
            row.problem(f"{planned.message_id}: rejected but stored")

    def _effect(self, item: Tracked) -> None:
        """A delivered event's effect must be in the state."""
        row, planned = self.row, item.planned
        profiles = self.profiles.get(planned.email.lower(), [])
        if not profiles:
            row.lost += 1
            row.problem(f"{planned.message_id}: no profile for {planned.email}")
            return
        if planned.metric is not None:
            stored = self.stored.get(planned.message_id, [])
            if not stored:
                row.lost += 1
                row.problem(f"{planned.message_id}: delivered {planned.kind} not stored")
            elif any(
                e["metric_name"] != planned.metric or self.emails[e["profile_id"]] != planned.email
                for e in stored
            ):
                row.wrong += 1
                row.problem(f"{planned.message_id}: stored with another metric or profile")
        if planned.list_id is not None and not any(
            (planned.list_id, p["id"]) in self.members for p in profiles
        ):
            row.lost += 1
            row.problem(f"{planned.message_id}: {planned.email} not in {planned.list_id}")

    def _profiles(self, tracked: Sequence[Tracked]) -> None:
        """Each user's profile shows one of the identifies from its last delivered one on."""
        identifies: dict[str, list[Tracked]] = defaultdict(list)
        for item in tracked:
            if item.planned.kind == "identify":
                identifies[item.planned.email].append(item)
        for email, items in identifies.items():
            delivered = [i for i, t in enumerate(items) if t.status == "delivered"]
            if not delivered:
                continue
            allowed = {t.planned.plan for t in items[delivered[-1] :]}
            earlier = {t.planned.plan for t in items[: delivered[-1]]}
            for profile in self.profiles.get(email.lower(), []):
                attributes = profile["attributes"]
                plan = (attributes.get("properties") or {}).get("plan")
                note = (
                    f"{email}: profile plan {plan!r}, expected one of {sorted(map(str, allowed))}"
                )
                if attributes.get("external_id") != items[0].planned.user:
                    self.row.wrong += 1
                    self.row.problem(f"{email}: external_id {attributes.get('external_id')!r}")
                elif plan in allowed:
                    continue
                elif plan in earlier and self.fault.late_writes:
                    # An earlier identify's write, abandoned on a read timeout and retried,
                    # was applied by Klaviyo after the later identify's (last writer wins).
                    self.row.stale += 1
                    self.row.problem(note + " (an abandoned earlier write landed late)")
                else:
                    self.row.wrong += 1
                    self.row.problem(note)

    def _accepted(self) -> None:
        accepted: Counter[str] = Counter()
        for request in self.recorded:
            self.row.klaviyo_requests += 1
            self.row.injected += request["fault"] is not None
            if request["path"].rstrip("/") != "/api/events" or request["method"] != "POST":
                continue
            processed = request["fault"] == "drop_connection" and self.fault.processed
            if request["status"] == 202 or processed:
                body = request["body"] or {}
                accepted[body["data"]["attributes"].get("unique_id")] += 1
        self.row.accepted_twice = sum(count > 1 for count in accepted.values())


def _reason_text(error: Json) -> str:
    details = [e.get("detail") for e in error.get("klaviyo_errors") or [] if e.get("detail")]
    text = str(error.get("message"))
    return f"{text} | Klaviyo: {details[0]}" if details else text


# --- one row, the whole matrix ------------------------------------------------------------


async def run_fault(
    fault: Fault,
    events: Sequence[Planned],
    *,
    service: httpx.AsyncClient,
    control: httpx.AsyncClient,
    resend: Resend = "failed",
    max_wait: float = 0.2,
    seed: int = SEED,
) -> Row:
    (await control.post("/__emulator/reset")).raise_for_status()
    row, traffic = Row(fault.name), Traffic()
    injector = Injector(control, fault, seed)
    sender = Sender(service, injector, traffic, resend=resend, max_wait=max_wait)
    plan = lanes(events, LANES, BATCH_SIZE)
    started = time.monotonic()
    async with injector.active(), asyncio.TaskGroup() as group:
        for lane in plan:
            group.create_task(sender.lane(lane))
    row.seconds = time.monotonic() - started
    (await control.delete("/__emulator/faults")).raise_for_status()
    if fault.injection == "ticker":  # let the requests the service gave up on land
        await asyncio.sleep(TIMEOUT_LATENCY_MS / 1000)
    state = (await control.get("/__emulator/state")).raise_for_status().json()
    recorded = (await control.get("/__emulator/requests")).raise_for_status().json()["requests"]
    tracked = [t for lane in plan for batch in lane for t in batch]
    Checker(row, fault, state, recorded).run(tracked)
    row.answers = traffic.answers
    if traffic.transport_errors:
        row.problem(f"{traffic.transport_errors} requests to the service failed in transport")
    if len(recorded) >= 10_000:
        row.problem("the emulator's request log (10,000) overflowed: 'accepted twice' is low")
    return row


@contextlib.asynccontextmanager
async def clients(
    service_url: str, emulator_url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """(service, emulator control) clients. The emulator's rate limiter is off meanwhile:
    the injected faults are what is measured; it is emptied and switched back on after."""
    limits = httpx.Limits(max_connections=LANES * 2)
    async with (
        httpx.AsyncClient(base_url=service_url, headers=headers, timeout=60, limits=limits) as svc,
        httpx.AsyncClient(base_url=emulator_url, timeout=30) as control,
    ):
        (await control.post("/__emulator/rate-limits", json={"enabled": False})).raise_for_status()
        try:
            yield svc, control
        finally:
            await control.post("/__emulator/reset")
            await control.post("/__emulator/rate-limits", json={"enabled": True})


async def run_matrix(
    service_url: str,
    emulator_url: str,
    *,
    events_per_fault: int,
    faults: Sequence[Fault] = FAULTS,
    resend: Resend = "failed",
    max_wait: float = 0.2,
    seed: int = SEED,
    headers: dict[str, str] | None = None,
    progress: Callable[[Row], None] | None = None,
) -> list[Row]:
    """Every fault in turn against running servers, each on its own seeded events."""
    rows = []
    async with clients(service_url, emulator_url, headers) as (svc, control):
        for index, fault in enumerate(faults):
            events = generate(events_per_fault, seed=seed + index, prefix=f"f{index}")
            row = await run_fault(
                fault,
                events,
                service=svc,
                control=control,
                resend=resend,
                max_wait=max_wait,
                seed=seed + index,
            )
            rows.append(row)
            if progress is not None:
                progress(row)
    return rows


# --- report -------------------------------------------------------------------------------

COLUMNS: Final = (
    "fault",
    "sent",
    "delivered",
    "rejected",
    "retried (resends)",
    "duplicated",
    "lost",
    "accepted twice, dedup'd",
    "wrong state",
    "stale profile (late write)",
    "429/503 answers",
    "Klaviyo requests (faulted)",
    "s",
)


def _cells(row: Row) -> list[str]:
    share = row.injected / row.klaviyo_requests if row.klaviyo_requests else 0.0
    retry_answers = f"{row.answers[429]}/{row.answers[503]}"
    return [
        row.fault,
        str(row.sent),
        str(row.delivered),
        str(row.rejected),
        str(row.resends),
        str(row.duplicated),
        str(row.lost),
        str(row.accepted_twice),
        str(row.wrong + row.no_reason),
        str(row.stale),
        retry_answers,
        f"{row.klaviyo_requests} ({share:.0%})" if row.injected else f"{row.klaviyo_requests} (-)",
        f"{row.seconds:.1f}",
    ]


def table(rows: Sequence[Row]) -> str:
    """A Markdown table, aligned so it also reads in a terminal."""
    cells = [list(COLUMNS), *(_cells(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.ljust(w) if i == 0 else v.rjust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ]
        return "| " + " | ".join(parts) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(c) for c in cells[1:])])


def reasons(rows: Sequence[Row]) -> str:
    lines = ["Permanent failures, with the reason the service reported (one sample each):"]
    seen: set[str] = set()
    for row in rows:
        for key, count in sorted(row.reasons.items()):
            lines.append(f"  {row.fault}: {key} x{count}")
            if key not in seen:
                seen.add(key)
                lines.append(f"      {row.samples[key][:220]}")
    return "\n".join(lines)


def problems(rows: Sequence[Row]) -> str:
    return "\n".join(f"  {row.fault}: {p}" for row in rows for p in row.problems)


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
