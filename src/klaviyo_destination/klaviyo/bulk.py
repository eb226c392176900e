"""One merged list job, carried to a final answer for each event in it.

Klaviyo answers a bulk job as a whole, so one entry it refuses would sink every event in the
job. When it answers 400, the events whose entries its errors point at (``source.pointer`` =
``/data/attributes/subscriptions/<i>/...`` at v1, ``/data/attributes/profiles/data/<i>/...`` at
v2/v3: ``planned.JobLayout``) are rejected with those errors and the others are sent again
without them; a 400 that points at no entry splits the job in
halves, each sent on its own, until what Klaviyo refuses is alone. Every job sent either
settles its events or drops at least one of them (a named entry) or halves them, so n events
cost at most 2n - 1 requests. A refusal of the job itself (a member such as ``list_id`` or
``relationships``, or a 401, 403 or 410) rejects every event at once: each would meet it alone
too.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import httpx

from ..errors import KlaviyoError, KlaviyoRejected
from ..js import JsonObject
from ..mapping import merge_jobs
from ..planned import IMPORT_JOB, V1_JOB, JobLayout, PlannedRequest, job_contacts, job_layout
from .answers import KlaviyoAnswer, SentRequest, rejection

#: How delivery sends one planned request to its final answer, recording each exchange in
#: ``sent``; raises ``KlaviyoRejected`` or ``KlaviyoUnavailable`` (``KlaviyoSession.run_one``).
SendOne = Callable[[PlannedRequest, float, list[SentRequest]], Awaitable[None]]

#: A member of the job itself, shared by every entry: its type, its list (v1's ``list_id``,
#: v2/v3's ``relationships``), ``custom_source``; ``_shared`` leaves out the entries' own.
_JOB_MEMBER: Final = re.compile(r"^/data/(type|relationships(/.*)?|attributes/[^/]+)/?$")


def _entry(layout: JobLayout) -> re.Pattern[str]:
    """An entry of the job; at most 9 digits, since a job holds at most 100 entries."""
    return re.compile(rf"^{re.escape(layout.entries)}/(\d{{1,9}})(/.*)?$")


_ENTRIES: Final = {layout: _entry(layout) for layout in (V1_JOB, IMPORT_JOB)}


@dataclass(slots=True)
class MemberResult:
    """What became of one member request: the jobs that carried it, and its error if any."""

    sent: list[SentRequest] = field(default_factory=list)
    error: KlaviyoError | None = None


class BulkJob:
    """Member requests to one list and operation (at most 100), merged and sent; see the
    module's text."""

    def __init__(
        self, send_one: SendOne, members: Sequence[PlannedRequest], deadline: float
    ) -> None:
        self.send_one, self.members, self.deadline = send_one, members, deadline
        self.results = [MemberResult() for _ in members]

    async def run(self) -> list[MemberResult]:
        await self._send(list(range(len(self.members))))
        return self.results

    async def _send(self, positions: list[int]) -> None:
        [(job, _)] = merge_jobs([(p, self.members[p]) for p in positions])
        sent: list[SentRequest] = []
        try:
            await self.send_one(job, self.deadline, sent)
        except KlaviyoError as exc:
            self._record(positions, sent)
            await self._refused(positions, exc)
        else:
            self._record(positions, sent)

    async def _refused(self, positions: list[int], exc: KlaviyoError) -> None:
        # Only a plain 400 judges entries; 401/403/410 and 5xx are about the whole request.
        if len(positions) == 1 or type(exc) is not KlaviyoRejected or exc.klaviyo_status != 400:
            self._fail(positions, exc)
            return
        named = self._named(positions, exc.klaviyo_errors)
        if named:
            for position, errors in named.items():
                # What Klaviyo would have answered the member sent alone.
                alone = KlaviyoAnswer(400, httpx.Headers(), {"errors": errors})
                self._fail([position], rejection(alone))
            rest = [p for p in positions if p not in named]
            if rest:
                await self._send(rest)
        elif any(self._shared(pointer) for pointer in _pointers(exc.klaviyo_errors)):
            self._fail(positions, exc)
        else:
            half = len(positions) // 2
            await self._send(positions[:half])
            await self._send(positions[half:])

    def _named(self, positions: list[int], errors: list[JsonObject]) -> dict[int, list[JsonObject]]:
        """Klaviyo's errors per member they point at, each pointer rebased onto the member's
        own request: that is the request ``/v1/transform`` shows for the event."""
        layout = job_layout(self.members[positions[0]])
        owners = [
            (position, own)
            for position in positions
            for own in range(len(job_contacts(self.members[position])))
        ]
        named: dict[int, list[JsonObject]] = {}
        for error in errors:
            pointer = _pointer(error)
            match = _ENTRIES[layout].match(pointer) if isinstance(pointer, str) else None
            if match is None or int(match[1]) >= len(owners):
                continue
            position, own = owners[int(match[1])]
            rebased = f"{layout.entries}/{own}{match[2] or ''}"
            named.setdefault(position, []).append({**error, "source": {"pointer": rebased}})
        return named

    def _shared(self, pointer: str) -> bool:
        """Whether ``pointer`` names a member of the job itself, not its entries."""
        container = job_layout(self.members[0]).container
        inside = pointer == container or pointer.startswith(container + "/")
        return not inside and bool(_JOB_MEMBER.match(pointer))

    def _record(self, positions: list[int], sent: list[SentRequest]) -> None:
        for position in positions:
            self.results[position].sent.extend(sent)

    def _fail(self, positions: list[int], exc: KlaviyoError) -> None:
        for position in positions:
            if self.results[position].error is None:
                self.results[position].error = exc


def _pointer(error: JsonObject) -> object:
    source = error.get("source")
    return source.get("pointer") if isinstance(source, dict) else None


def _pointers(errors: list[JsonObject]) -> list[str]:
    pointers = [_pointer(error) for error in errors]
    return [pointer for pointer in pointers if isinstance(pointer, str)]
