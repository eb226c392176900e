"""Pure mapping: a typed event and a destination config in, planned Klaviyo requests out.

No I/O and no settings: what each event type becomes is described in docs/mapping.md.
"""

from __future__ import annotations

from typing import assert_never

from ..ingest.config import DestinationConfig
from ..ingest.events import Event, Group, Identify, Screen, Track
from ..planned import PlannedRequest
from . import group, identify, track
from .batching import merge_subscriptions

__all__ = ["merge_subscriptions", "plan"]


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
