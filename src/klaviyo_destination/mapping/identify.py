"""Identify → create-or-update profile, and a subscription job (docs/mapping.md §6); at
apiVersion v2/v3 → profile-import, and a subscribe or unsubscribe job (§18)."""

from __future__ import annotations

import copy
from typing import Any

from .. import planned
from ..errors import InvalidEvent
from ..ingest.config import DestinationConfig
from ..ingest.events import Identify
from ..js import MISSING, JsonObject, truthy
from ..klaviyo.facts import Revision
from ..planned import PlannedRequest
from .fields import PROFILE_ATTRIBUTES, USER_ID
from .list_jobs import list_job
from .lookups import custom_traits, drop_nulls, lookup, map_event, traits_object
from .paths import flatten, set_path
from .profile import profile_data
from .subscription import build_subscription, subscription_settings

NO_EMAIL_OR_PHONE = "None of email and phone are present in the payload"


def plan(event: Identify, config: DestinationConfig, _: Revision) -> list[PlannedRequest]:
    event, traits = _mapped_to_destination(event)
    attributes = map_event(PROFILE_ATTRIBUTES, event)
    custom = custom_traits(event)
    if config.enforce_email_as_primary:
        if not truthy(attributes.get("email")) and not truthy(attributes.get("phone_number")):
            raise InvalidEvent(NO_EMAIL_OR_PHONE, field="traits.email")
        attributes.pop("external_id", None)
        custom.pop("_id", None)  # re-added last, as the reference places it
        user_id = lookup(event, USER_ID)
        if user_id is not MISSING:
            custom["_id"] = user_id
    properties = drop_nulls(custom)
    if config.flatten_properties:
        properties = flatten(properties)
    if properties:
        attributes["properties"] = properties
    requests = [planned.create_profile({"data": {"type": "profile", "attributes": attributes}})]
    settings = subscription_settings(traits)
    list_id = settings.get("listId") if truthy(settings.get("listId")) else config.list_id
    if truthy(settings.get("subscribe")) and truthy(list_id):
        requests.append(build_subscription(event, settings, config, list_id))
    return requests


def plan_import(
    event: Identify, config: DestinationConfig, revision: Revision, *, phone_check: bool = True
) -> list[PlannedRequest]:
    """§18: the profile upsert; a defined ``subscribe`` and a list add the list job (§19.1).
    ``phone_check``: see ``profile_data``."""
    event, traits = _mapped_to_destination(event)
    # no look-up: profile-import upserts
    data = profile_data(event, config, identify=True, phone_check=phone_check)
    requests = [planned.import_profile(data, revision)]
    settings = subscription_settings(traits)
    subscribe = settings.get("subscribe")
    list_id = settings.get("listId") if truthy(settings.get("listId")) else config.list_id
    if subscribe is not None and truthy(list_id):
        job = list_job(
            event, traits, config, revision, subscribe=truthy(subscribe), list_id=list_id
        )
        requests.append(job)
    return requests


def _mapped_to_destination(event: Identify) -> tuple[Identify, Any]:
    """§6.2, the rETL pre-step. Returns the event to map and the traits object for subscribing.

    The reference mutates the message; here a modified copy is made, so the input stays intact.
    """
    traits = traits_object(event)
    context = event.context or {}
    if not truthy(context.get("mappedToDestination")):
        return event, traits
    external_ids = context.get("externalId") or []
    external = external_ids[0] if external_ids and isinstance(external_ids[0], dict) else {}
    identifier_type, external_id = external.get("identifierType"), external.get("id", MISSING)
    if isinstance(traits, dict) and isinstance(identifier_type, str) and identifier_type:
        traits = copy.deepcopy(traits)
        set_path(traits, identifier_type, None if external_id is MISSING else external_id)
        event = _with_traits(event, traits)
    if truthy(external_id):
        event = event.copy_with(user_id=external_id)
    return event, _subscribe_by_default(traits)


def _with_traits(event: Identify, traits: JsonObject) -> Identify:
    if event.traits is not None:
        return event.copy_with(traits=traits)
    context = {**(event.context or {}), "traits": traits}
    return event.copy_with(context=context)


def _subscribe_by_default(traits: Any) -> Any:
    """A rETL identify subscribes unless it says ``subscribe: false`` (§6.2 step 3)."""
    if traits is None:
        return None
    properties = traits.get("properties") if isinstance(traits, dict) else None
    if not truthy(properties):
        return {"properties": {"subscribe": True}}
    if isinstance(properties, dict) and "subscribe" not in properties:
        return {**traits, "properties": {**properties, "subscribe": True}}
    return traits
