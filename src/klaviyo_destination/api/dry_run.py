"""``/v1/transform`` and ``klaviyo-destination transform``: what ``/v1/events`` would send.

Nothing is sent and no key is needed: the headers show it masked. It plans at the revision
``KLAVIYO_API_VERSION`` names, as delivery does, and says what delivery says where that is
known before sending: the phone rule's changes, warnings and rejections (``phones.py``), and a
list job's entry delivery refuses before merging (``klaviyo/refusals.py``). It shows each
event's own requests; delivery merges the list jobs of a batch per list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import DestinationError
from ..ingest.config import DestinationConfig
from ..js import JsonObject
from ..klaviyo.facts import ON_CONFLICT, klaviyo_headers
from ..klaviyo.refusals import refusal
from ..phones import PhoneRule
from ..pipeline import plan_events
from ..planned import LIST_JOBS, PlannedEvent, PlannedRequest


def dry_run(
    messages: Sequence[Any], config: DestinationConfig, base_url: str, *, phones: PhoneRule
) -> list[JsonObject]:
    """One result per event: ``planned`` with its requests, or ``rejected`` with the reason;
    ``warnings`` as delivery gives them."""
    results = []
    for event in plan_events(messages, config, require_key=False, phones=phones):
        result: JsonObject = {**event.header}
        if (error := _rejection(event)) is not None:
            result.update(status="rejected", requests=[], error=error.to_dict())
        else:
            result.update(status="planned", requests=[_shown(r, base_url) for r in event.requests])
        if event.warnings:
            result["warnings"] = list(event.warnings)
        results.append(result)
    return results


def _rejection(event: PlannedEvent) -> DestinationError | None:
    """The mapping's error, or the refusal delivery meets before merging its list jobs."""
    if event.error is not None:
        return event.error
    for request in event.requests:
        if request.endpoint in LIST_JOBS and (refused := refusal(request)):
            return refused
    return None


def _shown(request: PlannedRequest, base_url: str) -> JsonObject:
    shown: JsonObject = {
        "method": request.method,
        "url": base_url.rstrip("/") + request.path,
        "headers": klaviyo_headers(None, request.revision.name),
        "body": request.body,
    }
    if request.upsert:
        shown["on_conflict"] = ON_CONFLICT
    return shown
