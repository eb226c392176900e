"""Delivering a batch of planned events: per-user order, bounded concurrency, merged jobs."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Protocol

from ..errors import KlaviyoError, KlaviyoUnavailable
from ..mapping import merge_subscriptions
from ..planned import Endpoint, PlannedEvent, PlannedRequest, subscriptions_of
from .outcomes import Outcome, SentRequest


class Sender(Protocol):
    """What a batch needs to send one planned request (``KlaviyoSession`` is one)."""

    async def run_one(
        self, request: PlannedRequest, deadline: float, sent: list[SentRequest]
    ) -> None: ...


def _split_tail(requests: Sequence[PlannedRequest]) -> tuple[list[PlannedRequest], ...]:
    """The requests before the trailing subscription jobs, and those jobs (mergeable)."""
    cut = len(requests)
    while cut and requests[cut - 1].endpoint is Endpoint.SUBSCRIPTIONS:
        cut -= 1
    return list(requests[:cut]), list(requests[cut:])


def _identified(request: PlannedRequest) -> bool:
    return all("email" in sub or "phone_number" in sub for sub in subscriptions_of(request))


def _jobs(parked: list[tuple[int, PlannedRequest]]) -> list[tuple[PlannedRequest, list[int]]]:
    """Merged jobs for the subscriptions that name a person; the others go alone.

    Klaviyo rejects a whole job for one entry without an email or phone number, so such an
    entry must not take other users' subscriptions down with it.
    """
    mergeable = [(index, request) for index, request in parked if _identified(request)]
    alone = [(request, [index]) for index, request in parked if not _identified(request)]
    return [*merge_subscriptions(mergeable), *alone]


class Batch:
    """One batch of planned events: per-user order, bounded concurrency, merged subscriptions.

    It runs in rounds. In a round every user with events left runs them one after another
    (users concurrently, at most ``delivery_concurrency`` at once) and stops after the first
    event whose plan ends in subscription jobs: that event's earlier requests are sent, its
    subscriptions parked. Then the parked subscriptions of all users are merged per list into
    bulk jobs (``mapping.merge_subscriptions``) and sent; each event of a job gets the job's
    result, so a failed job fails each of its events. The next round resumes each user after
    its parked event.

    So a user's requests reach Klaviyo in input order (a later event never overtakes its own
    user's subscription), while merging still spans users; a usual batch, with at most one
    subscribing identify per user, takes a single round. Once an event of a user has failed
    retryably, that user's later events are not sent and fail too, so the caller retries them
    in order (as rudder-server's per-user barrier would); a rejected event does not stop them.
    """

    def __init__(
        self, sender: Sender, events: Sequence[PlannedEvent], deadline: float, *, concurrency: int
    ) -> None:
        self.sender, self.events, self.deadline = sender, events, deadline
        self.outcomes: list[Outcome | None] = [None] * len(events)
        self.sent: list[list[SentRequest]] = [[] for _ in events]
        self.queues: dict[str, deque[int]] = {}
        for index, event in enumerate(events):
            self.queues.setdefault(event.user_key, deque()).append(index)
        self.blocked: dict[str, KlaviyoUnavailable] = {}
        self.parked: list[tuple[int, PlannedRequest]] = []
        self.semaphore = asyncio.Semaphore(concurrency)

    async def run(self) -> list[Outcome]:
        while any(self.queues.values()):
            async with asyncio.TaskGroup() as group:
                for queue in self.queues.values():
                    if queue:
                        group.create_task(self._advance(queue))
            await self._send_parked()
        outcomes = [outcome for outcome in self.outcomes if outcome is not None]
        if len(outcomes) != len(self.events):  # pragma: no cover -- a bug, never a drop
            msg = f"{len(self.events) - len(outcomes)} events got no outcome"
            raise RuntimeError(msg)
        return outcomes

    async def _advance(self, queue: deque[int]) -> None:
        async with self.semaphore:
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
                await self.sender.run_one(request, self.deadline, self.sent[index])
        except KlaviyoError as exc:
            self._fail(index, exc)
            return False
        if not tail:
            self.outcomes[index] = Outcome("delivered", self.sent[index])
            return False
        self.parked.extend((index, request) for request in tail)
        return True

    async def _send_parked(self) -> None:
        parked, self.parked = self.parked, []
        async with asyncio.TaskGroup() as group:
            for job, members in _jobs(parked):
                group.create_task(self._send_job(job, members))
        for index in dict.fromkeys(index for index, _ in parked):
            if self.outcomes[index] is None:
                self.outcomes[index] = Outcome("delivered", self.sent[index])

    async def _send_job(self, job: PlannedRequest, members: list[int]) -> None:
        sent: list[SentRequest] = []
        error: KlaviyoError | None = None
        async with self.semaphore:
            try:
                await self.sender.run_one(job, self.deadline, sent)
            except KlaviyoError as exc:
                error = exc
        for index in dict.fromkeys(members):
            self.sent[index].extend(sent)
            if error is not None:
                self._fail(index, error)

    def _fail(self, index: int, exc: KlaviyoError, *, not_sent: bool = False) -> None:
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
