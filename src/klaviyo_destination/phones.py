"""Phone numbers in the webhook path: Part A 11 (docs/mapping.md §13, "Phones in the webhook path").

The v1 mapping sends the phone lookup (§5.1) as the reference does: in identify's profile
(``phone_number``) and in the subscription entry of identify and group. Klaviyo refuses a
profile or a subscription whose phone is not E.164 once spaces, dashes, dots and parentheses
are removed. So on ``/v1/events``, the SDK routes and the dry run (never on the rudder-server
protocol routes, which return what the reference returns), each such phone is:

1. E.164 after that clean-up: sent as it is, as the reference sends it;
2. else, with ``DEFAULT_PHONE_REGION`` set, a number libphonenumber finds valid for that region
   (``phonenumbers``, as Segment's Klaviyo destination uses its country code): sent as E.164;
3. else, when the event does not need it (no ``sms`` channel, and each request keeps another
   identifier): left out of the profile and the subscription, with a warning naming the input
   field; when it does: the event is rejected, naming that field, and nothing is sent.

Only strings are judged, as ``klaviyo/refusals.py`` judges them: whether Klaviyo takes another
type is its call. A phone Klaviyo accepts is never changed or held back.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Final

import phonenumbers

from .errors import InvalidEvent
from .ingest.events import RudderEvent
from .js import JsonObject
from .mapping.fields import PHONE
from .mapping.lookups import lookup
from .mapping.paths import Path, PathList
from .planned import PlannedRequest

#: Klaviyo's answer to a phone it refuses (the emulator's text, ``emulator/validation.py``).
PHONE_DETAIL: Final = "Invalid phone number format (Example of a valid format: +12345678901)"
#: The code of the warning for a phone left out.
NOT_E164: Final = "phone_not_e164"

_PHONE_NOISE: Final = re.compile(r"[\s\-.()]")
_E164: Final = re.compile(r"^\+\d{8,15}$")
#: Where a sent phone can come from: the phone lookup, then the rETL identifier (§6.2).
_SOURCES: Final = PathList((*PHONE, Path.parse("context.externalId.0.id")))


def is_phone(value: str) -> bool:
    """E.164 once spaces, dashes, dots and parentheses are removed (``+12 345 678 900`` is)."""
    return bool(_E164.match(_PHONE_NOISE.sub("", value)))


def to_e164(value: str, region: str | None) -> str | None:
    """The phone to send for ``value``: itself when Klaviyo takes it as it is; else, with a
    region, libphonenumber's E.164 form of a number valid for that region; else ``None``."""
    if is_phone(value):
        return value
    if region is None:
        return None
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number_for_region(number, region):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164 if is_phone(e164) else None


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a request carries a phone string: the object holding it, and its JSON pointer."""

    request_path: str
    holder: JsonObject
    pointer: str
    #: what else identifies the holder (``email``, ``external_id``)
    others: tuple[str, ...]

    @property
    def what(self) -> str:
        return "subscription" if "/subscriptions/" in self.pointer else "profile"

    def need(self) -> str | None:
        """Why this request cannot go without its phone, or ``None`` when it can."""
        if "sms" in (self.holder.get("channels") or {}):
            return "the SMS subscription needs it"
        if not any(self.holder.get(key) not in (None, "") for key in self.others):
            return f"it is all that identifies the {self.what}"
        return None


@dataclass(frozen=True, slots=True)
class PhoneRule:
    """The webhook path's phone rule; ``region`` is ``DEFAULT_PHONE_REGION`` (``None``: unset)."""

    region: str | None = None

    def apply(
        self, event: RudderEvent, requests: list[PlannedRequest]
    ) -> tuple[list[PlannedRequest], tuple[JsonObject, ...]]:
        """The requests to send, and the event's warnings; ``requests`` is left as it was.

        Raises ``InvalidEvent`` naming the input field when a request needs a phone that
        Klaviyo refuses.
        """
        phones = dict.fromkeys(place.holder["phone_number"] for place in _places(requests))
        if all(is_phone(phone) for phone in phones):
            return requests, ()
        requests = [replace(r, body=copy.deepcopy(r.body)) for r in requests]
        settled = (self._settle(event, requests, phone) for phone in phones)
        return requests, tuple(warning for warning in settled if warning is not None)

    def _settle(
        self, event: RudderEvent, requests: list[PlannedRequest], phone: str
    ) -> JsonObject | None:
        """Send ``phone`` as E.164, or leave it out and say so, or raise when it is needed."""
        places = [p for p in _places(requests) if p.holder["phone_number"] == phone]
        sent = to_e164(phone, self.region)
        if sent is not None:
            for place in places:
                place.holder["phone_number"] = sent
            return None
        field = _source(event, phone)
        why = f"{field} is {self._not_e164()}"
        for place in places:
            if (need := place.need()) is not None:
                raise InvalidEvent(
                    f"{PHONE_DETAIL}: {why}; {need}, and Klaviyo would refuse it at "
                    f"{place.pointer} of {place.request_path}, so this event was not sent",
                    field=field,
                )
        for place in places:
            del place.holder["phone_number"]
        left = " and ".join(dict.fromkeys(place.what for place in places))
        message = (
            f"{why}, so it was left out of the {left}: Klaviyo would refuse it there, and "
            "without SMS consent no phone is needed"
        )
        return {"code": NOT_E164, "field": field, "message": message}

    def _not_e164(self) -> str:
        if self.region is None:
            return "not an E.164 phone number, and DEFAULT_PHONE_REGION is unset"
        return f"neither an E.164 phone number nor a valid {self.region} number"


def _places(requests: list[PlannedRequest]) -> Iterator[_Place]:
    """Identify's profile and the v1 subscription entries, where they carry a phone string."""
    for request in requests:
        attributes = request.body.get("data", {}).get("attributes", {})
        if request.upsert and isinstance(attributes.get("phone_number"), str):
            pointer = "/data/attributes/phone_number"
            yield _Place(request.path, attributes, pointer, ("email", "external_id"))
        entries = attributes.get("subscriptions") if not request.upsert else None
        for number, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict) and isinstance(entry.get("phone_number"), str):
                pointer = f"/data/attributes/subscriptions/{number}/phone_number"
                yield _Place(request.path, entry, pointer, ("email",))


def _source(event: RudderEvent, phone: str) -> str:
    """The input field the phone was read from: the first of its possible sources holding it."""
    for path in _SOURCES:
        if lookup(event, PathList((path,))) == phone:
            return path.text
    return PHONE[0].text  # pragma: no cover -- every phone sent comes from one of them
