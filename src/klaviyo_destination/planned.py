"""What the mapping produces: planned Klaviyo requests, and one planned event.

A ``PlannedRequest`` carries no headers: authentication is added by whoever sends it
(``klaviyo/facts.py`` spells the headers), so nothing produced by the mapping can leak a key.
It names its ``revision`` instead, so the protocol envelopes, the dry run and the Klaviyo
client all put the right ``revision`` header on it and count it against that revision's limits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .errors import DestinationError
from .js import JsonObject, JsonValue
from .klaviyo.facts import (
    EVENTS_PATH,
    PROFILE_IMPORT_PATH,
    PROFILES_PATH,
    SUBSCRIPTIONS_PATH,
    UNSUBSCRIPTIONS_PATH,
    V1,
    Endpoint,
    Revision,
    endpoint_of,
)


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """One Klaviyo call the mapping wants made: method, path below the base URL, JSON body, and
    the revision it is written for.

    ``upsert`` marks identify's create-profile call (v1): the delivery layer sends it as
    ``POST /api/profiles`` and, when Klaviyo answers 409 with ``duplicate_profile_id``,
    follows with :func:`patch_profile` for that id. It is data, not I/O, so ``plan()`` stays pure.
    """

    method: Literal["POST", "PATCH"]
    path: str
    body: JsonObject
    upsert: bool = False
    revision: Revision = V1

    @property
    def endpoint(self) -> Endpoint:
        """The rate-limit class of this request (also the reference's ``endpointPath`` label)."""
        return endpoint_of(self.path)


def create_profile(body: JsonObject) -> PlannedRequest:
    """Identify's first step: create the profile, or update it on 409 (see ``upsert``)."""
    return PlannedRequest("POST", PROFILES_PATH, body, upsert=True)


def patch_profile(create: PlannedRequest, profile_id: str) -> PlannedRequest:
    """Identify's second step: the same body with ``data.id`` set, sent to the existing profile."""
    data = dict(create.body["data"])
    data["id"] = profile_id
    return PlannedRequest("PATCH", f"{PROFILES_PATH}/{profile_id}", {"data": data})


def create_event(attributes: JsonObject, revision: Revision = V1) -> PlannedRequest:
    body = {"data": {"type": "event", "attributes": attributes}}
    return PlannedRequest("POST", EVENTS_PATH, body, revision=revision)


def import_profile(data: JsonObject, revision: Revision) -> PlannedRequest:
    """v2/v3 identify: the profile upsert (docs/mapping.md §18)."""
    return PlannedRequest("POST", PROFILE_IMPORT_PATH, {"data": data}, revision=revision)


def list_job(
    subscribe: bool, list_id: Any, profiles: list[JsonObject], revision: Revision
) -> PlannedRequest:
    """v2/v3: subscribe ``profiles`` to a list, or unsubscribe them (docs/mapping.md §19.6)."""
    kind = "create" if subscribe else "delete"
    data = {
        "type": f"profile-subscription-bulk-{kind}-job",
        "attributes": {"profiles": {"data": profiles}},
        "relationships": {"list": {"data": {"type": "list", "id": list_id}}},
    }
    path = SUBSCRIPTIONS_PATH if subscribe else UNSUBSCRIPTIONS_PATH
    return PlannedRequest("POST", path, {"data": data}, revision=revision)


def list_job_parts(request: PlannedRequest) -> tuple[bool, Any, list[JsonObject]]:
    """A v2/v3 list job's operation (subscribe?), list id and profiles."""
    data = request.body["data"]
    profiles: list[JsonObject] = data["attributes"]["profiles"]["data"]
    return request.path == SUBSCRIPTIONS_PATH, data["relationships"]["list"]["data"]["id"], profiles


def subscribe(attributes: JsonObject) -> PlannedRequest:
    body = {"data": {"type": "profile-subscription-bulk-create-job", "attributes": attributes}}
    return PlannedRequest("POST", SUBSCRIPTIONS_PATH, body)


def subscription_list_id(request: PlannedRequest) -> Any:
    """The ``list_id`` of a subscription job, or ``None`` when the job names no list."""
    return request.body["data"]["attributes"].get("list_id")


def subscriptions_of(request: PlannedRequest) -> list[JsonObject]:
    subs: list[JsonObject] = request.body["data"]["attributes"]["subscriptions"]
    return subs


@dataclass(frozen=True, slots=True)
class JobLayout:
    """Where a list job keeps its entries, one per profile, as Klaviyo's ``source.pointer``
    names them: v1's ``subscriptions``, v2/v3's ``profiles.data`` (contact under ``attributes``).
    """

    #: the member of ``data.attributes`` that holds the entries
    container: str
    #: the JSON pointer of the entries' array
    entries: str
    #: within an entry, where ``email`` and ``phone_number`` sit
    contact: str


V1_JOB: Final = JobLayout("/data/attributes/subscriptions", "/data/attributes/subscriptions", "")
IMPORT_JOB: Final = JobLayout(
    "/data/attributes/profiles", "/data/attributes/profiles/data", "/attributes"
)
#: The endpoints of list jobs, which delivery merges per list (v1: subscribe only).
LIST_JOBS: Final = frozenset({Endpoint.SUBSCRIPTIONS, Endpoint.UNSUBSCRIPTIONS})


def job_layout(request: PlannedRequest) -> JobLayout:
    return IMPORT_JOB if request.revision.profile_import else V1_JOB


def job_contacts(request: PlannedRequest) -> list[JsonObject]:
    """Each entry of a list job as the object holding its ``email`` and ``phone_number``."""
    if request.revision.profile_import:
        return [profile["attributes"] for profile in list_job_parts(request)[2]]
    return subscriptions_of(request)


@dataclass(slots=True)
class PlannedEvent:
    """One input event after mapping: who it is for, and its requests or why it can't be sent.

    ``message_id`` and ``type`` are echoed in answers as the caller sent them (an invalid event
    still has them); ``user_key`` keeps one user's events in order during delivery.
    ``suppressed`` is the rudder-server protocol's 299 mark (docs/mapping.md §6.9);
    ``warnings`` (``{"code", "field", "message"}``) say what the webhook path changed in what is
    sent (``phones.py``), shown in the event's result.

    Mutable, unlike ``PlannedRequest``: one is built for every event, and frozen would set each
    field through ``object.__setattr__`` (bench/optimisations.md). Nothing assigns a field;
    ``dataclasses.replace`` makes a changed copy (the protocol's look-up does).
    """

    message_id: JsonValue
    type: JsonValue
    user_key: str
    requests: list[PlannedRequest] = field(default_factory=list)
    error: DestinationError | None = None
    suppressed: str | None = None
    warnings: tuple[JsonObject, ...] = ()

    @property
    def header(self) -> JsonObject:
        return {"messageId": self.message_id, "type": self.type}
