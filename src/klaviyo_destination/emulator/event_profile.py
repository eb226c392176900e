"""The free-form ``profile`` object of a create-event body, read the way Klaviyo reads it.

Identifiers: ``$email``, ``$phone_number`` and ``$id`` (the legacy external-id key that
RudderStack's v1 sends and Klaviyo accepted). ``$first_name`` & co. become profile attributes,
every other key becomes a custom profile property (``_id`` included). A phone that is not
E.164 is ignored rather than rejected: in March 2023 a phone-only event "silently fails"
(202, nothing recorded), so when no identifier is left the caller drops the event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from klaviyo_destination.emulator.errors import ApiError, invalid
from klaviyo_destination.emulator.validation import EMAIL_DETAIL, is_email, normalize_phone

_POINTER: Final = "/data/attributes/profile"

#: Special keys that land on top-level profile attributes.
_ATTRIBUTES: Final[Mapping[str, str]] = {
    "$first_name": "first_name",
    "$last_name": "last_name",
    "$organization": "organization",
    "$title": "title",
    "$image": "image",
}

#: Special keys that land in ``location``.
_LOCATION: Final[Mapping[str, str]] = {
    "$city": "city",
    "$region": "region",
    "$country": "country",
    "$zip": "zip",
    "$address1": "address1",
    "$address2": "address2",
    "$timezone": "timezone",
    "$latitude": "latitude",
    "$longitude": "longitude",
}

_IDENTIFIER_KEYS: Final = frozenset({"$email", "$phone_number", "$id"})
#: Consent is a subscription matter, not a profile property.
_IGNORED: Final = frozenset({"$consent"})


@dataclass(frozen=True, slots=True)
class EventProfile:
    identifiers: dict[str, str]
    attributes: dict[str, Any] = field(default_factory=dict)
    location: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)


def read_event_profile(profile: Mapping[str, Any]) -> EventProfile:
    """Split the profile object; raises a 400 for a bad ``$email`` or no identifier key at all."""
    if not _IDENTIFIER_KEYS & {key for key, value in profile.items() if value not in (None, "")}:
        raise _no_identifier()
    identifiers: dict[str, str] = {}
    email = profile.get("$email")
    if email not in (None, ""):
        if not isinstance(email, str) or not is_email(email):
            raise invalid(EMAIL_DETAIL, pointer=f"{_POINTER}/$email")
        identifiers["email"] = email
    phone = profile.get("$phone_number")
    normalized = normalize_phone(phone) if isinstance(phone, str) else None
    if normalized is not None:
        identifiers["phone_number"] = normalized
    external_id = profile.get("$id")
    if isinstance(external_id, str | int) and not isinstance(external_id, bool):
        identifiers["external_id"] = str(external_id)
    attributes = {name: profile[key] for key, name in _ATTRIBUTES.items() if key in profile}
    location = {name: profile[key] for key, name in _LOCATION.items() if key in profile}
    special = _IDENTIFIER_KEYS | _IGNORED | _ATTRIBUTES.keys() | _LOCATION.keys()
    properties = {key: value for key, value in profile.items() if key not in special}
    return EventProfile(identifiers, attributes, location, properties)


def _no_identifier() -> ApiError:
    """Wording is ours: Klaviyo's real text for this error is not known."""
    detail = "The profile must contain an identifier: $email, $phone_number or $id."
    return invalid(detail, pointer=_POINTER)
