"""``POST /routerTransform``: rudder-server's batched protocol (docs/mapping.md §12), Q1 fixed.

Events are grouped by destination, split into type-chunks that keep each user's order, and
within a chunk subscription jobs to the same list are merged (≤ 100 profiles). Each identify
PATCH travels in the batched output that holds its own subscription (Q1 fix).
"""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import DestinationError
from ..ingest.config import check_api_version, parse_config
from ..js import JsonObject
from ..klaviyo.facts import DEFAULT_BASE_URL, SUBSCRIPTIONS_PATH
from ..mapping import merge_subscriptions
from ..planned import PlannedEvent, PlannedRequest
from .envelopes import envelope, router_error
from .jobs import Job, plan_jobs
from .lookup import ProfileLookup

INVALID_EVENT_ARRAY = {
    "metadata": [{"destType": "klaviyo"}],
    "batched": False,
    "statusCode": 400,
    "error": "Invalid event array",
}


#: A job and what became of it.
_Done = tuple[Job, PlannedEvent]


async def route(
    raw_jobs: Any,
    lookup: ProfileLookup,
    *,
    filter_code: bool = False,
    base_url: str = DEFAULT_BASE_URL,
) -> list[JsonObject]:
    """The outputs for a router request's ``input`` (plain jobs)."""
    if not isinstance(raw_jobs, list) or not raw_jobs:
        return [dict(INVALID_EVENT_ARRAY)]
    jobs = [Job.parse(raw) for raw in raw_jobs]
    return await route_jobs(jobs, lookup, filter_code=filter_code, base_url=base_url)


async def route_jobs(
    jobs: list[Job], lookup: ProfileLookup, *, filter_code: bool, base_url: str
) -> list[JsonObject]:
    """Every job in exactly one output (rudder-server checks that)."""
    outputs: list[JsonObject] = []
    for group in _destination_groups(jobs):
        outputs.extend(await _route_group(group, lookup, filter_code, base_url))
    return outputs


def _destination_groups(jobs: list[Job]) -> list[list[Job]]:
    groups: dict[tuple[Any, bytes], list[Job]] = {}
    for job in jobs:
        dynamic = job.destination.get("hasDynamicConfig") is not False
        config = orjson.dumps(job.config, option=orjson.OPT_SORT_KEYS) if dynamic else b""
        groups.setdefault((str(job.destination.get("ID")), config), []).append(job)
    return list(groups.values())


async def _route_group(
    jobs: list[Job], lookup: ProfileLookup, filter_code: bool, base_url: str
) -> list[JsonObject]:
    destination = jobs[0].destination
    try:
        check_api_version(parse_config(jobs[0].config))
    except DestinationError as error:
        return [router_error(error, [job.metadata for job in jobs], destination)]
    # The first event's destination serves the whole group, as in the reference.
    jobs = [Job(job.message, job.metadata, destination, job.error) for job in jobs]
    successes: list[JsonObject] = []
    errors: list[JsonObject] = []
    for chunk in _type_chunks(jobs):
        done, failed = await _transform_chunk(chunk, lookup, filter_code)
        successes.extend(_chunk_outputs(done, destination, base_url))
        errors.extend(failed)
    return successes + errors


def _type_chunks(jobs: list[Job]) -> list[list[Job]]:
    """§12.2: split so that batching never reorders one user's events."""
    chunks: list[tuple[Any, list[Job]]] = []
    last_chunk: dict[str, int] = {}
    for job in jobs:
        message = job.message if isinstance(job.message, dict) else {}
        event_type = message.get("type")
        user = str((job.metadata or {}).get("userId")) if isinstance(job.metadata, dict) else ""
        start = last_chunk.get(user, 0)
        index = next(
            (i for i in range(start, len(chunks)) if chunks[i][0] == event_type), len(chunks)
        )
        if index == len(chunks):
            chunks.append((event_type, []))
        chunks[index][1].append(job)
        last_chunk[user] = index
    return [chunk for _, chunk in chunks]


async def _transform_chunk(
    chunk: list[Job], lookup: ProfileLookup, filter_code: bool
) -> tuple[list[_Done], list[JsonObject]]:
    done: list[_Done] = []
    failed: list[JsonObject] = []
    for job, event in zip(
        chunk, await plan_jobs(chunk, lookup, filter_code=filter_code), strict=True
    ):
        if event.error is not None:
            failed.append(router_error(event.error, [job.metadata], job.destination))
        else:
            done.append((job, event))
    return done, failed


def _is_subscription(request: PlannedRequest) -> bool:
    return request.path == SUBSCRIPTIONS_PATH


def _chunk_outputs(done: list[_Done], destination: Any, base_url: str) -> list[JsonObject]:
    subscribed = [d for d in done if _is_subscription(d[1].requests[-1])]
    singles = [d for d in done if not _is_subscription(d[1].requests[-1])]
    by_index = dict(enumerate(subscribed))
    merged = merge_subscriptions([(i, event.requests[-1]) for i, (_, event) in by_index.items()])
    outputs: list[JsonObject] = []
    for request, indexes in merged:
        members = [by_index[i] for i in indexes]
        key = members[0][0].api_key
        # Q1 fixed: each member's PATCH rides with its own subscription job, after it.
        patches = [r for _, event in members for r in event.requests[:-1]]
        outputs.append(
            {
                "batchedRequest": [
                    envelope(r, key, processor=False, base_url=base_url)
                    for r in [request, *patches]
                ],
                "metadata": [job.metadata for job, _ in members],
                "batched": True,
                "statusCode": 200,
                "destination": destination,
            }
        )
    outputs.extend(_single_output(d, destination, base_url) for d in singles)
    return outputs


def _single_output(done: _Done, destination: Any, base_url: str) -> JsonObject:
    job, event = done
    output: JsonObject = {
        "batchedRequest": envelope(
            event.requests[0], job.api_key, processor=False, base_url=base_url
        ),
        "metadata": [job.metadata],
        "batched": False,
        "statusCode": 200,
        "destination": destination,
    }
    if event.suppressed is not None:
        output.update(statusCode=299, error=event.suppressed)
    return output
