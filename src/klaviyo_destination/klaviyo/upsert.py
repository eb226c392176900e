"""Identify's upsert on the delivery path: create the profile, or PATCH it after a 409.

The one owner of the rules: create → 409 with ``duplicate_profile_id`` → PATCH that profile →
a second 409 is a conflict no PATCH resolves. Requests go through the ``send`` it is given
(the session's, with retries), so this module only decides.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from ..errors import KlaviyoProfileConflict, KlaviyoUnavailable
from ..planned import PlannedRequest, patch_profile
from .answers import KlaviyoAnswer, SentRequest, created_id, duplicate_id, klaviyo_errors

#: One request to its final answer, recorded in ``sent``; raises ``KlaviyoUnavailable``.
Send = Callable[[PlannedRequest, float, list[SentRequest]], Awaitable[KlaviyoAnswer]]

_IDENTIFIERS: Final = ("email", "phone_number", "external_id")


async def run(
    send: Send, create: PlannedRequest, deadline: float, sent: list[SentRequest]
) -> KlaviyoAnswer:
    """The answer that settles the upsert: the create's, or the PATCH's after a 409. A final
    answer other than those two is returned as it is, for the caller to reject."""
    answer = await send(create, deadline, sent)
    if answer.is_success:
        if created_id(answer.status, answer.body) is None:
            # The reference retries a create answered without an id; a retry meets 409 → PATCH.
            msg = f"Klaviyo answered {answer.status} to create-profile without data.id"
            raise KlaviyoUnavailable(msg, klaviyo_status=answer.status)
        return answer
    if answer.status != 409:
        return answer
    profile_id = duplicate_id(answer.status, answer.body)
    if profile_id is None:
        raise KlaviyoProfileConflict(
            "Klaviyo answered 409 to create-profile without meta.duplicate_profile_id, so there "
            "is no profile to update; check the email, phone_number and external_id sent",
            klaviyo_status=409,
            klaviyo_errors=klaviyo_errors(answer.body),
        )
    patched = await send(patch_profile(create, profile_id), deadline, sent)
    if patched.status == 409:
        raise _conflict(create, patched)
    return patched


def _conflict(create: PlannedRequest, patched: KlaviyoAnswer) -> KlaviyoProfileConflict:
    """The PATCH met 409 too: the identifiers belong to two profiles; say which to fix."""
    attributes = create.body.get("data", {}).get("attributes", {})
    present = [name for name in _IDENTIFIERS if attributes.get(name)]
    who = " and ".join(present) if len(present) > 1 else "the identifiers of this profile"
    return KlaviyoProfileConflict(
        f"{who} belong to two different Klaviyo profiles; merge those profiles in Klaviyo, "
        "or send only the identifier of the profile to update",
        klaviyo_status=409,
        klaviyo_errors=klaviyo_errors(patched.body),
    )
