"""Test helpers over the real pipeline: one raw event planned, or its error raised."""

from __future__ import annotations

from typing import Any

from klaviyo_destination.ingest import DestinationConfig
from klaviyo_destination.js import JsonObject
from klaviyo_destination.klaviyo.facts import ON_CONFLICT
from klaviyo_destination.pipeline import plan_event
from klaviyo_destination.planned import PlannedRequest


def plan_or_raise(message: Any, config: DestinationConfig) -> list[PlannedRequest]:
    """The requests ``/v1/events`` would send for ``message``; its ``DestinationError`` if none."""
    event = plan_event(message, config)
    if event.error is not None:
        raise event.error
    return event.requests


def as_row(request: PlannedRequest) -> JsonObject:
    """A planned request in the golden tables' form (``tests/cases/*.json``)."""
    row: JsonObject = {"method": request.method, "path": request.path, "body": request.body}
    if request.upsert:
        row["on_conflict"] = ON_CONFLICT
    return row
