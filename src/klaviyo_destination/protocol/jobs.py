"""rudder-server's jobs: parsing one, and planning a list of them (identify look-ups included).

Each job carries its own ``destination.Config``, so its own key (docs/mapping.md §11, §12).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import SecretStr

from ..errors import DestinationError, InvalidEvent
from ..ingest.config import DestinationConfig, parse_config
from ..pipeline import plan_event
from ..planned import PlannedEvent
from .lookup import ProfileLookup, resolve_identify


@dataclass(slots=True)
class Job:
    """One element of a processor or router request. A plain (mutable) data class, as
    ``PlannedEvent`` is, for the same reason: one is built per event; nothing assigns a field."""

    message: Any
    metadata: Any
    destination: Mapping[str, Any]
    #: why this one job cannot be read (too deep, too large); its neighbours still are
    error: DestinationError | None = None

    @classmethod
    def parse(cls, raw: Any, destinations: Mapping[str, Any] | None = None) -> Job:
        """A plain job, or with ``destinations`` a compacted one (its destination by id)."""
        raw = raw if isinstance(raw, dict) else {}
        metadata = raw.get("metadata")
        if destinations is None:
            destination = raw.get("destination")
        else:
            destination_id = metadata.get("destinationId") if isinstance(metadata, dict) else None
            destination = (
                destinations.get(destination_id) if isinstance(destination_id, str) else None
            )
        return cls(
            raw.get("message"), metadata, destination if isinstance(destination, dict) else {}
        )

    @property
    def job_id(self) -> Any:
        return self.metadata.get("jobId") if isinstance(self.metadata, dict) else None

    @property
    def config(self) -> Mapping[str, Any]:
        config = self.destination.get("Config")
        return config if isinstance(config, dict) else {}

    @property
    def key(self) -> str:
        """The private API key of a job whose config parsed (a string there, or nothing)."""
        key = self.config.get("privateApiKey")
        return key if isinstance(key, str) else ""

    @property
    def api_key(self) -> SecretStr:
        return SecretStr(self.key)


class Pacer:
    """Lets other tasks run between slices of a request's jobs once :data:`YIELD_EVERY` were
    planned since the last time. Mapping is CPU work with no ``await`` in it: without this a
    request of a thousand jobs keeps every other connection, ``/health`` included, waiting
    until its last job is mapped. rudder-server's batches (100 jobs or fewer) never yield."""

    __slots__ = ("_done",)

    def __init__(self) -> None:
        self._done = 0

    async def before(self, count: int) -> None:
        """Called before planning ``count`` more jobs."""
        if self._done and self._done + count > YIELD_EVERY:
            self._done = 0
            await asyncio.sleep(0)
        self._done += count


#: Jobs planned between two yields to the event loop (a few milliseconds of mapping).
YIELD_EVERY: Final = 100


async def plan_jobs(
    jobs: Sequence[Job], lookup: ProfileLookup, *, filter_code: bool, pacer: Pacer | None = None
) -> list[PlannedEvent]:
    """Plan every job, then make identify's look-ups concurrently; one result per job, in order.

    Only look-ups become tasks: a batch of track events is planned without scheduling any.
    Planning yields to other tasks as ``pacer`` (one of its own by default) says.
    """
    configs = _Configs()
    if len(jobs) <= YIELD_EVERY:  # rudder-server's batches: one slice, as before
        if pacer is not None:
            await pacer.before(len(jobs))
        planned = [_plan(job, configs) for job in jobs]
    else:
        pacer = pacer or Pacer()
        planned = []
        for start in range(0, len(jobs), YIELD_EVERY):
            await pacer.before(YIELD_EVERY)
            planned += [_plan(job, configs) for job in jobs[start : start + YIELD_EVERY]]
    pending = [
        index
        for index, event in enumerate(planned)
        if event.error is None and event.requests[0].upsert
    ]
    if pending:
        answers = await asyncio.gather(
            *(lookup(planned[i].requests[0].body, jobs[i].api_key) for i in pending)
        )
        for index, (status, body) in zip(pending, answers, strict=True):
            planned[index] = resolve_identify(planned[index], status, body, filter_code=filter_code)
    return planned


class _Configs:
    """The parsed config of the previous job, reused while the next job's config is equal.

    A request's jobs nearly always share one destination; comparing two small dicts costs a
    fraction of validating one again. A parsed config is frozen, so sharing it is safe. Equal
    is also same-typed value by value, because ``1 == True`` but ``listId`` keeps its type.
    """

    __slots__ = ("_parsed", "_raw", "_types")

    def __init__(self) -> None:
        self._raw: Mapping[str, Any] | None = None
        self._types: list[type] = []
        self._parsed: DestinationConfig | None = None

    def parse(self, raw: Mapping[str, Any]) -> DestinationConfig:
        if raw is self._raw and self._parsed is not None:
            return self._parsed  # the same dict: a router group's jobs, a compacted body's
        types = list(map(type, raw.values()))
        if self._parsed is None or raw != self._raw or types != self._types:
            self._parsed = parse_config(raw)  # an invalid config raises and is not kept
            self._raw, self._types = raw, types
        return self._parsed


def _plan(job: Job, configs: _Configs) -> PlannedEvent:
    if job.error is not None:
        return PlannedEvent(None, None, "", error=job.error)
    if not isinstance(job.message, dict):
        error = InvalidEvent("message must be a JSON object", field="message")
        return PlannedEvent(None, None, "", error=error)
    try:
        config = configs.parse(job.config)
    except DestinationError as error:
        message = job.message
        return PlannedEvent(message.get("messageId"), message.get("type"), "", error=error)
    return plan_event(job.message, config)
