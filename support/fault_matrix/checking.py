"""Checking one row: what the service's answers claimed against the emulator's state and its
record of requests (delivered, rejected with a reason, duplicated, lost)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from support.emulator_control import Json
from support.fault_matrix.faults import Fault
from support.fault_matrix.sending import Tracked

PERMANENT_CODES: Final = frozenset(
    {
        "klaviyo_rejected",
        "klaviyo_auth_rejected",
        "klaviyo_revision_retired",
        "klaviyo_profile_conflict",
    }
)
MAPPING_CODES: Final = frozenset({"invalid_event", "unsupported_event"})


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
        row.samples.setdefault(key, reason_text(error))
        if not _has_reason(error):
            row.no_reason += 1
            row.problem(f"{planned.message_id}: rejected without a reason: {error}")
        expected = MAPPING_CODES if planned.kind == "invalid" else set()
        if planned.refusal is not None:
            expected = {planned.refusal}
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


def reason_text(error: Json) -> str:
    details = [e.get("detail") for e in error.get("klaviyo_errors") or [] if e.get("detail")]
    text = str(error.get("message"))
    return f"{text} | Klaviyo: {details[0]}" if details else text
