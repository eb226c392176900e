"""The records the emulator keeps: profiles, events, list memberships and consent, recorded
requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

#: A JSON object as parsed (the service's ``js.JsonObject``; the emulator imports none of it).
JsonObject = dict[str, Any]

#: The attributes Klaviyo keeps unique across profiles, in the order used to pick one owner.
IDENTIFIERS: Final = ("email", "phone_number", "external_id")

#: Channel names as Klaviyo spells them in ``subscriptions`` and in a job's ``channels``.
SUBSCRIPTION_CHANNELS: Final = ("email", "sms")


@dataclass(slots=True)
class Consent:
    consent: str
    timestamp: datetime
    method: str
    method_detail: str | None
    custom_method_detail: str | None


@dataclass(slots=True)
class Profile:
    """``fields`` holds the flat attributes (identifiers, names, image, anonymous_id)."""

    id: str
    created: datetime
    updated: datetime
    fields: dict[str, Any] = field(default_factory=dict)
    location: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    last_event_date: datetime | None = None
    consent: dict[str, Consent] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: str
    metric_name: str
    profile_id: str
    properties: dict[str, Any]
    value: float | None
    time: datetime
    unique_id: str
    received: datetime
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class NewEvent:
    """What an event body says, read at its revision, before the store records it."""

    metric_name: str
    properties: dict[str, Any]
    value: float | None
    time: datetime
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class Membership:
    """A profile on a list, and the channels this subscription granted consent for."""

    list_id: str
    profile_id: str
    channels: tuple[str, ...]
    custom_source: str | None
    added: datetime


@dataclass(slots=True)
class RecordedRequest:
    """One request to ``/api``; ``status`` stays ``None`` when the connection was dropped."""

    seq: int
    time: datetime
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    status: int | None = None
    fault: str | None = None
