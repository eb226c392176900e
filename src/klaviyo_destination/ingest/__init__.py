"""The edge of the pipeline: raw JSON in, typed events and destination configs out."""

from .body import Events, events_of, parse_json
from .config import DestinationConfig, check_api_version, from_settings, parse_config
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
    "check_api_version",
    "events_of",
    "from_settings",
    "parse",
    "parse_config",
    "parse_json",
]
