"""Pure mapping: a RudderStack event and a destination config in, planned Klaviyo requests out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, assert_never

from ..errors import ConfigurationError
from ..klaviyo import PlannedRequest
from ..rudder import (
    DestinationConfig,
    Event,
    Group,
    Identify,
    Screen,
    Track,
    check_api_version,
    event_type_as_sent,
    parse_event,
)
from . import group, identify, track
from .batching import merge_subscriptions

__all__ = ["merge_subscriptions", "plan", "transform"]


def plan(event: Event, config: DestinationConfig) -> list[PlannedRequest]:
    """The Klaviyo requests for one validated event, in delivery order."""
    match event:
        case Identify():
            return identify.plan(event, config)
        case Track() | Screen():
            return track.plan(event, config)
        case Group():
            return group.plan(event, config)
        case _:
            assert_never(event)


def transform(message: Mapping[str, Any], config: DestinationConfig) -> list[PlannedRequest]:
    """Validate and plan one raw event, checking in the reference's order (§2)."""
    check_api_version(config)
    event_type = event_type_as_sent(message)
    if config.private_api_key is None or not config.private_api_key.get_secret_value():
        raise ConfigurationError(
            f"Private API Key is a required field for {event_type} events", field="privateApiKey"
        )
    return plan(parse_event(message), config)
