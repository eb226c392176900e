"""Parse at the edge: a raw JSON value and a destination config become a typed event or an error.

The checks run in the reference's order (docs/mapping.md §2): apiVersion, event type present,
private key present, event type supported, then the fields the mapping reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from ..errors import ConfigurationError, DestinationError, InvalidEvent, UnsupportedEvent
from ..js import truthy
from .config import DestinationConfig, check_api_version
from .events import Event, Group, Identify, Screen, Track

EVENT_MODELS: Final[Mapping[str, type[Event]]] = {
    "identify": Identify,
    "track": Track,
    "screen": Screen,
    "group": Group,
}


def parse(
    raw: Any, config: DestinationConfig, *, require_key: bool = True
) -> Event | DestinationError:
    """The typed event, or why it cannot be mapped.

    ``require_key=False`` is for the dry run, which shows the key masked and sends nothing.
    """
    try:
        return _parse(raw, config, require_key=require_key)
    except DestinationError as error:
        return error


def _parse(raw: Any, config: DestinationConfig, *, require_key: bool) -> Event:
    if not isinstance(raw, dict):
        raise InvalidEvent("each event must be a JSON object", field="event")
    check_api_version(config)
    event_type = raw.get("type")
    if not truthy(event_type):
        raise InvalidEvent("Event type is required", field="type")
    if require_key and not config.has_key:
        raise ConfigurationError(
            f"Private API Key is a required field for {event_type} events", field="privateApiKey"
        )
    lowered = event_type.lower() if isinstance(event_type, str) else str(event_type).lower()
    model = EVENT_MODELS.get(lowered) if isinstance(event_type, str) else None
    if model is None:
        raise UnsupportedEvent(f"Event type {lowered} is not supported", field="type")
    return model.parse(raw)
