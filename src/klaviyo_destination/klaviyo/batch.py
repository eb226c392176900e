"""Delivering a batch of planned events: per-user order, bounded concurrency, merged jobs;
one :class:`Outcome` per event, with the requests it sent."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import DestinationError, KlaviyoError, KlaviyoUnavailable
from ..mapping import merge_jobs
from ..planned import LIST_JOBS, PlannedEvent, PlannedRequest, job_contacts
from .answers import SentRequest
from .bulk import BulkJob, SendOne
from .refusals import refusal

logger = logging.getLogger(__name__)

#: An event's index in the batch and one of its list jobs (subscribe, or v2/v3's unsubscribe).
Member = tuple[int, PlannedRequest]


@dataclass(slots=True)
class Outcome:
    """What happened to one event; ``error`` is ``KlaviyoError.to_dict()``-shaped, key-free."""

    status: Literal["delivered", "rejected", "failed"]
    requests: list[SentRequest] = field(default_factory=list)
    error: dict[str, Any] | None = None
    retry_after: float | None = None
    throttled: bool = False

    @classmethod
    def of(cls, exc: DestinationError, requests: list[SentRequest]) -> Outcome:
        error = {"klaviyo_status": None, "klaviyo_errors": [], **exc.to_dict()}
        if not isinstance(exc, KlaviyoUnavailable):
            return cls("rejected", requests, error)
        return cls("failed", requests, error, exc.retry_after, exc.throttled)


def _unexpected(exc: Exception) -> KlaviyoUnavailable:
    """A bug, or an answer odder than any handled: its events fail retryably, so the caller
    resends them and still gets one result per event, not a 500 for the whole request."""
    logger.error("unexpected error while delivering", exc_info=exc)
    return KlaviyoUnavailable(f"unexpected error while delivering ({type(exc).__name__})")


def _split_tail(requests: Sequence[PlannedRequest]) -> tuple[list[PlannedRequest], ...]:
    """The requests before the trailing list jobs, and those jobs (mergeable)."""
    cut = len(requests)
    while cut and requests[cut - 1].endpoint in LIST_JOBS:
        cut -= 1
    return list(requests[:cut]), list(requests[cut:])


def _identified(request: PlannedRequest) -> bool:
    return all("email" in entry or "phone_number" in entry for entry in job_contacts(request))


def _jobs(parked: list[Member]) -> list[list[Member]]:
    """The members of each job: merged per list (and operation) for entries that name a person,
    the others alone.

    Klaviyo rejects a whole job for one entry without an email or phone number, so such an
    entry must not take other users' entries down with it.
    """
    mergeable = [(index, request) for index, request in parked if _identified(request)]
    alone = [[(index, request)] for index, request in parked if not _identified(request)]
    merged = merge_jobs([(key, request) for key, (_, request) in enumerate(mergeable)])
    return [*([mergeable[key] for key in keys] for _, keys in merged), *alone]


class Batch:
    """One batch of planned events: per-user order, bounded concurrency, merged list jobs.

    It runs in rounds. In a round every user with events left runs them one after another
    (users concurrently, at most ``delivery_concurrency`` at once) and stops after the first
    event whose plan ends in a list job (v1's subscription; v2/v3's subscribe or unsubscribe):
    that event's earlier requests (its profile write) are sent, its job parked. Then the parked
    jobs of all users are merged per list and operation into bulk jobs of at most 100 profiles
    (``mapping.merge_jobs``, as the router batches them) and sent; each event of a job gets the
    job's result. The next round resumes each user after its parked event.

    One bad entry must not sink other users' entries: an event whose entry Klaviyo would
    refuse (``refusals.py``) is rejected before merging, and a job Klaviyo still refuses with
    400 is narrowed down to the events it names (``bulk.py``). A job that fails otherwise
    (5xx, 429, 401, 410) fails each of its events.

    So a user's requests reach Klaviyo in input order (a later event never overtakes its own
    user's list job), while merging still spans users; a usual batch, with at most one
    subscribing identify per user, takes a single round. Once an event of a user has failed
    retryably, that user's later events are not sent and fail too, so the caller retries them
    in order (as rudder-server's per-user barrier would); a rejected event does not stop them.
    """

    def __init__(
        self,
        send_one: SendOne,
        events: Sequence[PlannedEvent],
        deadline: float,
        *,
        concurrency: int,
    ) -> None:
        self.send_one, self.events, self.deadline = send_one, events, deadline
        self.outcomes: list[Outcome | None] = [None] * len(events)
        self.sent: list[list[SentRequest]] = [[] for _ in events]
        self.queues: dict[str, deque[int]] = {}
        for index, event in enumerate(events):
            self.queues.setdefault(event.user_key, deque()).append(index)
        self.blocked: dict[str, KlaviyoUnavailable] = {}
        self.parked: list[tuple[int, PlannedRequest]] = []
        self.concurrency = concurrency
        #: the list jobs' bound (the users' is ``_round``'s workers)
        self.semaphore = asyncio.Semaphore(concurrency)

    async def run(self) -> list[Outcome]:
        while any(self.queues.values()):
            await self._round()
            await self._send_parked()
        outcomes = [outcome for outcome in self.outcomes if outcome is not None]
        if len(outcomes) != len(self.events):  # pragma: no cover -- a bug, never a drop
            msg = f"{len(self.events) - len(outcomes)} events got no outcome"
            raise RuntimeError(msg)
        return outcomes

    async def _round(self) -> None:
        """Every user with events left advances, at most ``concurrency`` at once, in input
        order: that many workers take the users one after another (a task per user, all but a
        few waiting on a semaphore, cost more than the requests they wait to send)."""
        users = deque(queue for queue in self.queues.values() if queue)

        async def work() -> None:
            while users:
                await self._advance(users.popleft())

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.concurrency, len(users))):
                group.create_task(work())

    async def _advance(self, queue: deque[int]) -> None:
        while queue:
            if await self._head(queue.popleft()):
                return

    async def _head(self, index: int) -> bool:
        """Send the event's requests up to its subscriptions; True when those got parked."""
        event = self.events[index]
        if event.error is not None:
            self.outcomes[index] = Outcome.of(event.error, [])
            return False
        if (earlier := self.blocked.get(event.user_key)) is not None:
            self._fail(index, earlier, not_sent=True)
            return False
        head, tail = _split_tail(event.requests)
        try:
            for request in head:
                await self.send_one(request, self.deadline, self.sent[index])
        except KlaviyoError as exc:
            self._fail(index, exc)
            return False
        except Exception as exc:  # anything else: see _unexpected
            self._fail(index, _unexpected(exc))
            return False
        if not tail:
            self.outcomes[index] = Outcome("delivered", self.sent[index])
            return False
        self.parked.extend((index, request) for request in tail)
        return True

    async def _send_parked(self) -> None:
        # Users park concurrently: in input order, a job's entries are the router's (§23.2).
        parked, self.parked = sorted(self.parked, key=lambda member: member[0]), []
        for index, request in parked:
            if self.outcomes[index] is None and (refused := refusal(request)) is not None:
                self._fail(index, refused)
        sendable = [(index, request) for index, request in parked if self.outcomes[index] is None]
        async with asyncio.TaskGroup() as group:
            for members in _jobs(sendable):
                group.create_task(self._send_job(members))
        for index in dict.fromkeys(index for index, _ in parked):
            if self.outcomes[index] is None:
                self.outcomes[index] = Outcome("delivered", self.sent[index])

    async def _send_job(self, members: list[Member]) -> None:
        async with self.semaphore:
            try:
                results = await BulkJob(self.send_one, [r for _, r in members], self.deadline).run()
            except Exception as exc:  # anything else: see _unexpected
                error = _unexpected(exc)
                for index, _ in members:
                    self._fail(index, error)
                return
        recorded: set[int] = set()
        for (index, _), result in zip(members, results, strict=True):
            if index not in recorded:  # an event with two entries in one job sent it once
                recorded.add(index)
                self.sent[index].extend(result.sent)
            if result.error is not None:
                self._fail(index, result.error)

    def _fail(self, index: int, exc: DestinationError, *, not_sent: bool = False) -> None:
        if self.outcomes[index] is not None:
            return  # an event in two failed jobs keeps its first failure
        if isinstance(exc, KlaviyoUnavailable):
            if not_sent:
                exc = KlaviyoUnavailable(
                    f"not sent: an earlier event of the same user failed ({exc.message})",
                    retry_after=exc.retry_after,
                    throttled=exc.throttled,
                )
            self.blocked.setdefault(self.events[index].user_key, exc)
        self.outcomes[index] = Outcome.of(exc, self.sent[index])
