"""One raw event through the pure stages: parse at the edge, then map (no I/O).

Every front uses this: ``/v1/events`` and the dry run, the CLI, and the rudder-server protocol.
The webhook path's fronts pass a :class:`PhoneRule` (Part A 11), at every revision; the protocol
passes none, so it gets exactly the reference's requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import DestinationError
from .ingest.config import DestinationConfig, revision_of
from .ingest.parse import parse
from .mapping import plan
from .phones import PhoneRule
from .planned import PlannedEvent


def plan_event(
    raw: Any,
    config: DestinationConfig,
    *,
    require_key: bool = True,
    phones: PhoneRule | None = None,
) -> PlannedEvent:
    """The planned requests of one raw event, or the error that rejects it."""
    (message_id, event_type, user_key), event = parse(raw, config, require_key=require_key)
    if isinstance(event, DestinationError):
        return PlannedEvent(message_id, event_type, user_key, error=event)
    try:
        revision = revision_of(config)  # parse checked it: no error here
        requests = plan(event, config, revision, phones_settled=phones is not None)
        if phones is not None:
            requests, warnings = phones.apply(event, requests)
            return PlannedEvent(message_id, event_type, user_key, requests, warnings=warnings)
    except DestinationError as error:
        return PlannedEvent(message_id, event_type, user_key, error=error)
    return PlannedEvent(message_id, event_type, user_key, requests)


def plan_events(
    raws: Sequence[Any],
    config: DestinationConfig,
    *,
    require_key: bool = True,
    phones: PhoneRule | None = None,
) -> list[PlannedEvent]:
    return [plan_event(raw, config, require_key=require_key, phones=phones) for raw in raws]
