"""The edge of the pipeline: raw JSON in, typed events and destination configs out."""

from .body import Events, events_of, parse_json
from .config import DestinationConfig, from_settings, parse_config, revision_of
from .events import EVENT, Event, Group, Identify, RudderEvent, Screen, Track
from .parse import Identity, parse

__all__ = [
    "EVENT",
    "DestinationConfig",
    "Event",
    "Events",
    "Group",
    "Identify",
    "Identity",
    "RudderEvent",
    "Screen",
    "Track",
    "events_of",
    "from_settings",
    "parse",
    "parse_config",
    "parse_json",
    "revision_of",
]
