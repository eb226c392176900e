"""The emulator's state and Klaviyo's rules over it; no HTTP here.

Everything runs on one event loop and no method awaits, so each call is atomic.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from klaviyo_destination.emulator.errors import duplicate_profile, invalid, profile_not_found
from klaviyo_destination.emulator.event_profile import EventProfile, read_event_profile
from klaviyo_destination.emulator.faults import FaultPlan
from klaviyo_destination.emulator.ids import IdFactory
from klaviyo_destination.emulator.models import (
    IDENTIFIERS,
    SUBSCRIPTION_CHANNELS,
    Consent,
    EventRecord,
    Membership,
    NewEvent,
    Profile,
    RecordedRequest,
)
from klaviyo_destination.emulator.ratelimit import (
    DEFAULT_RATE_LIMITS,
    EndpointClass,
    RateLimit,
    ServerRateLimits,
)
from klaviyo_destination.emulator.validation import (
    EventAttributes,
    ProfileAttributes,
    SubscriptionEntry,
    SubscriptionJobAttributes,
    normalize_phone,
    utc_now,
)

MAX_RECORDED: Final = 10_000
_CHANNEL_IDENTIFIER: Final[Mapping[str, str]] = {"email": "email", "sms": "phone_number"}
_EARLIEST_EVENT: Final = datetime.fromisoformat("2000-01-01T00:00:00+00:00")


class EventOutcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    DROPPED = "dropped"


class EmulatorStore:
    """Profiles, events, list memberships and consent, recorded requests, faults and rate-limit
    windows. The profile-import revisions' rules over the same state are in ``profile_import``
    and ``consent``.

    ``clock`` (epoch seconds) drives ids, timestamps and rate-limit windows; ``seed`` makes ids
    reproducible; ``sleep`` is what injected latency awaits; ``api_keys`` restricts the accepted
    private keys (``None``: any non-empty key); ``rate_limits=None`` turns limiting off.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        rate_limits: Mapping[EndpointClass, RateLimit] | None = DEFAULT_RATE_LIMITS,
        api_keys: Collection[str] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self.api_keys = frozenset(api_keys) if api_keys is not None else None
        self.ids = IdFactory(clock, seed)
        self.limiter = ServerRateLimits(clock, rate_limits)
        self.faults = FaultPlan()
        self.profiles: dict[str, Profile] = {}
        self.events: list[EventRecord] = []
        self.lists: dict[str, dict[str, Membership]] = {}
        #: list -> profile -> channel -> the consent a job gave or took on that list.
        self.list_consent: dict[str, dict[str, dict[str, Consent]]] = {}
        self.requests: deque[RecordedRequest] = deque(maxlen=MAX_RECORDED)
        self.dropped_events = 0
        self._owners: dict[tuple[str, str], str] = {}
        self._event_keys: set[tuple[str, str, str]] = set()
        self._seq = 0

    def now(self) -> datetime:
        return utc_now(self.clock())

    def reset(self) -> None:
        """Forget all data, recordings, faults and rate-limit windows (not the configuration)."""
        self.profiles.clear()
        self.events.clear()
        self.lists.clear()
        self.list_consent.clear()
        self.requests.clear()
        self.dropped_events = 0
        self._owners.clear()
        self._event_keys.clear()
        self.faults.clear()
        self.limiter.reset()

    def accepts_key(self, key: str) -> bool:
        return bool(key) and (self.api_keys is None or key in self.api_keys)

    # Profiles

    def get_profile(self, profile_id: str) -> Profile:
        profile = self.profiles.get(profile_id)
        if profile is None:
            raise profile_not_found(profile_id)
        return profile

    def find_profiles(self, field: str, values: Iterable[str]) -> list[Profile]:
        if field == "id":
            return [self.profiles[v] for v in values if v in self.profiles]
        if field == "phone_number":
            values = [normalize_phone(value) or value for value in values]
        owners = (self._owners.get(_key(field, value)) for value in values)
        return [self.profiles[owner] for owner in dict.fromkeys(owners) if owner]

    def create_profile(self, attributes: ProfileAttributes) -> Profile:
        """201, or 409 ``duplicate_profile`` naming the profile that owns an identifier.

        When the identifiers belong to two different profiles there is no single duplicate;
        like Klaviyo (klaviyo-api-php#63) we still answer one 409 ``duplicate_profile``, naming
        the owner of the first identifier in ``IDENTIFIERS`` order (email, phone, external id).
        A client that PATCHes that profile then gets a second 409 naming the other owner.
        """
        identifiers = _given_identifiers(attributes)
        if not identifiers:
            detail = "A profile requires at least one of email, phone_number or external_id."
            raise invalid(detail, pointer="/data/attributes")
        owners = self.owners_of(identifiers)
        if owners:
            raise duplicate_profile(owners[0])
        profile = self.new_profile()
        self.apply(profile, _set_fields(attributes))
        return profile

    def update_profile(self, profile_id: str, attributes: ProfileAttributes) -> Profile:
        """200, 404, or 409 naming the profile that already owns an identifier being set."""
        profile = self.get_profile(profile_id)
        others = [o for o in self.owners_of(_given_identifiers(attributes)) if o != profile_id]
        if others:
            raise duplicate_profile(others[0])
        self.apply(profile, _set_fields(attributes))
        profile.updated = self.now()
        return profile

    # Events

    def create_event(self, attributes: EventAttributes) -> EventOutcome:
        """Store one event unless Klaviyo would drop it or already has it (revision 2023-02-22).

        A profile object without a usable identifier is dropped, as Klaviyo did in 2023.
        """
        who = read_event_profile(attributes.profile)
        when = self.event_time(attributes.time, _EARLIEST_EVENT)
        if not who.identifiers:
            self.dropped_events += 1
            return EventOutcome.DROPPED
        profile = self.match(who.identifiers) or self.new_profile()
        self.absorb(profile, who)
        value = None if attributes.value is None else float(attributes.value)
        event = NewEvent(attributes.metric.name, dict(attributes.properties), value, when)
        return self.store_event(profile, event, attributes.unique_id)

    def event_time(self, time: datetime | None, earliest: datetime) -> datetime:
        """The event's time, by default the time received, within the range Klaviyo accepts."""
        received = self.now()
        when = time or received.replace(microsecond=0)
        if not earliest < when <= received + timedelta(days=365):
            detail = (
                f"The time must be after the year {earliest.year} and at most 1 year in the future."
            )
            raise invalid(detail, pointer="/data/attributes/time")
        return when

    def store_event(self, profile: Profile, event: NewEvent, unique_id: str | None) -> EventOutcome:
        """Record an event of ``profile`` unless it has it already.

        The dedup key is (profile, metric name, ``unique_id``), where a missing ``unique_id``
        defaults to the event time truncated to the second, as the OAS describes.
        """
        unique_id = unique_id or event.time.isoformat()
        key = (profile.id, event.metric_name, unique_id)
        if key in self._event_keys:
            return EventOutcome.DUPLICATE
        self._event_keys.add(key)
        record = EventRecord(
            self.ids.new(),
            event.metric_name,
            profile.id,
            event.properties,
            event.value,
            event.time,
            unique_id,
            self.now(),
            event.currency,
        )
        self.events.append(record)
        last = profile.last_event_date
        profile.last_event_date = event.time if last is None else max(last, event.time)
        return EventOutcome.STORED

    # Subscriptions

    def subscribe(self, job: SubscriptionJobAttributes) -> None:
        """Add each entry's profile (matched or created) to the list with per-channel consent.

        Channels: without ``channels``, every channel the entry has an identifier for (as the
        2023-02-07 changelog says); with ``channels``, the listed ones. Either way a channel is
        consented only if the profile ends up with that identifier (email / phone_number).
        """
        for index, entry in enumerate(job.subscriptions):
            if entry.profile_id is not None and entry.profile_id not in self.profiles:
                raise invalid(
                    f"A profile with id {entry.profile_id} does not exist.",
                    pointer=f"/data/attributes/subscriptions/{index}/profile_id",
                )
        now = self.now()
        members = self.lists.setdefault(job.list_id, {})
        for entry in job.subscriptions:
            identifiers = _given_identifiers(entry)
            if entry.profile_id is not None:
                profile = self.profiles[entry.profile_id]
            else:
                profile = self.match(identifiers) or self.new_profile()
            self.fill_identifiers(profile, identifiers)
            channels = tuple(c for c in _requested_channels(entry) if _has_channel(profile, c))
            for channel in channels:
                consent = Consent("SUBSCRIBED", now, "API", "subscribe_profiles", job.custom_source)
                self.give_consent(profile, channel, consent, job.list_id)
            members[profile.id] = Membership(
                job.list_id, profile.id, channels, job.custom_source, now
            )

    def give_consent(
        self, profile: Profile, channel: str, consent: Consent, list_id: str | None
    ) -> None:
        """The profile's consent on a channel, and on that list when the job names one."""
        profile.consent[channel] = consent
        if list_id is not None:
            self.consent_on_list(list_id, profile.id, channel, consent)

    def consent_on_list(
        self, list_id: str, profile_id: str, channel: str, consent: Consent
    ) -> None:
        self.list_consent.setdefault(list_id, {}).setdefault(profile_id, {})[channel] = consent

    def list_ids_of(self, profile_id: str) -> list[str]:
        """The lists a profile is a member of, in the order they were first created."""
        return [list_id for list_id, members in self.lists.items() if profile_id in members]

    def list_members(self, list_id: str) -> list[Profile]:
        return [self.profiles[pid] for pid in self.lists.get(list_id, {})]

    # Recording

    def record(
        self, method: str, path: str, query: str, headers: dict[str, str], body: Any
    ) -> RecordedRequest:
        self._seq += 1
        entry = RecordedRequest(self._seq, self.now(), method, path, query, headers, body)
        self.requests.append(entry)
        return entry

    # Shared by the rules of every revision

    def new_profile(self) -> Profile:
        now = self.now()
        profile = Profile(self.ids.new(), now, now)
        self.profiles[profile.id] = profile
        return profile

    def owners_of(self, identifiers: Mapping[str, str]) -> list[str]:
        owners = (self._owners.get(_key(name, value)) for name, value in identifiers.items())
        return [owner for owner in dict.fromkeys(owners) if owner]

    def match(self, identifiers: Mapping[str, str]) -> Profile | None:
        owners = self.owners_of(identifiers)
        return self.profiles[owners[0]] if owners else None

    def apply(self, profile: Profile, fields: Mapping[str, Any]) -> None:
        """Set what the body names; ``null`` clears; location and properties merge key-wise."""
        for name, value in fields.items():
            if name == "location":
                _merge(profile.location, value)
            elif name == "properties":
                _merge(profile.properties, value)
            else:
                self._set_field(profile, name, value)

    def absorb(self, profile: Profile, who: EventProfile) -> None:
        """An event's profile object updates the profile it resolved to."""
        self.fill_identifiers(profile, who.identifiers)
        for name, value in who.attributes.items():
            self._set_field(profile, name, value)
        _merge(profile.location, who.location)
        _merge(profile.properties, who.properties)

    def fill_identifiers(self, profile: Profile, identifiers: Mapping[str, str]) -> None:
        """Add identifiers the profile lacks, unless another profile owns them (never steal)."""
        for name, value in identifiers.items():
            if name not in profile.fields and _key(name, value) not in self._owners:
                self._set_field(profile, name, value)

    def _set_field(self, profile: Profile, name: str, value: Any) -> None:
        if name in IDENTIFIERS:
            old = profile.fields.get(name)
            if old is not None:
                self._owners.pop(_key(name, old), None)
            if value is not None:
                self._owners[_key(name, value)] = profile.id
        if value is None:
            profile.fields.pop(name, None)
        else:
            profile.fields[name] = value


