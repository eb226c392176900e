"""What Klaviyo refuses in a list job's entry, checked before entries are merged into one job.

Klaviyo answers 400 for a whole bulk job when one entry is invalid, so an entry it will refuse
must not travel with other users' entries. The checks are the emulator's rules
(``emulator/validation.py``: email syntax, and a phone number that is E.164 once spaces,
dashes, dots and parentheses are removed) and nothing stricter, so nothing Klaviyo would accept
is held back; ``tests/klaviyo/test_refusals.py`` holds the two to the same answers. Anything
else Klaviyo refuses is found from its answer (``bulk.py``). They are copied, not imported,
because delivery must not depend on the emulator. The phone check is ``phones.py``'s, which
settles the webhook path's phones while planning (Part A 11): what reaches this check there
already passes it, and it stays for any other caller of delivery.
"""

from __future__ import annotations

import re
from typing import Final

from ..errors import InvalidEvent
from ..phones import PHONE_DETAIL, is_phone
from ..planned import PlannedRequest, job_contacts, job_layout

__all__ = ["EMAIL_DETAIL", "PHONE_DETAIL", "is_email", "is_phone", "refusal"]

EMAIL_DETAIL: Final = "Invalid email address"

_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")


def is_email(value: str) -> bool:
    return bool(_EMAIL.match(value))


def refusal(request: PlannedRequest) -> InvalidEvent | None:
    """Why Klaviyo would refuse one of this job's entries, naming the member as Klaviyo's
    ``source.pointer`` would (``planned.JobLayout``); else ``None``.

    Only strings are judged: whether Klaviyo takes another type is its call, and its 400 then
    points at the entry.
    """
    for index, entry in enumerate(job_contacts(request)):
        email, phone = entry.get("email"), entry.get("phone_number")
        if isinstance(email, str) and not is_email(email):
            return _refused(request, EMAIL_DETAIL, index, "email")
        if isinstance(phone, str) and not is_phone(phone):
            return _refused(request, PHONE_DETAIL, index, "phone_number")
    return None


def _refused(request: PlannedRequest, detail: str, index: int, name: str) -> InvalidEvent:
    layout = job_layout(request)
    job = "a list job" if request.revision.profile_import else "a subscription"
    message = f"{detail}: Klaviyo refuses it in {job}, so this one was not sent"
    return InvalidEvent(message, field=f"{layout.entries}/{index}{layout.contact}/{name}")
