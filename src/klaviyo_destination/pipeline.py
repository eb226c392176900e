"""One raw event through the pure stages: parse at the edge, then map (no I/O).

Every front uses this: ``/v1/events`` and the dry run, the CLI, and the rudder-server protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import DestinationError
from .ingest.config import DestinationConfig, revision_of
from .ingest.parse import parse
from .mapping import plan
from .planned import PlannedEvent


def plan_event(raw: Any, config: DestinationConfig, *, require_key: bool = True) -> PlannedEvent:
    """The planned requests of one raw event, or the error that rejects it."""
    (message_id, event_type, user_key), event = parse(raw, config, require_key=require_key)
    if isinstance(event, DestinationError):
        return PlannedEvent(message_id, event_type, user_key, error=event)
    try:
        requests = plan(event, config, revision_of(config))  # parse checked it: no error here
    except DestinationError as error:
        return PlannedEvent(message_id, event_type, user_key, error=error)
    return PlannedEvent(message_id, event_type, user_key, requests)


def plan_events(
    raws: Sequence[Any], config: DestinationConfig, *, require_key: bool = True
) -> list[PlannedEvent]:
    return [plan_event(raw, config, require_key=require_key) for raw in raws]
