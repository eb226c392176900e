"""rudder-server's request bodies, plain or compacted, read job by job.

Plain bodies carry each job's ``destination``; compacted ones (``X-Content-Format:
json+compactedv1``, which rudder-server sends when ``/features`` allows it) carry
``{"input": [{message, metadata}], "destinations": {id: destination}, "connections":
{"sourceId:destinationId": connection}}``, and the router adds ``destType``. Either way one event
that is too deep or too large becomes that job's own error, never the whole request's, and so
does a job whose metadata or destination nests too deep: an answer echoes those, and orjson
writes at most 255 levels. A request's jobs are counted before any is read: rudder-server sends
at most its batch size, and each job costs an output.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Final

import orjson

from ..errors import BadRequest, EventTooLarge, InvalidEvent, PayloadTooLarge
from ..ingest.body import parsed_nests_within, too_deep
from .jobs import Job
from .router import ECHO_LIMIT

COMPACTED: Final = "json+compactedv1"
#: The deepest a job's parts may nest whatever MAX_JSON_DEPTH says: orjson writes at most 255
#: levels, and an answer puts a job's metadata, destination or message up to 4 levels down.
MAX_ECHO_DEPTH: Final = 250


@dataclass(frozen=True, slots=True)
class Limits:
    max_depth: int
    max_event_bytes: int
    #: ``MAX_PROTOCOL_JOBS`` and ``MAX_ECHOED_DESTINATION_BYTES`` (settings.py)
    max_jobs: int = 1000
    max_echoed_destination_bytes: int = ECHO_LIMIT


@dataclass(frozen=True, slots=True)
class ProtocolBody:
    """The jobs of one request, each with its own destination."""

    jobs: list[Job]
    compacted: bool


def processor_body(
    body: Any, *, compacted: bool, size: int, limits: Limits, raw: bytes | bytearray | None = None
) -> ProtocolBody:
    """``size`` and ``raw`` (the body's bytes) let checks no event can fail be skipped."""
    if not compacted:
        if not isinstance(body, list):
            raise BadRequest("the processor protocol takes a JSON array of jobs", field="body")
        parsed = ProtocolBody([Job.parse(raw) for raw in _counted(body, limits, "body")], False)
        return _checked(parsed, size, limits, raw)
    items, destinations = _compacted_parts(body, limits)
    parsed = ProtocolBody([Job.parse(raw, destinations) for raw in items], True)
    return _checked(parsed, size, limits, raw)


def router_body(
    body: Any, *, compacted: bool, size: int, limits: Limits, raw: bytes | bytearray | None = None
) -> ProtocolBody:
    """A router body; an ``input`` that is not a list gives no jobs (the reference's answer)."""
    items = body.get("input") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return ProtocolBody([], compacted)
    if not compacted:
        jobs = [Job.parse(raw) for raw in _counted(items, limits, "input")]
        return _checked(ProtocolBody(jobs, False), size, limits, raw)
    _, destinations = _compacted_parts(body, limits)
    parsed = ProtocolBody([Job.parse(raw, destinations) for raw in items], True)
    return _checked(parsed, size, limits, raw)


def _counted(items: list[Any], limits: Limits, field: str) -> list[Any]:
    if len(items) > limits.max_jobs:
        msg = (
            f"a request holds at most {limits.max_jobs} jobs (MAX_PROTOCOL_JOBS), not {len(items)}"
        )
        raise PayloadTooLarge(msg, field=field)
    return items


def _compacted_parts(body: Any, limits: Limits) -> tuple[list[Any], dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("input"), list):
        msg = f"a {COMPACTED} body is an object with an input array"
        raise BadRequest(msg, field="input")
    destinations = body.get("destinations")
    if not isinstance(destinations, dict):
        msg = f"a {COMPACTED} body maps destination ids to destinations"
        raise BadRequest(msg, field="destinations")
    return _counted(body["input"], limits, "input"), destinations


def _checked(
    parsed: ProtocolBody, size: int, limits: Limits, raw: bytes | bytearray | None
) -> ProtocolBody:
    """Mark each job whose message is too deep or too large; the others are left alone."""
    # No event is larger than the whole body, nor deeper than the body's brackets nest less
    # the two (or three) levels of jobs around it, plus one for a value inside the innermost:
    # most bodies skip the walks.
    measure = size > limits.max_event_bytes
    walk = raw is None or not parsed_nests_within(raw, limits.max_depth + 1)
    if not (measure or walk):
        return parsed
    jobs = list(parsed.jobs)
    deep: dict[int, bool] = {}  # by destination: a compacted body's jobs share a few
    for index, job in enumerate(jobs):
        if walk:
            job = jobs[index] = _echoable(job, limits.max_depth, deep)
        if job.error is not None:
            continue
        error = _event_error(job.message, limits, measure=measure, walk=walk)
        if error is not None:
            jobs[index] = replace(job, error=error)
    return replace(parsed, jobs=jobs)


def _echoable(job: Job, limit: int, deep: dict[int, bool]) -> Job:
    """``job``, or when its destination or metadata nests deeper than ``limit`` the job with
    that part's error and the part cut to its entries that do not (metadata still carries the
    jobId rudder-server matches the answer by)."""
    destination = job.destination
    too_deep_destination = deep.get(id(destination))
    if too_deep_destination is None:
        too_deep_destination = deep[id(destination)] = too_deep(destination, limit)
    if too_deep_destination:
        message = f"destination is nested deeper than {limit} levels"
        error = InvalidEvent(message, field="destination")
        return replace(
            job,
            destination=_cut(destination, limit),
            metadata=_cut(job.metadata, limit),
            error=error,
        )
    if too_deep(job.metadata, limit):
        error = InvalidEvent(f"metadata is nested deeper than {limit} levels", field="metadata")
        return replace(job, metadata=_cut(job.metadata, limit), error=error)
    return job


def _cut(value: Any, limit: int) -> Any:
    """A JSON object's entries that nest within ``limit`` with it; anything else whole if it
    does, else ``None``."""
    if not too_deep(value, limit):
        return value
    if isinstance(value, dict):
        return {key: item for key, item in value.items() if not too_deep(item, limit - 1)}
    return None


def _event_error(message: Any, limits: Limits, *, measure: bool, walk: bool) -> InvalidEvent | None:
    if walk and too_deep(message, limits.max_depth):
        return InvalidEvent(
            f"event is nested deeper than {limits.max_depth} levels", field="message"
        )
    if measure and len(orjson.dumps(message)) > limits.max_event_bytes:
        return EventTooLarge(
            f"event is larger than {limits.max_event_bytes} bytes", field="message"
        )
    return None
