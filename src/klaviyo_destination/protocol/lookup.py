"""Identify's inline create-profile call on the protocol path, as the reference makes it.

rudder-server delivers what the protocol answers, so for an identify the answer must already
hold the PATCH for the existing profile's id: the protocol calls ``POST /api/profiles`` while
transforming (docs/mapping.md §6.7-§6.9). The call is injected (a ``ProfileLookup``); what its
answer means is decided here, with the reference's Node-style error texts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
from pydantic import SecretStr

from ..errors import ProfileLookupError, RateLimited
from ..js import JsonObject
from ..klaviyo import KlaviyoClient, KlaviyoSession
from ..klaviyo.answers import created_id, duplicate_id, transport_error
from ..planned import PlannedEvent, patch_profile

#: ``(create-profile body, api key) -> (HTTP status, parsed JSON body or "")``
ProfileLookup = Callable[[JsonObject, SecretStr], Awaitable[tuple[int, Any]]]


def js_stringify(value: Any) -> str:
    """``JSON.stringify``: compact, non-ASCII kept as is."""
    return orjson.dumps(value).decode()


def _lookup_failed(status: int, body: Any) -> ProfileLookupError:
    """The reference's network error for a create answer without a profile id."""
    text = js_stringify(body)
    message = {"message": f"Failed to create user due to {text}", "destinationResponse": text}
    return ProfileLookupError.of(status, js_stringify(message))


def resolve_identify(
    planned: PlannedEvent, status: int, body: Any, *, filter_code: bool
) -> PlannedEvent:
    """``[create, (subscribe)]`` plus the create answer → what the reference emits."""
    create, rest = planned.requests[0], planned.requests[1:]
    created = created_id(status, body)
    profile_id = created or duplicate_id(status, body)
    if profile_id is None:
        # A success or 409 without an id is retryable (500), never a 2xx that rudder-server
        # would take as delivered (Q9 fixed); other answers keep Klaviyo's status.
        status = 500 if status == 409 or 200 <= status < 300 else status
        return dataclasses.replace(planned, requests=[], error=_lookup_failed(status, body))
    patch = patch_profile(create, profile_id)
    if not (filter_code and created):
        return dataclasses.replace(planned, requests=[patch, *rest])
    if rest:  # the profile was just created from this very body
        return dataclasses.replace(planned, requests=list(rest))
    data = body["data"]
    mark = {
        "id": data["id"],
        **({"attributes": data["attributes"]} if "attributes" in data else {}),
    }
    return dataclasses.replace(planned, requests=[patch], suppressed=js_stringify(mark))


def klaviyo_lookup(client: KlaviyoClient) -> ProfileLookup:
    """The look-up through the app's Klaviyo client, answering as the reference's would."""

    async def lookup(body: JsonObject, api_key: SecretStr) -> tuple[int, Any]:
        try:
            answer = await KlaviyoSession(client, api_key).create_profile_once(body)
        except RateLimited as exc:
            detail = f"Client-side rate limit. Expected available in {exc.wait:.0f} seconds."
            return 429, {"errors": [{"status": 429, "code": "throttled", "detail": detail}]}
        except httpx.TransportError as exc:
            return transport_error(exc)
        # The session masked the key in the body: it goes into the protocol's error messages.
        masked = answer.body
        return answer.status or 500, "" if masked in (None, "", False, 0) else masked

    return lookup
