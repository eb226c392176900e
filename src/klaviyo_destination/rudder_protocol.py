"""rudder-server's transformer protocol: processor and router envelopes (spec §11, §12).

Each event carries its own ``destination.Config`` (and so its own key). Identify performs the
create-profile look-up here, through an injected ``ProfileLookup``, as the reference does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import SecretStr

from .errors import DestinationError, InvalidEvent
from .klaviyo import DEFAULT_BASE_URL, JsonObject, PlannedRequest, auth_headers
from .mapping import transform
from .profile_lookup import ProfileLookup, Resolved, resolve_identify
from .rudder import parse_config

DEST_TYPE: Final = "KLAVIYO"


@dataclass(frozen=True, slots=True)
class Job:
    """One element of a processor or router request."""

    message: Any
    metadata: Any
    destination: Mapping[str, Any]

    @classmethod
    def parse(cls, raw: Any) -> Job:
        raw = raw if isinstance(raw, dict) else {}
        destination = raw.get("destination")
        return cls(
            raw.get("message"),
            raw.get("metadata"),
            destination if isinstance(destination, dict) else {},
        )

    @property
    def config(self) -> Mapping[str, Any]:
        config = self.destination.get("Config")
        return config if isinstance(config, dict) else {}


#: One job after transformation: its requests and key, or why it failed.
Transformed = tuple[Resolved, SecretStr] | DestinationError


async def transform_jobs(
    jobs: Sequence[Job], lookup: ProfileLookup, *, filter_code: bool
) -> list[Transformed]:
    """Plan every job, then make identify's look-ups concurrently; one result per job, in order.

    Only look-ups become tasks: a batch of track events is planned without scheduling any.
    """
    results: list[Transformed | None] = []
    pending: list[tuple[int, list[PlannedRequest], SecretStr]] = []
    for job in jobs:
        try:
            planned, key = _plan(job)
        except DestinationError as error:
            results.append(error)
            continue
        if planned[0].upsert:
            pending.append((len(results), planned, key))
            results.append(None)
        else:
            results.append((Resolved(planned), key))
    if pending:
        answers = await asyncio.gather(
            *(_resolve(planned, key, lookup, filter_code) for _, planned, key in pending)
        )
        for (index, _, _), answer in zip(pending, answers, strict=True):
            results[index] = answer
    return [result for result in results if result is not None]


def _plan(job: Job) -> tuple[list[PlannedRequest], SecretStr]:
    if not isinstance(job.message, dict):
        raise InvalidEvent("message must be a JSON object", field="message")
    config = parse_config(job.config)
    planned = transform(job.message, config)
    return planned, config.private_api_key or SecretStr("")


async def _resolve(
    planned: list[PlannedRequest], key: SecretStr, lookup: ProfileLookup, filter_code: bool
) -> Transformed:
    status, body = await lookup(planned[0].body, key)
    try:
        return resolve_identify(planned, status, body, filter_code=filter_code), key
    except DestinationError as error:
        return error


def envelope(
    request: PlannedRequest, key: SecretStr, *, processor: bool, base_url: str = DEFAULT_BASE_URL
) -> JsonObject:
    """The reference's REST envelope for one request (``userId`` only in processor mode)."""
    out: JsonObject = {
        "version": "1",
        "type": "REST",
        "method": request.method,
        "endpoint": base_url + request.path,
        "endpointPath": request.endpoint.value,
        "headers": auth_headers(key),
        "params": {},
        "body": {"JSON": request.body, "JSON_ARRAY": {}, "XML": {}, "FORM": {}},
        "files": {},
    }
    if processor:
        out["userId"] = ""
    return out


def stat_tags(error: DestinationError, metadata: Any, *, feature: str) -> JsonObject:
    meta = metadata if isinstance(metadata, dict) else {}
    tags: JsonObject = {"errorCategory": error.category}
    kind = error.error_kind
    if kind is not None:
        tags["errorType"] = kind
    tags.update(
        destType=DEST_TYPE,
        module="destination",
        implementation="native",
        feature=feature,
        destinationId=meta.get("destinationId"),
        workspaceId=meta.get("workspaceId"),
    )
    return tags


async def process(
    raw_jobs: Sequence[Any],
    lookup: ProfileLookup,
    *,
    filter_code: bool = False,
    base_url: str = DEFAULT_BASE_URL,
) -> list[JsonObject]:
    """``POST /v0/destinations/klaviyo``: one item per produced request, in input order.

    ``base_url`` prefixes the endpoints rudder-server will call (``KLAVIYO_BASE_URL``), so the
    look-up and the returned requests go to the same Klaviyo.
    """
    jobs = [Job.parse(raw) for raw in raw_jobs]
    results = await transform_jobs(jobs, lookup, filter_code=filter_code)
    items: list[JsonObject] = []
    for job, result in zip(jobs, results, strict=True):
        items.extend(_processor_items(job, result, base_url))
    return items


def _processor_items(job: Job, result: Transformed, base_url: str) -> list[JsonObject]:
    if isinstance(result, DestinationError):
        return [
            {
                "metadata": job.metadata,
                "statusCode": result.http_status,
                "error": result.message,
                "statTags": stat_tags(result, job.metadata, feature="processor"),
            }
        ]
    resolved, key = result
    items = []
    for request in resolved.requests:
        output = envelope(request, key, processor=True, base_url=base_url)
        if resolved.suppressed is not None:
            output.update(statusCode=299, error=resolved.suppressed)
        items.append({"output": output, "metadata": job.metadata, "statusCode": 200})
    return items
