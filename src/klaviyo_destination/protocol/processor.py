"""``POST /v0/destinations/klaviyo``: rudder-server's processor protocol (docs/mapping.md §11)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..js import JsonObject
from ..klaviyo.facts import DEFAULT_BASE_URL
from ..planned import PlannedEvent
from .envelopes import Envelopes, processor_error
from .jobs import Job, plan_jobs
from .lookup import ProfileLookup


async def process(
    raw_jobs: Sequence[Any],
    lookup: ProfileLookup,
    *,
    filter_code: bool = False,
    base_url: str = DEFAULT_BASE_URL,
) -> list[JsonObject]:
    """One item per produced request (or per failed job), in input order.

    ``base_url`` prefixes the endpoints rudder-server will call (``KLAVIYO_BASE_URL``), so the
    look-up and the returned requests go to the same Klaviyo.
    """
    jobs = [Job.parse(raw) for raw in raw_jobs]
    per_job = await process_jobs(jobs, lookup, filter_code=filter_code, base_url=base_url)
    return [item for items in per_job for item in items]


async def process_jobs(
    jobs: Sequence[Job], lookup: ProfileLookup, *, filter_code: bool, base_url: str
) -> list[list[JsonObject]]:
    """The processor's items of each job, job by job."""
    planned = await plan_jobs(jobs, lookup, filter_code=filter_code)
    envelopes = Envelopes(processor=True, base_url=base_url)
    return [_items(job, event, envelopes) for job, event in zip(jobs, planned, strict=True)]


def _items(job: Job, event: PlannedEvent, envelopes: Envelopes) -> list[JsonObject]:
    if event.error is not None:
        return [processor_error(event.error, job.metadata)]
    items = []
    for request in event.requests:
        output = envelopes.of(request, job.key)
        if event.suppressed is not None:
            output.update(statusCode=299, error=event.suppressed)
        items.append({"output": output, "metadata": job.metadata, "statusCode": 200})
    return items
