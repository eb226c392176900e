"""The profile-subscription bulk job for identify and group, with D2 (docs/mapping.md §7)."""

from __future__ import annotations

from typing import Any

from .. import planned
from ..ingest.config import DestinationConfig
from ..ingest.events import RudderEvent
from ..js import MISSING, JsonObject, truthy
from ..planned import PlannedRequest
from .fields import CHANNELS, MARKETING, PHONE, SUBSCRIPTION_EMAIL
from .lookups import drop_nulls, lookup


def subscription_settings(traits: Any) -> JsonObject:
    """``T.properties`` when it is an object: where subscribe, listId and consent live."""
    if isinstance(traits, dict):
        properties = traits.get("properties")
        if isinstance(properties, dict):
            return properties
    return {}


def build_subscription(
    event: RudderEvent, settings: JsonObject, config: DestinationConfig, list_id: Any
) -> PlannedRequest:
    entry: JsonObject = {
        "email": lookup(event, SUBSCRIPTION_EMAIL),
        "phone_number": lookup(event, PHONE),
    }
    channels = _channels(settings, config)
    if channels is not None:
        entry["channels"] = channels
    attributes: JsonObject = {}
    if list_id is not MISSING:
        attributes["list_id"] = list_id
    attributes["subscriptions"] = [drop_nulls({k: v for k, v in entry.items() if v is not MISSING})]
    return planned.subscribe(attributes)


def _channels(settings: JsonObject, config: DestinationConfig) -> dict[str, list[str]] | None:
    consent = settings.get("consent")
    if not truthy(consent):
        consent = config.consent
    # D2: an explicit per-user smsConsent: true adds SMS; the dashboard flag never does.
    sms_opt_in = settings.get("smsConsent") is True
    if not truthy(consent) and not sms_opt_in:
        return None
    values = consent if isinstance(consent, list) else [consent] if truthy(consent) else []
    if sms_opt_in and "sms" not in values:
        values = [*values, "sms"]
    return {key: list(MARKETING) for wanted, key in CHANNELS if wanted in values}
