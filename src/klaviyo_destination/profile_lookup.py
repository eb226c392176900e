"""Identify's inline create-profile call as the reference makes it (§6.7-§6.9), minus the I/O.

The rudder-server protocol endpoints must answer with the PATCH for an existing profile's id,
so they call ``POST /api/profiles`` while transforming. The call itself is injected (a
``ProfileLookup``); what its answer means is decided here, purely.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from .errors import ProfileLookupError, js_stringify
from .klaviyo import JsonObject, PlannedRequest, patch_profile

#: ``(create-profile body, api key) -> (HTTP status, parsed JSON body or "")``
ProfileLookup = Callable[[JsonObject, SecretStr], Awaitable[tuple[int, Any]]]


@dataclass(frozen=True, slots=True)
class Resolved:
    """Identify's requests after the look-up, and the 299 "already applied" mark if any."""

    requests: list[PlannedRequest]
    suppressed: str | None = None


def created_id(status: int, body: Any) -> str | None:
    """The new profile's id from a create answer (any 2xx carrying ``data.id``), else None."""
    # Q9 fixed: any 2xx carrying data.id is a created profile, not only 201.
    if 200 <= status < 300 and isinstance(body, dict) and isinstance(body.get("data"), dict):
        profile_id = body["data"].get("id")
        return profile_id if isinstance(profile_id, str) and profile_id else None
    return None


def duplicate_id(status: int, body: Any) -> str | None:
    """The existing profile's id from a 409 (``errors[0].meta.duplicate_profile_id``)."""
    if status != 409 or not isinstance(body, dict):
        return None
    errors = body.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    meta = first.get("meta") if isinstance(first, dict) else None
    profile_id = meta.get("duplicate_profile_id") if isinstance(meta, dict) else None
    return profile_id if isinstance(profile_id, str) and profile_id else None


def resolve_identify(
    planned: list[PlannedRequest], status: int, body: Any, *, filter_code: bool
) -> Resolved:
    """Turn ``[create, (subscribe)]`` plus the create answer into what the reference emits."""
    create, rest = planned[0], planned[1:]
    created = created_id(status, body)
    profile_id = created or duplicate_id(status, body)
    if profile_id is None:
        # A success or 409 without an id is retryable (500), never a 2xx that rudder-server
        # would take as delivered (Q9 fixed); other answers keep Klaviyo's status.
        raise ProfileLookupError(500 if status == 409 or 200 <= status < 300 else status, body)
    patch = patch_profile(create, profile_id)
    if not (filter_code and created):
        return Resolved([patch, *rest])
    if rest:
        return Resolved(list(rest))  # the profile was just created from this very body
    data = body["data"]
    mark = {
        "id": data["id"],
        **({"attributes": data["attributes"]} if "attributes" in data else {}),
    }
    return Resolved([patch], suppressed=js_stringify(mark))
