"""JSON:API renderings of the stored records (response bodies and the human state dump)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Final

from klaviyo_destination.emulator.models import (
    Consent,
    EventRecord,
    JsonObject,
    Membership,
    Profile,
)
from klaviyo_destination.emulator.store import EmulatorStore

_PROFILE_FIELDS: Final = (
    "email",
    "phone_number",
    "external_id",
    "anonymous_id",
    "first_name",
    "last_name",
    "organization",
    "title",
    "image",
)
#: Location members as revision 2023-02-22 answers them (later ones add ``ip``).
LOCATION_FIELDS: Final = (
    "address1",
    "address2",
    "city",
    "country",
    "latitude",
    "longitude",
    "region",
    "zip",
    "timezone",
)


def render_time(value: datetime | None) -> str | None:
    # Klaviyo renders "2023-02-21T20:07:38+00:00": whole seconds.
    return None if value is None else value.replace(microsecond=0).isoformat()


def _consent(consent: Consent | None, *, email: bool) -> JsonObject | None:
    if consent is None:
        return None
    out: JsonObject = {
        "consent": consent.consent,
        "timestamp": render_time(consent.timestamp),
        "method": consent.method,
        "method_detail": consent.method_detail,
    }
    if email:
        out |= {
            "custom_method_detail": consent.custom_method_detail,
            "double_optin": False,
            "suppressions": [],
            "list_suppressions": [],
        }
    return out


def profile(record: Profile, base_url: str, list_ids: Iterable[str] = ()) -> JsonObject:
    """The profile resource as create/update/get return it (all keys present, nulls kept);
    ``list_ids`` are the lists it is a member of (the emulator keeps no segments)."""
    location = {name: record.location.get(name) for name in LOCATION_FIELDS}
    attributes = {name: record.fields.get(name) for name in _PROFILE_FIELDS}
    email_consent = _consent(record.consent.get("email"), email=True)
    sms_consent = _consent(record.consent.get("sms"), email=False)
    attributes |= {
        "created": render_time(record.created),
        "updated": render_time(record.updated),
        "last_event_date": render_time(record.last_event_date),
        "location": location,
        "properties": dict(record.properties),
        "subscriptions": {
            "email": {"marketing": email_consent} if email_consent else None,
            "sms": {"marketing": sms_consent} if sms_consent else None,
        },
    }
    self_url = f"{base_url}/api/profiles/{record.id}/"
    return {
        "type": "profile",
        "id": record.id,
        "attributes": attributes,
        "relationships": {
            "lists": _related(self_url, "lists", [{"type": "list", "id": i} for i in list_ids]),
            "segments": _related(self_url, "segments", []),
        },
        "links": {"self": self_url},
    }


def _related(self_url: str, name: str, data: list[JsonObject]) -> JsonObject:
    return {"data": data, "links": relationship_links(self_url, name)}


def relationship_links(self_url: str, name: str) -> JsonObject:
    return {"self": f"{self_url}relationships/{name}/", "related": f"{self_url}{name}/"}


def event(record: EventRecord, base_url: str) -> JsonObject:
    """Klaviyo's event attributes (``timestamp``, ``datetime``, ``uuid``, ``event_properties``)
    plus the emulator's own ``metric_name``, ``profile_id``, ``unique_id`` and ``value``, so a
    test can see what was stored without following relationships."""
    return {
        "type": "event",
        "id": record.id,
        "attributes": {
            "timestamp": int(record.time.timestamp()),
            "datetime": render_time(record.time),
            "uuid": record.id,
            "event_properties": dict(record.properties),
            "metric_name": record.metric_name,
            "profile_id": record.profile_id,
            "unique_id": record.unique_id,
            "value": record.value,
        },
        "relationships": {
            "profile": {"data": {"type": "profile", "id": record.profile_id}},
        },
        "links": {"self": f"{base_url}/api/events/{record.id}/"},
    }


def membership(record: Membership, member: Profile) -> JsonObject:
    return {
        "profile_id": record.profile_id,
        "email": member.fields.get("email"),
        "phone_number": member.fields.get("phone_number"),
        "channels": list(record.channels),
        "custom_source": record.custom_source,
        "added": render_time(record.added),
    }


def state(store: EmulatorStore, base_url: str) -> JsonObject:
    """Everything the emulator holds, for people: what ``make run`` points them to.

    ``consent`` is per list, profile and channel (email or sms marketing): what subscribe and
    unsubscribe jobs gave or took on that list; account-wide consent is on the profile.
    """
    return {
        "profiles": [
            profile(p, base_url, store.list_ids_of(p.id)) for p in store.profiles.values()
        ],
        "events": [event(e, base_url) for e in store.events],
        "lists": {
            list_id: [membership(m, store.profiles[m.profile_id]) for m in members.values()]
            for list_id, members in store.lists.items()
        },
        "consent": {
            list_id: {
                profile_id: {channel: _list_consent(c) for channel, c in channels.items()}
                for profile_id, channels in profiles.items()
            }
            for list_id, profiles in store.list_consent.items()
        },
        "dropped_events": store.dropped_events,
        "faults": store.faults.describe(),
        "rate_limits": rate_limits(store),
    }


def _list_consent(consent: Consent) -> JsonObject:
    return {"consent": consent.consent, "timestamp": render_time(consent.timestamp)}


def rate_limits(store: EmulatorStore) -> JsonObject:
    limiter = store.limiter
    return {
        "enabled": limiter.enabled,
        "send_retry_after": limiter.send_retry_after,
        "limits": {
            name.value: {"burst": limit.burst, "steady": limit.steady}
            for name, limit in limiter.limits.items()
        },
    }
