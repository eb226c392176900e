"""What Klaviyo refuses in a subscription entry, checked before entries are merged into one job.

Klaviyo answers 400 for a whole bulk job when one entry is invalid, so an entry it will refuse
must not travel with other users' entries. The checks are the emulator's rules
(``emulator/validation.py``: email syntax, and a phone number that is E.164 once spaces,
dashes, dots and parentheses are removed) and nothing stricter, so nothing Klaviyo would accept
is held back; ``tests/klaviyo/test_refusals.py`` holds the two to the same answers. Anything
else Klaviyo refuses is found from its answer (``bulk.py``). They are copied, not imported,
because delivery must not depend on the emulator.
"""

from __future__ import annotations

import re
from typing import Final

from ..errors import InvalidEvent
from ..planned import PlannedRequest, subscriptions_of

EMAIL_DETAIL: Final = "Invalid email address"
PHONE_DETAIL: Final = "Invalid phone number format (Example of a valid format: +12345678901)"
#: Where an entry lives in a subscription job; Klaviyo's ``source.pointer`` has this shape.
ENTRY_POINTER: Final = "/data/attributes/subscriptions/{index}/{name}"

_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
_PHONE_NOISE: Final = re.compile(r"[\s\-.()]")
_E164: Final = re.compile(r"^\+\d{8,15}$")


def is_email(value: str) -> bool:
    return bool(_EMAIL.match(value))


def is_phone(value: str) -> bool:
    """E.164 once spaces, dashes, dots and parentheses are removed (``+12 345 678 900`` is)."""
    return bool(_E164.match(_PHONE_NOISE.sub("", value)))


def refusal(request: PlannedRequest) -> InvalidEvent | None:
    """Why Klaviyo would refuse one of this job's entries, naming the member; else ``None``.

    Only strings are judged: whether Klaviyo takes another type is its call, and its 400 then
    points at the entry.
    """
    for index, entry in enumerate(subscriptions_of(request)):
        email, phone = entry.get("email"), entry.get("phone_number")
        if isinstance(email, str) and not is_email(email):
            return _refused(EMAIL_DETAIL, index, "email")
        if isinstance(phone, str) and not is_phone(phone):
            return _refused(PHONE_DETAIL, index, "phone_number")
    return None


def _refused(detail: str, index: int, name: str) -> InvalidEvent:
    message = f"{detail}: Klaviyo refuses it in a subscription, so this one was not sent"
    return InvalidEvent(message, field=ENTRY_POINTER.format(index=index, name=name))
