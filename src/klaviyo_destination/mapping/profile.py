"""The profile of the profile-import path (apiVersion v2/v3), for identify and for the event's
profile (docs/mapping.md §17): the reference's ``constructProfile``.

One function builds both forms, so an identify and a track of the same user describe the same
profile; they differ only in where ``meta`` sits (§17.6).
"""

from __future__ import annotations

import re
from typing import Any, Final

import phonenumbers

from ..errors import InvalidEvent
from ..ingest.config import DestinationConfig
from ..ingest.events import RudderEvent
from ..js import MISSING, JsonObject, js_string, truthy
from .fields import (
    IMPORT_EXCLUDED_TRAIT_KEYS,
    IMPORT_PROFILE,
    INTEGRATION_NAMES,
    NOT_E164,
    PATCH_FIELDS,
    PROFILE_ID_TYPE,
    USER_ID_ONLY,
)
from .lookups import custom_traits, drop_nulls, lookup, map_event, traits_object
from .paths import UNSAFE_KEYS, flatten

#: What the reference keeps of a phone before parsing it: ASCII digits and ``+`` (JS ``\\d``).
_NOT_DIAL: Final = re.compile(r"[^0-9+]")


def profile_data(
    event: RudderEvent, config: DestinationConfig, *, identify: bool, phone_check: bool = True
) -> JsonObject:
    """``{type, id?, attributes, meta}`` for ``POST /api/profile-import`` (``identify``), or
    ``{type, id?, attributes: {..., meta}}`` for an event's ``profile.data``.

    Without ``phone_check`` a phone string passes unchecked: the webhook path's phone rule
    (``phones.py``, Part A 11) settles it after mapping; anything else still fails (§17.2).
    """
    attributes = map_event(IMPORT_PROFILE, event)
    phone = attributes.get("phone_number", MISSING)
    unchecked = not phone_check and isinstance(phone, str)
    if phone is not MISSING and not unchecked and not is_e164(phone):
        raise InvalidEvent(NOT_E164, field="traits.phone")
    meta, listed = patch_properties(event)
    custom = custom_traits(event, IMPORT_EXCLUDED_TRAIT_KEYS | listed)
    if config.flatten_properties:
        custom = flatten(custom)  # before nulls are dropped: flattened nested nulls go too
    if config.enforce_email_as_primary:
        attributes.pop("external_id", None)
        user_id = lookup(event, USER_ID_ONLY)  # no anonymousId fallback here, unlike §6.5
        if user_id is MISSING:
            custom.pop("_id", None)
        else:
            custom["_id"] = user_id  # a custom ``_id`` keeps its place, as a JS spread does
    attributes["properties"] = drop_nulls(custom)
    data: JsonObject = {"type": "profile"}
    profile_id = profile_id_of(event)
    if profile_id is not None:
        data["id"] = profile_id
    if identify:
        data.update(attributes=attributes, meta=meta)
    else:
        attributes["meta"] = meta
        data["attributes"] = attributes
    return data


def is_e164(phone: Any) -> bool:
    """§17.2: the reference's check (libphonenumber): the number, kept to digits and ``+``,
    parses and formats back to exactly itself in E.164. Anything but a string fails."""
    if not isinstance(phone, str):
        return False
    dialled = _NOT_DIAL.sub("", phone)
    try:
        number = phonenumbers.parse(dialled, None)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) == dialled)


def profile_id_of(event: RudderEvent) -> Any:
    """§17.5: the id of the first ``context.externalId`` entry typed ``klaviyo-profileId``;
    ``None`` when there is none (or its id is null)."""
    for entry in (event.context or {}).get("externalId") or ():
        if isinstance(entry, dict) and entry.get("type") == PROFILE_ID_TYPE:
            return entry.get("id")
    return None


def patch_properties(event: RudderEvent) -> tuple[JsonObject, frozenset[str]]:
    """§17.4: ``meta`` from ``integrations.Klaviyo``'s ``fieldsTo*`` lists, and the keys they
    name, which stay out of the custom properties."""
    patch: JsonObject = {}
    listed: set[str] = set()
    options = _integration(event)
    traits = traits_object(event) or {}  # none: no values (the reference crashes with a 500)
    for field, key in PATCH_FIELDS:
        names = options.get(field)
        if not isinstance(names, list):
            continue
        listed.update(name for name in names if isinstance(name, str))
        if key == "unset":
            patch[key] = names
            continue
        values: JsonObject = {}
        for name in map(js_string, names):  # a JS property name is a string
            value = traits.get(name) if name not in UNSAFE_KEYS else None
            if value is not None:
                values[name] = value
        patch[key] = values
    return {"patch_properties": patch}, frozenset(listed)


def _integration(event: RudderEvent) -> JsonObject:
    """``integrations.KLAVIYO`` (or ``Klaviyo``, ``klaviyo``): the first truthy one."""
    integrations = event.integrations or {}
    for name in INTEGRATION_NAMES:
        found = integrations.get(name)
        if truthy(found):
            return found if isinstance(found, dict) else {}
    return {}
