"""Phone numbers in the webhook path: Part A 11 (docs/mapping.md §13, "Phones in the webhook path").

The mapping sends the phone lookup (§5.1) as the reference does: at v1 in identify's profile
(``phone_number``) and in the subscription entry of identify and group; at v2/v3 in the
profile-import, the event's profile and the list job's entry. Klaviyo refuses a profile, an
entry (and at v2/v3 an event) whose phone is not E.164 once spaces, dashes, dots and parentheses
are removed; at v2/v3 the reference also refuses the profile's phone unless libphonenumber
formats it back to itself (§17.2). So on ``/v1/events``, the SDK routes and the dry run (never
on the rudder-server protocol routes, which return what the reference returns), each such phone
is:

1. accepted as it is (at v2/v3: by both checks): sent as it is, as the reference sends it;
2. else, with ``DEFAULT_PHONE_REGION`` set, a number libphonenumber finds valid for that region
   (``phonenumbers``, as Segment's Klaviyo destination uses its country code): sent as E.164;
3. else, when the event does not need it (no ``sms`` channel, and each request keeps another
   identifier): left out of every request, with a warning naming the input field; when it
   does: the event is rejected, naming that field, and nothing is sent.

Only strings are judged, as ``klaviyo/refusals.py`` judges them: whether Klaviyo takes another
type is its call (v1), or the reference refuses it (v2/v3, §17.2). A phone Klaviyo and the
reference accept is never changed or held back.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Final

import phonenumbers

from .errors import InvalidEvent
from .ingest.events import RudderEvent
from .js import JsonObject
from .klaviyo.facts import Endpoint
from .mapping.fields import NOT_E164 as IMPORT_DETAIL
from .mapping.fields import PHONE
from .mapping.lookups import lookup
from .mapping.paths import Path, PathList
from .mapping.profile import is_e164
from .planned import PlannedRequest, job_contacts, job_layout

#: Klaviyo's answer to a phone it refuses (the emulator's text, ``emulator/validation.py``).
PHONE_DETAIL: Final = "Invalid phone number format (Example of a valid format: +12345678901)"
#: The code of the warning for a phone left out.
NOT_E164: Final = "phone_not_e164"

_PHONE_NOISE: Final = re.compile(r"[\s\-.()]")
_E164: Final = re.compile(r"^\+\d{8,15}$")
#: How many phones ``is_import_phone`` remembers its answer for (a few hundred kB at most).
_KNOWN_PHONES: Final = 4096
#: Where a sent phone can come from: the phone lookup, then the rETL identifier (§6.2).
_SOURCES: Final = PathList((*PHONE, Path.parse("context.externalId.0.id")))


def is_phone(value: str) -> bool:
    """E.164 once spaces, dashes, dots and parentheses are removed (``+12 345 678 900`` is)."""
    return bool(_E164.match(_PHONE_NOISE.sub("", value)))


@functools.lru_cache(maxsize=_KNOWN_PHONES)
def is_import_phone(value: str) -> bool:
    """What v2/v3 send as it is: Klaviyo's check and the reference's (§17.2) both pass.

    Remembered per string: libphonenumber's parse and format (about 12 us, most of the rule's
    cost at v2/v3) depend on the string alone, and a user's events carry the same phone.
    """
    return is_phone(value) and is_e164(value)


def to_e164(
    value: str, region: str | None, accepted: Callable[[str], bool] = is_phone
) -> str | None:
    """The phone to send for ``value``: itself when it is ``accepted`` as it is; else, with a
    region, libphonenumber's E.164 form of a number valid for that region; else ``None``."""
    if accepted(value):
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
    return e164 if accepted(e164) else None


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a request carries a phone string: the object holding it, and its JSON pointer."""

    request_path: str
    holder: JsonObject
    pointer: str
    #: what the holder is, in a warning: "profile", "subscription", ...
    what: str
    #: whether something else identifies the holder (an email, an external id, a profile id)
    identified: bool
    #: whether the holder asks for the SMS channel
    sms: bool = False

    def need(self) -> str | None:
        """Why this request cannot go without its phone, or ``None`` when it can."""
        if self.sms:
            return "the SMS subscription needs it"
        if not self.identified:
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
        Klaviyo (or at v2/v3 the reference) refuses.
        """
        accepted = _accepted(requests)
        phones = dict.fromkeys(place.holder["phone_number"] for place in _places(requests))
        if all(accepted(phone) for phone in phones):
            return requests, ()
        requests = [replace(r, body=copy.deepcopy(r.body)) for r in requests]
        settled = (self._settle(event, requests, phone, accepted) for phone in phones)
        return requests, tuple(warning for warning in settled if warning is not None)

    def _settle(
        self,
        event: RudderEvent,
        requests: list[PlannedRequest],
        phone: str,
        accepted: Callable[[str], bool],
    ) -> JsonObject | None:
        """Send ``phone`` as E.164, or leave it out and say so, or raise when it is needed."""
        places = [p for p in _places(requests) if p.holder["phone_number"] == phone]
        sent = to_e164(phone, self.region, accepted)
        if sent is not None:
            for place in places:
                place.holder["phone_number"] = sent
            return None
        field = _source(event, phone)
        why = f"{field} is {self._not_e164()}"
        detail = IMPORT_DETAIL if accepted is is_import_phone else f"{PHONE_DETAIL}:"
        for place in places:
            if (need := place.need()) is not None:
                raise InvalidEvent(
                    f"{detail} {why}; {need}, and Klaviyo would refuse it at "
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


def _accepted(requests: list[PlannedRequest]) -> Callable[[str], bool]:
    """The check a phone must pass to be sent as it is, at the requests' revision."""
    return is_import_phone if any(r.revision.profile_import for r in requests) else is_phone


def _places(requests: list[PlannedRequest]) -> Iterator[_Place]:
    """Every place a request carries a phone string (``_legacy``, ``_imports``)."""
    for request in requests:
        found = _imports(request) if request.revision.profile_import else _legacy(request)
        yield from (place for place in found if isinstance(place.holder.get("phone_number"), str))


def _legacy(request: PlannedRequest) -> Iterator[_Place]:
    """v1: identify's profile and the subscription entries; not the event's ``$phone_number``,
    which Klaviyo ignores rather than refuse."""
    attributes = request.body.get("data", {}).get("attributes", {})
    if request.upsert:
        others = _known(attributes, "email", "external_id")
        yield _Place(request.path, attributes, "/data/attributes/phone_number", "profile", others)
        return
    entries = attributes.get("subscriptions")
    for number, entry in enumerate(entries if isinstance(entries, list) else []):
        if isinstance(entry, dict):
            pointer = f"/data/attributes/subscriptions/{number}/phone_number"
            sms = "sms" in (entry.get("channels") or {})
            yield _Place(request.path, entry, pointer, "subscription", _known(entry, "email"), sms)


def _imports(request: PlannedRequest) -> Iterator[_Place]:
    """v2/v3: the profile-import, the event's profile and each list job entry."""
    data = request.body["data"]
    if request.endpoint is Endpoint.PROFILE_IMPORT:
        attributes = data["attributes"]
        known = "id" in data or _known(attributes, "email", "external_id")
        yield _Place(request.path, attributes, "/data/attributes/phone_number", "profile", known)
    elif request.endpoint is Endpoint.EVENTS:
        profile = data["attributes"]["profile"]["data"]
        attributes = profile["attributes"]
        known = "id" in profile or _known(attributes, *_EVENT_IDENTIFIERS)
        pointer = "/data/attributes/profile/data/attributes/phone_number"
        yield _Place(request.path, attributes, pointer, "event's profile", known)
    else:
        layout = job_layout(request)
        what = "subscription" if request.endpoint is Endpoint.SUBSCRIPTIONS else "unsubscription"
        for number, entry in enumerate(job_contacts(request)):
            pointer = f"{layout.entries}/{number}{layout.contact}/phone_number"
            sms = "sms" in (entry.get("subscriptions") or {})
            yield _Place(request.path, entry, pointer, what, _known(entry, "email"), sms)


#: What identifies an event's profile besides a phone (Klaviyo's rule, the emulator's).
_EVENT_IDENTIFIERS: Final = ("email", "external_id", "anonymous_id", "_kx")


def _known(holder: JsonObject, *keys: str) -> bool:
    return any(holder.get(key) not in (None, "") for key in keys)


def _source(event: RudderEvent, phone: str) -> str:
    """The input field the phone was read from: the first of its possible sources holding it."""
    for path in _SOURCES:
        if lookup(event, PathList((path,))) == phone:
            return path.text
    return PHONE[0].text  # pragma: no cover -- every phone sent comes from one of them
