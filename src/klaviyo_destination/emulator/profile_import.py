"""Klaviyo's rules for profiles and events at the profile-import revisions (2024-10-15 on).

Bodies arrive as plain JSON that already passed the revision's schema (``schema.py``), so only
the rules a schema cannot say are checked here: email and E.164 phone formats, an identifier
to match on, who owns an identifier. ``anonymous_id`` and ``_kx`` are kept on the profile but
not matched on (the emulator keeps no web-tracking identity).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from klaviyo_destination.emulator.errors import duplicate_profile, invalid
from klaviyo_destination.emulator.event_profile import EventProfile
from klaviyo_destination.emulator.models import IDENTIFIERS, JsonObject, NewEvent, Profile
from klaviyo_destination.emulator.store import EmulatorStore, EventOutcome
from klaviyo_destination.emulator.validation import (
    EMAIL_DETAIL,
    PHONE_DETAIL,
    is_email,
    normalize_phone,
)

_PROFILE_POINTER: Final = "/data/attributes"
_EVENT_PROFILE_POINTER: Final = "/data/attributes/profile/data"
#: The newer OAS: "The time must be after the year 1990".
_EARLIEST_EVENT: Final = datetime(1990, 1, 1, tzinfo=UTC)
#: Members of a profile body that are not profile fields.
_NOT_FIELDS: Final = frozenset({"meta"})


def upsert(store: EmulatorStore, data: JsonObject) -> tuple[Profile, bool]:
    """Create (``True``) or update the profile ``data`` names: by ``id`` when given, else by
    the owner of its email, phone number or external id. Identifiers owned by two profiles
    are a 409 ``duplicate_profile``, as at 2023-02-22 (klaviyo-api-php#63)."""
    fields = profile_fields(data["attributes"], _PROFILE_POINTER)
    identifiers = _identifiers(fields)
    profile_id = data.get("id")
    if profile_id is None and not identifiers:
        detail = "A profile requires at least one of email, phone_number or external_id."
        raise invalid(detail, pointer=_PROFILE_POINTER)
    owners = store.owners_of(identifiers)
    target = store.get_profile(profile_id) if profile_id is not None else None
    others = [owner for owner in owners if target is None or owner != target.id]
    if (target is not None and others) or len(others) > 1:
        raise duplicate_profile(others[0])
    created = target is None and not owners
    profile = target or (store.profiles[owners[0]] if owners else store.new_profile())
    store.apply(profile, fields)
    meta = data.get("meta") or {}
    patch_properties(profile.properties, meta.get("patch_properties"))
    if not created:
        profile.updated = store.now()
    return profile, created


def create_event(store: EmulatorStore, attributes: JsonObject) -> EventOutcome:
    """An event in the newer shape: ``metric.data.attributes.name``, ``profile.data``."""
    data = attributes["profile"]["data"]
    fields = profile_fields(data["attributes"], f"{_EVENT_PROFILE_POINTER}/attributes")
    identifiers = _identifiers(fields)
    if data.get("id") is None and not identifiers and not fields.keys() & {"anonymous_id", "_kx"}:
        detail = "The profile must contain an identifier: id, email, phone_number or external_id."
        raise invalid(detail, pointer=_EVENT_PROFILE_POINTER)
    time = attributes.get("time")
    when = store.event_time(None if time is None else _utc(time), _EARLIEST_EVENT)
    if data.get("id") is not None:
        profile = _existing(store, data["id"])
    else:
        profile = store.match(identifiers) or store.new_profile()
    others = {k: v for k, v in fields.items() if k not in IDENTIFIERS}
    store.absorb(profile, EventProfile(identifiers))
    store.apply(profile, others)
    # Before 2026-10-15 meta sits in the attributes; from it, beside them (derive_schemas).
    meta = data.get("meta") or data["attributes"].get("meta") or {}
    patch_properties(profile.properties, meta.get("patch_properties"))
    value = attributes.get("value")
    metric = attributes["metric"]["data"]["attributes"]["name"]
    event = NewEvent(
        metric,
        dict(attributes["properties"]),
        None if value is None else float(value),
        when,
        attributes.get("value_currency"),
    )
    return store.store_event(profile, event, attributes.get("unique_id"))


def profile_fields(attributes: Mapping[str, Any], pointer: str) -> dict[str, Any]:
    """A profile body's fields, email checked and phone number in E.164 form."""
    fields = {name: value for name, value in attributes.items() if name not in _NOT_FIELDS}
    email = fields.get("email")
    if email is not None and not is_email(email):
        raise invalid(EMAIL_DETAIL, pointer=f"{pointer}/email")
    phone = fields.get("phone_number")
    if phone is not None:
        fields["phone_number"] = normalize_phone(phone)
        if fields["phone_number"] is None:
            raise invalid(PHONE_DETAIL, pointer=f"{pointer}/phone_number")
    return fields


def patch_properties(properties: dict[str, Any], patch: Mapping[str, Any] | None) -> None:
    """``meta.patch_properties``, after the body's own ``properties``: ``unset`` removes keys,
    ``append`` adds values to a key's array (a scalar becomes its first item), ``unappend``
    removes them. The order of the three is the emulator's choice; Klaviyo does not say."""
    if not patch:
        return
    unset = patch.get("unset")
    for key in [unset] if isinstance(unset, str) else unset or []:
        properties.pop(key, None)
    for key, value in (patch.get("append") or {}).items():
        current = properties.get(key)
        items = list(current) if isinstance(current, list) else [] if current is None else [current]
        properties[key] = items + (value if isinstance(value, list) else [value])
    for key, value in (patch.get("unappend") or {}).items():
        current = properties.get(key)
        if isinstance(current, list):
            removed = value if isinstance(value, list) else [value]
            properties[key] = [item for item in current if item not in removed]


def _identifiers(fields: Mapping[str, Any]) -> dict[str, str]:
    return {name: fields[name] for name in IDENTIFIERS if fields.get(name) is not None}


def _existing(store: EmulatorStore, profile_id: str) -> Profile:
    profile = store.profiles.get(profile_id)
    if profile is None:
        detail = f"A profile with id {profile_id} does not exist."
        raise invalid(detail, pointer=f"{_EVENT_PROFILE_POINTER}/id")
    return profile


def _utc(value: str) -> datetime:
    """Klaviyo truncates an event's time to the second; a naive time is UTC."""
    parsed = datetime.fromisoformat(value)
    return parsed.replace(microsecond=0, tzinfo=parsed.tzinfo or UTC).astimezone(UTC)
