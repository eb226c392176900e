"""Parse at the edge: a raw JSON value and a destination config become a typed event or an error.

The checks run in the reference's order (docs/mapping.md §2): apiVersion, event type present,
private key present, event type supported, then the fields the mapping reads (the models of
``ingest.events``, whose first error is worded as §2 step 5 words it).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import ValidationError

from ..errors import ConfigurationError, DestinationError, InvalidEvent, UnsupportedEvent
from ..js import JsonValue, truthy
from .config import DestinationConfig, revision_of
from .events import EVENT, NOT_OBJECT, NOT_SCALAR, OWN_ERRORS, SCALARS, Event

#: the union's core validator: ``TypeAdapter.validate_python`` adds only argument checks
_validate = EVENT.validator.validate_python


class Identity(NamedTuple):
    """Who an event says it is, as the caller sent it: answers echo it, refused or not."""

    message_id: JsonValue
    type: JsonValue
    #: keeps one user's events in order during delivery
    user_key: str


#: the identity of an event that is not even a JSON object
NO_IDENTITY = Identity(None, None, "")


def parse(
    raw: Any, config: DestinationConfig, *, require_key: bool = True
) -> tuple[Identity, Event | DestinationError]:
    """The event's identity, and the typed event or why it cannot be mapped.

    ``require_key=False`` is for the dry run, which shows the key masked and sends nothing.
    """
    if not isinstance(raw, dict):
        return NO_IDENTITY, InvalidEvent("each event must be a JSON object", field="event")
    get = raw.get
    identity = Identity(
        get("messageId"), get("type"), str(get("userId") or get("anonymousId") or "")
    )
    try:
        return identity, _parse(raw, config, require_key=require_key)
    except DestinationError as error:
        return identity, error


def _parse(raw: dict[str, Any], config: DestinationConfig, *, require_key: bool) -> Event:
    revision_of(config)
    event_type = raw.get("type")
    if not truthy(event_type):
        raise InvalidEvent("Event type is required", field="type")
    if require_key and not config.has_key:
        raise ConfigurationError(
            f"Private API Key is a required field for {event_type} events", field="privateApiKey"
        )
    try:
        event: Event = _validate(raw)
        return event
    except ValidationError as exc:
        raise refusal(exc, event_type) from None


def refusal(exc: ValidationError, event_type: Any) -> DestinationError:
    """§2 steps 4 and 5 in this service's words: the type, or the first field, that is wrong
    (pydantic reports the fields in the order they are declared)."""
    error = exc.errors(include_url=False, include_context=False, include_input=False)[0]
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        lowered = event_type.lower() if isinstance(event_type, str) else str(event_type).lower()
        return UnsupportedEvent(f"Event type {lowered} is not supported", field="type")
    loc = error["loc"]
    name = str(loc[1]) if len(loc) > 1 else "event"
    if name in SCALARS:
        reason = NOT_SCALAR
    elif error["type"] in OWN_ERRORS:
        reason = error["msg"]
    else:
        reason = NOT_OBJECT
    return InvalidEvent(f"Invalid event field {name}: {reason}", field=name)
