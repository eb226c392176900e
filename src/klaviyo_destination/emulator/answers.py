"""The profile resource as Klaviyo answers it at the profile-import revisions (2024-10-15 on).

Shaped by the revision's ``PostProfileResponse`` schema: relationships and the top-level
``links`` are those the schema lists (2024-10-15 has neither ``push-tokens`` nor top-level
links). ``subscriptions`` and ``predictive_analytics`` come only when
``additional-fields[profile]`` asks for them, as Klaviyo's docs say; relationships carry links,
not data, unless included, which the emulator does not do.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from klaviyo_destination.emulator.models import Consent, JsonObject, Profile
from klaviyo_destination.emulator.resources import (
    LOCATION_FIELDS,
    relationship_links,
    render_time,
)
from klaviyo_destination.emulator.schema import Schemas
from klaviyo_destination.emulator.store import EmulatorStore

_FIELDS: Final = (
    "email",
    "phone_number",
    "external_id",
    "first_name",
    "last_name",
    "organization",
    "locale",
    "title",
    "image",
)
_LOCATION: Final = (*LOCATION_FIELDS, "ip")
_RELATIONSHIPS: Final = ("lists", "segments", "push-tokens")
#: What Klaviyo shows for a channel a profile never consented on.
_NEVER: Final = "NEVER_SUBSCRIBED"


def additional_fields(query: str | None) -> frozenset[str]:
    """``additional-fields[profile]=subscriptions,predictive_analytics`` as a set."""
    return frozenset(part.strip() for part in (query or "").split(",") if part.strip())


def document(
    schemas: Schemas, record: Profile, store: EmulatorStore, base_url: str, extra: Collection[str]
) -> JsonObject:
    """The answer of profile-import and of GET /api/profiles/{id}."""
    answer: JsonObject = {"data": resource(schemas, record, store, base_url, extra)}
    if schemas.allows("PostProfileResponse", "links"):
        answer["links"] = {"self": answer["data"]["links"]["self"]}
    return answer


def resource(
    schemas: Schemas, record: Profile, store: EmulatorStore, base_url: str, extra: Collection[str]
) -> JsonObject:
    attributes: JsonObject = {name: record.fields.get(name) for name in _FIELDS}
    attributes |= {
        "created": render_time(record.created),
        "updated": render_time(record.updated),
        "last_event_date": render_time(record.last_event_date),
        "location": {name: record.location.get(name) for name in _LOCATION},
        "properties": dict(record.properties),
    }
    if "subscriptions" in extra:
        attributes["subscriptions"] = subscriptions(record, store)
    if "predictive_analytics" in extra:
        attributes["predictive_analytics"] = {}
    self_url = f"{base_url}/api/profiles/{record.id}/"
    listed = schemas.definitions["PostProfileResponse"]["properties"]["data"]["properties"]
    relationships = {
        name: {"links": relationship_links(self_url, name)}
        for name in _RELATIONSHIPS
        if name in listed["relationships"]["properties"]
    }
    return {
        "type": "profile",
        "id": record.id,
        "attributes": attributes,
        "relationships": relationships,
        "links": {"self": self_url},
    }


def subscriptions(record: Profile, store: EmulatorStore) -> JsonObject:
    """Email and SMS marketing consent; list-level unsubscribes show as list suppressions."""
    email = record.consent.get("email")
    sms = record.consent.get("sms")
    list_suppressions = [
        {"list_id": list_id, "reason": "UNSUBSCRIBE", "timestamp": render_time(consent.timestamp)}
        for list_id, profiles in store.list_consent.items()
        if (consent := profiles.get(record.id, {}).get("email")) and consent.consent != "SUBSCRIBED"
    ]
    marketing = _marketing(email, "can_receive_email_marketing") | {
        "custom_method_detail": email.custom_method_detail if email else None,
        "double_optin": False if email else None,
        "suppression": _suppression(email),
        "list_suppressions": list_suppressions,
    }
    return {
        "email": {"marketing": marketing},
        "sms": {"marketing": _marketing(sms, "can_receive_sms_marketing")},
    }


def _marketing(consent: Consent | None, can_receive: str) -> JsonObject:
    return {
        can_receive: consent is not None and consent.consent == "SUBSCRIBED",
        "consent": consent.consent if consent else _NEVER,
        "consent_timestamp": render_time(consent.timestamp) if consent else None,
        "last_updated": render_time(consent.timestamp) if consent else None,
        "method": consent.method if consent else None,
        "method_detail": consent.method_detail if consent else None,
    }


def _suppression(consent: Consent | None) -> list[JsonObject]:
    if consent is None or consent.consent != "UNSUBSCRIBED":
        return []
    return [{"reason": "UNSUBSCRIBE", "timestamp": render_time(consent.timestamp)}]
