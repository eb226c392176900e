"""``/v1/transform`` and ``klaviyo-destination transform``: what ``/v1/events`` would send.

Nothing is sent and no key is needed: the headers show it masked. It plans at the revision
``KLAVIYO_API_VERSION`` names, as delivery does, and says what delivery says where that is
known before sending: the phone rule's changes, warnings and rejections (``phones.py``), a
list job's entry delivery refuses before merging (``klaviyo/refusals.py``), and what Klaviyo
refuses whatever its state (an email it would not take, a list job's entry with neither email
nor phone number): delivery sends those and gets Klaviyo's 400, so the dry run says
``rejected`` with delivery's code and field. Klaviyo's other checks (property limits, times)
are found only by sending. It shows each event's own requests; delivery merges the list jobs of
a batch per list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from ..errors import DestinationError, KlaviyoRejected
from ..ingest.config import DestinationConfig
from ..js import JsonObject
from ..klaviyo.facts import ON_CONFLICT, Endpoint, klaviyo_headers
from ..klaviyo.refusals import EMAIL_DETAIL, is_email, refusal
from ..phones import PhoneRule
from ..pipeline import plan_events
from ..planned import LIST_JOBS, PlannedEvent, PlannedRequest, job_contacts, job_layout

#: Where a profile write or an event carries the email Klaviyo checks, as its ``source.pointer``
#: names it (delivery's ``field`` for Klaviyo's 400).
_EMAILS: Final = {
    Endpoint.PROFILES: ("/data/attributes/email",),
    Endpoint.PROFILE_IMPORT: ("/data/attributes/email",),
    Endpoint.EVENTS: (
        "/data/attributes/profile/$email",
        "/data/attributes/profile/data/attributes/email",
    ),
}
#: An event's metric name, and the longest Klaviyo takes: 127 characters at 2023-02-22; at the
#: newer revisions any but empty (the emulator's rules: ``emulator/validation.py``, schemas/).
_V1_METRIC: Final = ("/data/attributes/metric/name", 127)
_METRIC: Final = ("/data/attributes/metric/data/attributes/name", None)
NO_CONTACT_DETAIL: Final = "each profile of a list job needs an email or a phone_number"


def dry_run(
    messages: Sequence[Any], config: DestinationConfig, base_url: str, *, phones: PhoneRule
) -> list[JsonObject]:
    """One result per event: ``planned`` with its requests, or ``rejected`` with the reason;
    ``warnings`` as delivery gives them."""
    results = []
    for event in plan_events(messages, config, require_key=False, phones=phones):
        result: JsonObject = {**event.header}
        if (error := _rejection(event)) is not None:
            result.update(status="rejected", requests=[], error=error.to_dict())
        else:
            result.update(status="planned", requests=[_shown(r, base_url) for r in event.requests])
        if event.warnings:
            result["warnings"] = list(event.warnings)
        results.append(result)
    return results


def _rejection(event: PlannedEvent) -> DestinationError | None:
    """The mapping's error, the refusal delivery meets before merging its list jobs, or
    Klaviyo's 400 that delivery would relay."""
    if event.error is not None:
        return event.error
    for request in event.requests:
        if request.endpoint in LIST_JOBS and (refused := refusal(request)):
            return refused
    for request in event.requests:
        if (answered := _klaviyo_refuses(request)) is not None:
            return answered
    return None


def _klaviyo_refuses(request: PlannedRequest) -> KlaviyoRejected | None:
    """Klaviyo's 400 for this request whatever its state, as delivery would report it."""
    if request.endpoint in LIST_JOBS:
        layout = job_layout(request)
        for index, entry in enumerate(job_contacts(request)):
            if not {"email", "phone_number", "profile_id"} & entry.keys():
                pointer = f"{layout.entries}/{index}{layout.contact}"
                return _rejected(NO_CONTACT_DETAIL, pointer)
        return None
    for pointer in _EMAILS.get(request.endpoint, ()):
        email = _at(request.body, pointer)
        if isinstance(email, str) and not is_email(email):
            return _rejected(EMAIL_DETAIL, pointer)
    if request.endpoint is Endpoint.EVENTS:
        pointer, longest = _METRIC if request.revision.profile_import else _V1_METRIC
        name = _at(request.body, pointer)
        if not isinstance(name, str) or not 0 < len(name) <= (longest or len(name)):
            return _rejected(f"a metric name of 1 to {longest or 'any'} characters", pointer)
    return None


def _rejected(detail: str, pointer: str) -> KlaviyoRejected:
    return KlaviyoRejected(f"Klaviyo would refuse it (400): {detail}", field=pointer)


def _at(body: Any, pointer: str) -> Any:
    """The member a JSON pointer names (no ``~`` escapes in ours), or ``None``."""
    for name in pointer.strip("/").split("/"):
        if not isinstance(body, dict):
            return None
        body = body.get(name)
    return body


def _shown(request: PlannedRequest, base_url: str) -> JsonObject:
    shown: JsonObject = {
        "method": request.method,
        "url": base_url.rstrip("/") + request.path,
        "headers": klaviyo_headers(None, request.revision.name),
        "body": request.body,
    }
    if request.upsert:
        shown["on_conflict"] = ON_CONFLICT
    return shown
