"""``POST /routerTransform``: rudder-server's batched protocol (docs/mapping.md §12, §23).

Events are grouped by destination, each group at the revision its ``apiVersion`` names (one
request may mix v1, v2 and v3 destinations), split into type-chunks that keep each user's
order, and within a chunk batched by the revision's flow: subscription jobs to the same list
merged (≤ 100 profiles), each with the requests of its own events (Q1 fixed at v1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from ..errors import DestinationError
from ..ingest.config import parse_config, revision_of
from ..js import JsonObject, truthy
from ..klaviyo.facts import DEFAULT_BASE_URL
from ..mapping import Flow, flow_of
from ..planned import PlannedEvent
from .envelopes import Envelopes, router_error
from .jobs import Job, Pacer, plan_jobs
from .lookup import ProfileLookup

#: ``MAX_ECHOED_DESTINATION_BYTES``' default (settings.py).
ECHO_LIMIT: Final = 16 * 1024
#: What rudder-server reads from an output's destination (``DestinationT``'s fields).
_ECHOED_KEYS: Final = ("ID", "Name", "WorkspaceID", "Enabled", "IsProcessorEnabled", "RevisionID")
_ECHOED_DEFINITION_KEYS: Final = ("ID", "Name", "DisplayName")

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
    jobs: list[Job],
    lookup: ProfileLookup,
    *,
    filter_code: bool,
    base_url: str,
    echo_limit: int = ECHO_LIMIT,
    compacted: bool = False,
) -> list[JsonObject]:
    """Every job in exactly one output (rudder-server checks that); a destination larger
    than ``echo_limit`` bytes is echoed as :func:`echoed` says. ``compacted``: the jobs share
    their destinations' objects."""
    outputs: list[JsonObject] = []
    envelopes = Envelopes(processor=False, base_url=base_url)
    pacer = Pacer()
    for group in _destination_groups(jobs, compacted=compacted):
        outputs.extend(await _route_group(group, lookup, filter_code, envelopes, echo_limit, pacer))
    return outputs


def _destination_groups(jobs: list[Job], *, compacted: bool) -> list[list[Job]]:
    groups: dict[tuple[Any, bytes], list[Job]] = {}
    # A compacted body's jobs share their destination's one Config object: written once, not
    # once a job (an 8 MB one shared by 50 jobs was 400 MB of writing). A plain body's jobs
    # each carry their own copy: writing it costs what sending it did, and a memo only adds.
    written: dict[int, tuple[Any, bytes]] = {}
    for job in jobs:
        config = b""
        if job.destination.get("hasDynamicConfig") is not False:
            raw = job.config
            if not compacted:
                config = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
            else:
                seen = written.get(id(raw))
                if seen is None or seen[0] is not raw:
                    seen = written[id(raw)] = (raw, orjson.dumps(raw, option=orjson.OPT_SORT_KEYS))
                config = seen[1]
        groups.setdefault((str(job.destination.get("ID")), config), []).append(job)
    return list(groups.values())


async def _route_group(
    jobs: list[Job],
    lookup: ProfileLookup,
    filter_code: bool,
    envelopes: Envelopes,
    echo_limit: int,
    pacer: Pacer,
) -> list[JsonObject]:
    destination = jobs[0].destination
    # The first event's destination serves the whole group, as in the reference, and every
    # output echoes it: written once, as orjson writes it (the same bytes), then copied.
    echo = echoed(destination, echo_limit)
    try:
        flow = flow_of(revision_of(parse_config(jobs[0].config)))
    except DestinationError as error:
        # Jobs that failed on their own keep their own reason (a destination too deep to
        # read is cut to what can be echoed, and so fails its config check too).
        outputs, rest = [], []
        for job in jobs:
            if job.error is None:
                rest.append(job.metadata)
            else:
                outputs.append(router_error(job.error, [job.metadata], echo))
        return outputs + ([router_error(error, rest, echo)] if rest else [])
    jobs = [Job(job.message, job.metadata, destination, job.error) for job in jobs]
    successes: list[JsonObject] = []
    errors: list[JsonObject] = []
    for chunk in _type_chunks(jobs):
        if flow.pass_through:
            chunk = _pass_through(chunk, echo, successes)
        done, failed = await _transform_chunk(chunk, lookup, filter_code, echo, pacer)
        successes.extend(_chunk_outputs(done, flow, echo, envelopes))
        errors.extend(failed)
    return successes + errors


def echoed(destination: Mapping[str, Any], limit: int) -> orjson.Fragment:
    """``destination`` as every output of its group echoes it: whole, as the reference does,
    when it is at most ``limit`` bytes of JSON; else only what rudder-server reads from an
    output (ids, names, the definition's name: router/worker.go's stats and throttling), so
    that a large destination shared by many jobs does not multiply into the answer."""
    written = orjson.dumps(destination)
    if len(written) <= limit:
        return orjson.Fragment(written)
    kept = {key: destination[key] for key in _ECHOED_KEYS if key in destination}
    definition = destination.get("DestinationDefinition")
    if isinstance(definition, dict):
        kept["DestinationDefinition"] = {
            key: definition[key] for key in _ECHOED_DEFINITION_KEYS if key in definition
        }
    written = orjson.dumps(kept)
    return orjson.Fragment(written if len(written) <= limit else b"{}")


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


def _pass_through(chunk: list[Job], destination: Any, outputs: list[JsonObject]) -> list[Job]:
    """§23.1: a message with a truthy ``statusCode`` was transformed already; its ``output``
    (or the message itself) goes out unchanged, unbatched. Returns the jobs left to map."""
    left: list[Job] = []
    for job in chunk:
        message = job.message
        if job.error is None and isinstance(message, dict) and truthy(message.get("statusCode")):
            output = message.get("output")
            metadata = job.metadata if isinstance(job.metadata, list) else [job.metadata]
            outputs.append(_output(output if truthy(output) else message, metadata, destination))
        else:
            left.append(job)
    return left


async def _transform_chunk(
    chunk: list[Job], lookup: ProfileLookup, filter_code: bool, destination: Any, pacer: Pacer
) -> tuple[list[_Done], list[JsonObject]]:
    done: list[_Done] = []
    failed: list[JsonObject] = []
    planned = await plan_jobs(chunk, lookup, filter_code=filter_code, pacer=pacer)
    for job, event in zip(chunk, planned, strict=True):
        if event.error is not None:
            failed.append(router_error(event.error, [job.metadata], destination))
        else:
            done.append((job, event))
    return done, failed


def _chunk_outputs(
    done: list[_Done], flow: Flow, destination: Any, envelopes: Envelopes
) -> list[JsonObject]:
    """The flow's batches of one chunk as router outputs, each with its own events' metadata."""
    outputs: list[JsonObject] = []
    for batch in flow.batch([(i, event.requests) for i, (_, event) in enumerate(done)]):
        members = [done[i] for i in batch.events]
        key = members[0][0].key
        requests = [envelopes.of(r, key) for r in batch.requests]
        metadata = [job.metadata for job, _ in members]
        if batch.batched:
            outputs.append(_output(requests, metadata, destination, batched=True))
            continue
        output = _output(requests[0], metadata, destination)
        suppressed = members[0][1].suppressed
        if suppressed is not None:
            output.update(statusCode=299, error=suppressed)
        outputs.append(output)
    return outputs


def _output(
    request: Any, metadata: list[Any], destination: Any, *, batched: bool = False
) -> JsonObject:
    return {
        "batchedRequest": request,
        "metadata": metadata,
        "batched": batched,
        "statusCode": 200,
        "destination": destination,
    }
