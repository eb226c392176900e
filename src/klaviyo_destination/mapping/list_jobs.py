"""apiVersion v2/v3: subscribing a profile to a list, or unsubscribing it (docs/mapping.md §19).

Identify and group build the same job; what differs by revision is data on the revision:
whether the profile must carry ``subscriptions`` (v3's strict consent).
"""

from __future__ import annotations

from typing import Any

from .. import planned
from ..errors import InvalidEvent
from ..ingest.config import DestinationConfig
from ..ingest.events import RudderEvent
from ..js import MISSING, JsonObject, truthy
from ..klaviyo.facts import Revision
from ..planned import PlannedRequest
from .fields import CONSENT_CHANNELS, CONSENT_STATUS, NO_IDENTIFIER, NO_SUBSCRIPTIONS, PHONE
from .fields import SUBSCRIPTION_EMAIL as EMAIL
from .lookups import lookup
from .profile import profile_id_of


def list_job(
    event: RudderEvent,
    traits: Any,
    config: DestinationConfig,
    revision: Revision,
    *,
    subscribe: bool,
    list_id: Any,
) -> PlannedRequest:
    """One profile's job for ``list_id``; ``traits`` is the event's traits object (§19.1)."""
    contact = {"email": lookup(event, EMAIL), "phone_number": lookup(event, PHONE)}
    attributes: JsonObject = {key: value for key, value in contact.items() if value is not MISSING}
    consent = _consent(traits, config)
    # v2 states consent only when subscribing with some; v3 always states it (§19.4).
    if revision.subscriptions_required or (subscribe and truthy(consent)):
        subscriptions = _subscriptions(consent, contact, subscribe)
        if subscriptions:
            attributes["subscriptions"] = subscriptions
        elif revision.subscriptions_required:
            raise InvalidEvent(NO_SUBSCRIPTIONS, field="consent")
    profile: JsonObject = {"type": "profile"}
    profile_id = profile_id_of(event) if subscribe else None  # never on an unsubscribe
    if profile_id is not None:
        profile["id"] = profile_id
    profile["attributes"] = attributes
    if not truthy(contact["email"]) and not truthy(contact["phone_number"]) and truthy(profile_id):
        raise InvalidEvent(NO_IDENTIFIER[subscribe], field="traits.email")
    return planned.list_job(subscribe, list_id, [profile], revision)


def _consent(traits: Any, config: DestinationConfig) -> Any:
    """§19.3: ``traits.consent``, else ``traits.properties.consent``, else ``Config.consent``,
    the first truthy one."""
    if isinstance(traits, dict):
        if truthy(found := traits.get("consent")):
            return found
        properties = traits.get("properties")
        if isinstance(properties, dict) and truthy(found := properties.get("consent")):
            return found
    return config.consent


def _subscriptions(consent: Any, contact: JsonObject, subscribe: bool) -> JsonObject:
    """A channel for each consent value present, when the profile has its identifier."""
    channels = consent if isinstance(consent, list) else [consent]
    return {
        channel: {"marketing": {"consent": CONSENT_STATUS[subscribe]}}
        for channel, identifier in CONSENT_CHANNELS
        if channel in channels and truthy(contact[identifier])
    }
