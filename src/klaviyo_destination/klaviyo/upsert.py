"""Identify's two steps on the delivery path: create the profile, or PATCH it after a 409.

What an answer to create-profile (or to the PATCH) means, as decisions over the answer only.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import SecretStr

from ..errors import KlaviyoProfileConflict, KlaviyoUnavailable
from ..planned import PlannedRequest, patch_profile
from .answers import created_id, duplicate_id, klaviyo_errors

_IDENTIFIERS: Final = ("email", "phone_number", "external_id")


def follow_up(
    create: PlannedRequest, status: int, body: Any, *, secret: SecretStr
) -> PlannedRequest | None:
    """The PATCH that completes an upsert, or ``None`` when there is nothing to follow up."""
    if 200 <= status < 300:
        if created_id(status, body) is not None:
            return None
        # The reference retries a create answered without an id; a retry meets 409 → PATCH.
        msg = f"Klaviyo answered {status} to create-profile without data.id"
        raise KlaviyoUnavailable(msg, klaviyo_status=status)
    if status != 409:
        return None
    profile_id = duplicate_id(status, body)
    if profile_id is None:
        raise KlaviyoProfileConflict(
            "Klaviyo answered 409 to create-profile without meta.duplicate_profile_id, so there "
            "is no profile to update; check the email, phone_number and external_id sent",
            klaviyo_status=409,
            klaviyo_errors=klaviyo_errors(body, secret=secret),
        )
    return patch_profile(create, profile_id)


def conflict(
    create: PlannedRequest, patch_body: Any, *, secret: SecretStr
) -> KlaviyoProfileConflict:
    """The PATCH met 409 too: the identifiers belong to two profiles; say which to fix."""
    attributes = create.body.get("data", {}).get("attributes", {})
    present = [name for name in _IDENTIFIERS if attributes.get(name)]
    who = " and ".join(present) if len(present) > 1 else "the identifiers of this profile"
    return KlaviyoProfileConflict(
        f"{who} belong to two different Klaviyo profiles; merge those profiles in Klaviyo, "
        "or send only the identifier of the profile to update",
        klaviyo_status=409,
        klaviyo_errors=klaviyo_errors(patch_body, secret=secret),
    )
