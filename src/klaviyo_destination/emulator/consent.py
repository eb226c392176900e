"""Subscribe and unsubscribe jobs at the profile-import revisions: consent per channel per list.

The emulator keeps email and SMS marketing consent (Klaviyo's other channels and message types
validate and are not kept). A job names its list in ``relationships.list``; without one,
consent changes account-wide. Klaviyo's rules, from the OAS of 2024-10-15 to 2026-07-15:

* a profile is found by ``id`` (subscribe only), else by email or phone number, else created;
* subscribing grants consent on each channel given as ``SUBSCRIBED`` and adds the profile to
  the list; ``consented_at`` only with ``historical_import``, which then requires it;
* unsubscribing a list member revokes its consent on that list and removes it from the list;
  "Profiles not in the specified list will be globally unsubscribed": a profile not on the
  list, or any profile when no list is named, loses the channel's consent everywhere;
* at 2024-10-15 ``subscriptions`` may be left out: the channels are then those the entry has
  an identifier for, as 2023-02-22 did (the emulator's reading; Klaviyo does not say).

At most 1000 profiles per subscribe job and 100 per unsubscribe job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from klaviyo_destination.emulator.errors import invalid
from klaviyo_destination.emulator.models import (
    SUBSCRIPTION_CHANNELS,
    Consent,
    JsonObject,
    Membership,
    Profile,
)
from klaviyo_destination.emulator.profile_import import profile_fields
from klaviyo_destination.emulator.store import EmulatorStore
from klaviyo_destination.klaviyo.facts import (
    MAX_PROFILES_PER_CALL,
    SUBSCRIPTIONS_PATH,
    UNSUBSCRIPTIONS_PATH,
)

MAX_SUBSCRIBE: Final = MAX_PROFILES_PER_CALL[SUBSCRIPTIONS_PATH]
MAX_UNSUBSCRIBE: Final = MAX_PROFILES_PER_CALL[UNSUBSCRIPTIONS_PATH]
_PROFILES: Final = "/data/attributes/profiles/data"
_IDENTIFIER: Final[Mapping[str, str]] = {"email": "email", "sms": "phone_number"}


@dataclass(frozen=True, slots=True)
class _Entry:
    """One profile of a job, checked: who, and which channels change."""

    profile_id: str | None
    identifiers: dict[str, str]
    channels: tuple[str, ...]
    consented_at: datetime | None


def subscribe(store: EmulatorStore, data: JsonObject) -> None:
    attributes = data["attributes"]
    historical = attributes.get("historical_import") is True
    entries = _entries(store, attributes["profiles"]["data"], "SUBSCRIBED", MAX_SUBSCRIBE)
    for index, entry in enumerate(entries):
        _check_consented_at(store, entry, historical, f"{_PROFILES}/{index}")
    list_id = _list_id(data)
    source = attributes.get("custom_source")
    now = store.now()
    for entry in entries:
        profile = _profile(store, entry)
        for channel in entry.channels:
            consent = Consent(
                "SUBSCRIBED", entry.consented_at or now, "API", "subscribe_profiles", source
            )
            store.give_consent(profile, channel, consent, list_id)
        if list_id is not None:
            members = store.lists.setdefault(list_id, {})
            members[profile.id] = Membership(list_id, profile.id, entry.channels, source, now)


def unsubscribe(store: EmulatorStore, data: JsonObject) -> None:
    profiles = data["attributes"]["profiles"]["data"]
    entries = _entries(store, profiles, "UNSUBSCRIBED", MAX_UNSUBSCRIBE)
    list_id = _list_id(data)
    now = store.now()
    for entry in entries:
        profile = _profile(store, entry)
        members = store.lists.get(list_id, {}) if list_id is not None else {}
        for channel in entry.channels:
            consent = Consent("UNSUBSCRIBED", now, "API", "unsubscribe_profiles", None)
            if list_id is not None and profile.id in members:
                store.consent_on_list(list_id, profile.id, channel, consent)
            else:
                store.give_consent(profile, channel, consent, None)
        members.pop(profile.id, None)


def _entries(
    store: EmulatorStore, profiles: list[JsonObject], consent: str, limit: int
) -> list[_Entry]:
    """Every entry checked before any is applied, so a 400 changes nothing."""
    if len(profiles) > limit:
        detail = f"A maximum of {limit} profiles can be sent in one job."
        raise invalid(detail, pointer=_PROFILES)
    return [_entry(store, item, consent, f"{_PROFILES}/{i}") for i, item in enumerate(profiles)]


def _entry(store: EmulatorStore, item: JsonObject, consent: str, pointer: str) -> _Entry:
    attributes = item["attributes"]
    fields = profile_fields(attributes, f"{pointer}/attributes")
    identifiers = {
        name: fields[name] for name in ("email", "phone_number") if fields.get(name) is not None
    }
    profile_id = item.get("id")
    if profile_id is not None and profile_id not in store.profiles:
        raise invalid(f"A profile with id {profile_id} does not exist.", pointer=f"{pointer}/id")
    known = dict(store.profiles[profile_id].fields) if profile_id is not None else {}
    subscriptions = attributes.get("subscriptions")
    channels = _channels(subscriptions, identifiers, consent)
    for channel in channels:
        name = _IDENTIFIER[channel]
        if name not in identifiers and name not in known:
            detail = f"A {name} is required to change {channel} marketing consent."
            raise invalid(detail, pointer=f"{pointer}/attributes/{name}")
    if profile_id is None and not identifiers:
        detail = "Each profile needs an email or a phone_number."
        raise invalid(detail, pointer=f"{pointer}/attributes")
    return _Entry(profile_id, identifiers, channels, _consented_at(subscriptions))


def _channels(
    subscriptions: Mapping[str, Any] | None, identifiers: Mapping[str, str], consent: str
) -> tuple[str, ...]:
    if subscriptions is None:
        return tuple(c for c in SUBSCRIPTION_CHANNELS if _IDENTIFIER[c] in identifiers)
    return tuple(
        channel
        for channel in SUBSCRIPTION_CHANNELS
        if ((subscriptions.get(channel) or {}).get("marketing") or {}).get("consent") == consent
    )


def _consented_at(subscriptions: Mapping[str, Any] | None) -> datetime | None:
    for channel in SUBSCRIPTION_CHANNELS:
        marketing = ((subscriptions or {}).get(channel) or {}).get("marketing") or {}
        if marketing.get("consented_at"):
            return datetime.fromisoformat(marketing["consented_at"])
    return None


def _check_consented_at(
    store: EmulatorStore, entry: _Entry, historical: bool, pointer: str
) -> None:
    """The OAS: ``consented_at`` raises an error without ``historical_import``, which requires
    it, in the past."""
    if entry.consented_at is None and historical:
        detail = "consented_at is required when historical_import is true."
        raise invalid(detail, pointer=f"{pointer}/attributes/subscriptions")
    if entry.consented_at is not None and not historical:
        detail = "consented_at may only be given when historical_import is true."
        raise invalid(detail, pointer=f"{pointer}/attributes/subscriptions")
    when = entry.consented_at
    if when is not None and (when.tzinfo is None or when > store.now()):
        detail = "consented_at must be a time in the past, with its offset."
        raise invalid(detail, pointer=f"{pointer}/attributes/subscriptions")


def _list_id(data: JsonObject) -> str | None:
    relationship = (data.get("relationships") or {}).get("list") or {}
    list_id = (relationship.get("data") or {}).get("id")
    return list_id if isinstance(list_id, str) else None


def _profile(store: EmulatorStore, entry: _Entry) -> Profile:
    if entry.profile_id is not None:
        profile = store.profiles[entry.profile_id]
    else:
        profile = store.match(entry.identifiers) or store.new_profile()
    store.fill_identifiers(profile, entry.identifiers)
    return profile
