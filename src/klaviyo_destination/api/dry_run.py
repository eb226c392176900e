"""``/v1/transform`` and ``klaviyo-destination transform``: what ``/v1/events`` would send.

Nothing is sent and no key is needed: the headers show it masked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..ingest.config import DestinationConfig
from ..js import JsonObject
from ..klaviyo.facts import ON_CONFLICT, klaviyo_headers
from ..pipeline import plan_events
from ..planned import PlannedRequest


def dry_run(messages: Sequence[Any], config: DestinationConfig, base_url: str) -> list[JsonObject]:
    """One result per event: ``planned`` with its requests, or ``rejected`` with the reason."""
    results = []
    for event in plan_events(messages, config, require_key=False):
        result: JsonObject = {**event.header}
        if event.error is not None:
            result.update(status="rejected", requests=[], error=event.error.to_dict())
        else:
            result.update(status="planned", requests=[_shown(r, base_url) for r in event.requests])
        results.append(result)
    return results


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
