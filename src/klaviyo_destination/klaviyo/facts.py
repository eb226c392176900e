"""Klaviyo's facts at the revisions this service speaks: paths, rate limits, headers.

One module for what Klaviyo decides, read by delivery, the settings' defaults, the planned
requests and the emulator, so a revision is data here, not a second pipeline: RudderStack's
``apiVersion`` names one (:data:`REVISIONS`). It imports nothing of the
service and nothing heavy (``SecretStr`` only for the type checker), so the emulator and the
settings read it without loading the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from pydantic import SecretStr

REVISION: Final = "2023-02-22"
DEFAULT_BASE_URL: Final = "https://a.klaviyo.com"

PROFILES_PATH: Final = "/api/profiles"
EVENTS_PATH: Final = "/api/events"
SUBSCRIPTIONS_PATH: Final = "/api/profile-subscription-bulk-create-jobs"
#: From revision 2024-10-15 (apiVersion v2 and v3): the profile upsert, and unsubscribing.
PROFILE_IMPORT_PATH: Final = "/api/profile-import"
UNSUBSCRIPTIONS_PATH: Final = "/api/profile-subscription-bulk-delete-jobs"

#: What an upsert does after a 409, as the dry run and the golden tables show it.
ON_CONFLICT: Final = "PATCH /api/profiles/{duplicate_profile_id} with data.id set"
#: Klaviyo accepts at most this many profiles in one subscription bulk job (2023-02-22); the
#: reference batches v2/v3 jobs by it too (MAX_BATCH_SIZE), and so does delivery.
MAX_SUBSCRIPTIONS_PER_JOB: Final = 100
#: What Klaviyo takes in one call from 2024-10-15 on (shared spec §4).
MAX_PROFILES_PER_CALL: Final[Mapping[str, int]] = MappingProxyType(
    {SUBSCRIPTIONS_PATH: 1000, UNSUBSCRIPTIONS_PATH: 100}
)


class Endpoint(StrEnum):
    """Endpoint classes Klaviyo rate-limits separately; also the reference's ``endpointPath``."""

    PROFILES = PROFILES_PATH
    EVENTS = EVENTS_PATH
    SUBSCRIPTIONS = SUBSCRIPTIONS_PATH
    PROFILE_IMPORT = PROFILE_IMPORT_PATH
    UNSUBSCRIPTIONS = UNSUBSCRIPTIONS_PATH


class RateLimit(NamedTuple):
    """What one endpoint class admits: ``burst`` in any second, ``steady`` in any minute."""

    burst: int
    steady: int


#: The tiers of the revision's docs: L for profile writes and subscription jobs (counted per
#: endpoint: they share numbers, not a bucket), XL for events, M for profile queries and lists
#: (which only the emulator serves).
TIER_M: Final = RateLimit(10, 150)
TIER_L: Final = RateLimit(75, 700)
TIER_XL: Final = RateLimit(350, 3500)
#: Tier L from revision 2026-04-15 (profile-import and both subscription jobs: 750 a minute).
TIER_L_2026: Final = RateLimit(75, 750)


class ApiVersion(StrEnum):
    """RudderStack's name for a revision (``destination.Config.apiVersion``)."""

    V1 = "v1"
    V2 = "v2"
    V3 = "v3"


@dataclass(frozen=True, slots=True)
class Revision:
    """One Klaviyo revision as this service speaks it: the ``revision`` header, the rate limit
    of each endpoint class its requests go to, and whether a subscription job's profiles must
    carry ``subscriptions`` (required from 2025-01-15, so RudderStack's v3 always builds them)."""

    api_version: ApiVersion
    name: str
    limits: Mapping[Endpoint, RateLimit]
    subscriptions_required: bool = False

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(self.limits)

    @property
    def profile_import(self) -> bool:
        """Profiles are upserted with ``POST /api/profile-import`` (v2, v3), not created and
        patched (v1)."""
        return Endpoint.PROFILE_IMPORT in self.limits


#: The revisions the mapping and delivery speak, by RudderStack's ``apiVersion``. v1 is the
#: legacy path (create-profile, 409, PATCH); v2 and v3 the profile-import path, which differ in
#: their revision and, at v3, in strict consent.
REVISIONS: Final[Mapping[ApiVersion, Revision]] = MappingProxyType(
    {
        ApiVersion.V1: Revision(
            ApiVersion.V1,
            REVISION,
            {Endpoint.PROFILES: TIER_L, Endpoint.SUBSCRIPTIONS: TIER_L, Endpoint.EVENTS: TIER_XL},
        ),
        ApiVersion.V2: Revision(
            ApiVersion.V2,
            "2024-10-15",
            {
                Endpoint.PROFILE_IMPORT: TIER_L,
                Endpoint.SUBSCRIPTIONS: TIER_L,
                Endpoint.UNSUBSCRIPTIONS: TIER_L,
                Endpoint.EVENTS: TIER_XL,
            },
        ),
        ApiVersion.V3: Revision(
            ApiVersion.V3,
            "2026-04-15",
            {
                Endpoint.PROFILE_IMPORT: TIER_L_2026,
                Endpoint.SUBSCRIPTIONS: TIER_L_2026,
                Endpoint.UNSUBSCRIPTIONS: TIER_L_2026,
                Endpoint.EVENTS: TIER_XL,
            },
            subscriptions_required=True,
        ),
    }
)
#: The revision of a request that names none: the legacy path's.
V1: Final = REVISIONS[ApiVersion.V1]
_BY_PATH: Final = {endpoint.value: endpoint for endpoint in Endpoint}


def endpoint_of(path: str) -> Endpoint:
    """The endpoint class of a request path: its own, or ``PROFILES`` for
    ``/api/profiles/{id}`` (the reference labels a PATCH with the collection's path)."""
    found = _BY_PATH.get(path)
    if found is not None:
        return found
    if path.startswith(PROFILES_PATH + "/"):
        return Endpoint.PROFILES
    raise ValueError(f"no Klaviyo endpoint class for {path!r}")


#: Klaviyo's newest GA revision on 2026-12-06, the one its Python SDK (klaviyo-api 25.0.0) sends.
#: No ``apiVersion`` names it; on the endpoints above its limits are v3's (the 2026-07-15 OAS,
#: which it follows on them, and the SDK's docstrings give the same tiers).
NEWEST_REVISION: Final = "2026-10-15"
#: Revisions released before this date were retired by 2026-12-06 (two years after release).
RETIRED_BEFORE: Final = "2025-01-15"

#: The ``Authorization`` scheme of a private key.
AUTH_SCHEME: Final = "Klaviyo-API-Key"
#: What the dry run shows instead of a key.
MASKED: Final = "***"


def klaviyo_headers(api_key: SecretStr | None, revision: str = REVISION) -> dict[str, str]:
    """The four headers of every call, spelled as the reference emits them (docs/mapping.md §4).

    ``None`` gives the masked form the dry run shows.
    """
    key = MASKED if api_key is None else api_key.get_secret_value()
    return {
        "Authorization": f"{AUTH_SCHEME} {key}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "revision": revision,
    }