def _key(name: str, value: str) -> tuple[str, str]:
    # Klaviyo matches email addresses case-insensitively.
    return (name, value.lower() if name == "email" else value)


def _set_fields(attributes: ProfileAttributes) -> dict[str, Any]:
    """The members a 2023-02-22 body sets, ``location`` as a plain object."""
    fields = {name: getattr(attributes, name) for name in attributes.model_fields_set}
    if attributes.location is not None and "location" in fields:
        fields["location"] = attributes.location.model_dump(exclude_unset=True)
    return fields


def _given_identifiers(source: ProfileAttributes | SubscriptionEntry) -> dict[str, str]:
    found = {name: getattr(source, name, None) for name in IDENTIFIERS}
    return {name: value for name, value in found.items() if value is not None}


def _merge(target: dict[str, Any], update: Mapping[str, Any] | None) -> None:
    if update is None:
        target.clear()
    else:
        target.update(update)


def _requested_channels(entry: SubscriptionEntry) -> tuple[str, ...]:
    if entry.channels is None:
        return tuple(
            c for c in SUBSCRIPTION_CHANNELS if getattr(entry, _CHANNEL_IDENTIFIER[c]) is not None
        )
    return tuple(c for c in SUBSCRIPTION_CHANNELS if getattr(entry.channels, c))


def _has_channel(profile: Profile, channel: str) -> bool:
    return _CHANNEL_IDENTIFIER[channel] in profile.fields
