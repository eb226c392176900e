"""Outbound side: Klaviyo endpoints at revision 2023-02-22 and the planned-request model.

A ``PlannedRequest`` carries no headers: authentication and ``revision`` are added by the
delivery client (``delivery.py``), so nothing produced by the mapping can leak a key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Literal

from pydantic import SecretStr

REVISION: Final = "2023-02-22"
DEFAULT_BASE_URL: Final = "https://a.klaviyo.com"

PROFILES_PATH: Final = "/api/profiles"
EVENTS_PATH: Final = "/api/events"
SUBSCRIPTIONS_PATH: Final = "/api/profile-subscription-bulk-create-jobs"

#: Klaviyo accepts at most this many profiles in one subscription bulk job.
MAX_SUBSCRIPTIONS_PER_JOB: Final = 100

JsonObject = dict[str, Any]


class Endpoint(StrEnum):
    """Endpoint classes Klaviyo rate-limits separately; also the reference's ``endpointPath``."""

    PROFILES = PROFILES_PATH
    EVENTS = EVENTS_PATH
    SUBSCRIPTIONS = SUBSCRIPTIONS_PATH


@dataclass(frozen=True, slots=True)
class PlannedRequest:
    """One Klaviyo call the mapping wants made: method, path below the base URL, JSON body.

    ``upsert`` marks identify's create-profile call: the delivery layer sends it as
    ``POST /api/profiles`` and, when Klaviyo answers 409 with ``duplicate_profile_id``,
    follows with :func:`patch_profile` for that id. It is data, not I/O, so ``plan()`` stays pure.
    """

    method: Literal["POST", "PATCH"]
    path: str
    body: JsonObject
    upsert: bool = field(default=False)

    @property
    def endpoint(self) -> Endpoint:
        """The rate-limit class of this request (also the reference's ``endpointPath`` label)."""
        if self.path.startswith(PROFILES_PATH):
            return Endpoint.PROFILES
        if self.path.startswith(EVENTS_PATH):
            return Endpoint.EVENTS
        return Endpoint.SUBSCRIPTIONS

    def as_dict(self) -> JsonObject:
        """JSON-ready form used by the dry run and the tests."""
        out: JsonObject = {"method": self.method, "path": self.path, "body": self.body}
        if self.upsert:
            out["on_conflict"] = "PATCH /api/profiles/{duplicate_profile_id}"
        return out


def create_profile(body: JsonObject) -> PlannedRequest:
    """Identify's first step: create the profile, or update it on 409 (see ``upsert``)."""
    return PlannedRequest("POST", PROFILES_PATH, body, upsert=True)


def patch_profile(create: PlannedRequest, profile_id: str) -> PlannedRequest:
    """Identify's second step: the same body with ``data.id`` set, sent to the existing profile."""
    data = dict(create.body["data"])
    data["id"] = profile_id
    return PlannedRequest("PATCH", f"{PROFILES_PATH}/{profile_id}", {"data": data})


def create_event(attributes: JsonObject) -> PlannedRequest:
    return PlannedRequest(
        "POST", EVENTS_PATH, {"data": {"type": "event", "attributes": attributes}}
    )


def subscribe(attributes: JsonObject) -> PlannedRequest:
    body = {"data": {"type": "profile-subscription-bulk-create-job", "attributes": attributes}}
    return PlannedRequest("POST", SUBSCRIPTIONS_PATH, body)


def subscription_list_id(request: PlannedRequest) -> Any:
    """The ``list_id`` of a subscription job, or ``None`` when the job names no list."""
    return request.body["data"]["attributes"].get("list_id")


def subscriptions_of(request: PlannedRequest) -> list[JsonObject]:
    subs: list[JsonObject] = request.body["data"]["attributes"]["subscriptions"]
    return subs


def auth_headers(api_key: SecretStr) -> dict[str, str]:
    """The four headers of every Klaviyo call, spelled as the reference emits them (§4)."""
    return {
        "Authorization": f"Klaviyo-API-Key {api_key.get_secret_value()}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "revision": REVISION,
    }
