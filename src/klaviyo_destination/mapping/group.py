"""Group → a subscription job to the list named by ``groupId`` (docs/mapping.md §9); at
apiVersion v2/v3 a subscribe or an unsubscribe job (§21)."""

from __future__ import annotations

from ..errors import InvalidEvent
from ..ingest.config import DestinationConfig
from ..ingest.events import Group
from ..js import truthy
from ..klaviyo.facts import Revision
from ..planned import PlannedRequest
from .fields import SUBSCRIBE_FLAG_MISSING
from .list_jobs import list_job
from .lookups import traits_object
from .subscription import build_subscription, subscription_settings

NO_GROUP_ID = "groupId is a required field for group events"


def plan(event: Group, config: DestinationConfig, _: Revision) -> list[PlannedRequest]:
    if not truthy(event.group_id):
        raise InvalidEvent(NO_GROUP_ID, field="groupId")
    # Q6 fixed: no traits is the same "do not subscribe" answer, not the reference's crash.
    if event.traits is None or not truthy(event.traits.get("subscribe")):
        raise InvalidEvent("Subscribe flag should be true for group call", field="traits.subscribe")
    # Q7 fixed: the type is compared case-insensitively, so groupId always names the list.
    settings = subscription_settings(event.traits)
    return [build_subscription(event, settings, config, event.group_id)]


def plan_import(
    event: Group, config: DestinationConfig, revision: Revision
) -> list[PlannedRequest]:
    """§21: ``traits.subscribe`` (or ``context.traits.subscribe``) defined: true subscribes,
    false unsubscribes; the list is always ``groupId`` (Q7 fixed here too)."""
    if not truthy(event.group_id):
        raise InvalidEvent(NO_GROUP_ID, field="groupId")
    traits = traits_object(event)
    subscribe = traits.get("subscribe") if traits is not None else None
    if subscribe is None:
        raise InvalidEvent(SUBSCRIBE_FLAG_MISSING, field="traits.subscribe")
    job = list_job(
        event, traits, config, revision, subscribe=truthy(subscribe), list_id=event.group_id
    )
    return [job]
