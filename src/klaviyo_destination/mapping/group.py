"""Group → a subscription job to the list named by ``groupId`` (docs/mapping.md §9)."""

from __future__ import annotations

from ..errors import InvalidEvent
from ..ingest.config import DestinationConfig
from ..ingest.events import Group
from ..js import truthy
from ..planned import PlannedRequest
from .subscription import build_subscription, subscription_settings


def plan(event: Group, config: DestinationConfig) -> list[PlannedRequest]:
    if not truthy(event.group_id):
        raise InvalidEvent("groupId is a required field for group events", field="groupId")
    # Q6 fixed: no traits is the same "do not subscribe" answer, not the reference's crash.
    if event.traits is None or not truthy(event.traits.get("subscribe")):
        raise InvalidEvent("Subscribe flag should be true for group call", field="traits.subscribe")
    # Q7 fixed: the type is compared case-insensitively, so groupId always names the list.
    settings = subscription_settings(event.traits)
    return [build_subscription(event, settings, config, event.group_id)]
