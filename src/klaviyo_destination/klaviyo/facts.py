"""Klaviyo's facts at the revision this service speaks: paths, rate limits, headers.

One module for what Klaviyo decides, read by delivery, the settings' defaults, the planned
requests and the emulator, so another revision changes them here. It imports nothing of the
service and nothing heavy (``SecretStr`` only for the type checker), so the emulator and the
settings read it without loading the client.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Final, NamedTuple

if TYPE_CHECKING:
    from pydantic import SecretStr

REVISION: Final = "2023-02-22"
DEFAULT_BASE_URL: Final = "https://a.klaviyo.com"

PROFILES_PATH: Final = "/api/profiles"
EVENTS_PATH: Final = "/api/events"
SUBSCRIPTIONS_PATH: Final = "/api/profile-subscription-bulk-create-jobs"

#: What an upsert does after a 409, as the dry run and the golden tables show it.
ON_CONFLICT: Final = "PATCH /api/profiles/{duplicate_profile_id} with data.id set"
#: Klaviyo accepts at most this many profiles in one subscription bulk job.
MAX_SUBSCRIPTIONS_PER_JOB: Final = 100


class Endpoint(StrEnum):
    """Endpoint classes Klaviyo rate-limits separately; also the reference's ``endpointPath``."""

    PROFILES = PROFILES_PATH
    EVENTS = EVENTS_PATH
    SUBSCRIPTIONS = SUBSCRIPTIONS_PATH


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

#: The ``Authorization`` scheme of a private key.
AUTH_SCHEME: Final = "Klaviyo-API-Key"
#: What the dry run shows instead of a key.
MASKED: Final = "***"


def klaviyo_headers(api_key: SecretStr | None) -> dict[str, str]:
    """The four headers of every call, spelled as the reference emits them (docs/mapping.md §4).

    ``None`` gives the masked form the dry run shows.
    """
    key = MASKED if api_key is None else api_key.get_secret_value()
    return {
        "Authorization": f"{AUTH_SCHEME} {key}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "revision": REVISION,
    }
