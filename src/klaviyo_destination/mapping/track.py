"""Track and screen → one create-event request (docs/mapping.md §8; at apiVersion v2/v3, §20)."""

from __future__ import annotations

from typing import Any, Final

from .. import planned
from ..errors import InvalidEvent
from ..ingest.config import DestinationConfig
from ..ingest.events import Screen, Track
from ..js import MISSING, JsonObject, js_string, js_trim, kept, truthy
from ..klaviyo.facts import Revision
from ..planned import PlannedRequest
from .fields import (
    ECOMMERCE_EVENTS,
    EVENT_PROFILE,
    EVENT_VALUE,
    IMPORT_EVENT_TIME,
    IMPORT_EVENT_VALUE,
    IMPORT_STRIPPED_EVENT_PROPERTIES,
    IMPORT_VALUE_CURRENCY,
    ITEM,
    ITEM_SOURCES,
    METRIC_NAME,
    MISSING_METRIC_MESSAGE,
    STRIPPED_EVENT_PROPERTIES,
    USER_ID,
    RuleTable,
)
from .identify import NO_EMAIL_OR_PHONE
from .lookups import (
    as_float,
    custom_traits,
    lookup,
    map_event,
    map_object,
    value_at,
)
from .paths import flatten
from .profile import profile_data
from .values import event_time, numeric_value, time_value, unique_id

#: event_time_iso: a number that is no date rejects the event (§8.7).
INVALID_TIMESTAMP: Final = (
    "Invalid timestamp {}: a numeric timestamp is Unix time (milliseconds from 1e11, seconds "
    "below) and must be a date within 8.64e15 ms of 1970-01-01"
)


def plan(event: Track | Screen, config: DestinationConfig, _: Revision) -> list[PlannedRequest]:
    name = event.event
    _check_name(name)
    ecommerce = ECOMMERCE_EVENTS.get(name.strip().lower()) if isinstance(name, str) else None
    if ecommerce is not None and event.properties is not None:
        metric, table = ecommerce
        attributes = _ecommerce(event.properties, metric, table)
    else:
        attributes = _custom_event(event)
    if config.flatten_properties:
        attributes["properties"] = flatten(attributes["properties"])
        if "value" in attributes:  # keep the reference's key order: metric, properties, value
            attributes["value"] = attributes.pop("value")
    attributes["profile"] = _profile(event, config)
    _set_time(attributes, event_time(event.timestamp), event.timestamp)
    # D1: Klaviyo deduplicates on profile + metric + unique_id, so a resend counts once.
    attributes["unique_id"] = unique_id(event.message_id, event.received)
    return [planned.create_event(attributes)]


def plan_import(
    event: Track | Screen,
    config: DestinationConfig,
    revision: Revision,
    *,
    phone_check: bool = True,
) -> list[PlannedRequest]:
    """§20: the event in the newer shape; the reference's KlaviyoTrackV2. ``phone_check``: see
    ``profile_data``."""
    # `event || name` for track and screen alike, the name exactly as sent (§20.2)
    name = event.event if truthy(event.event) else event.received.get("name", MISSING)
    _check_name(name)
    attributes: JsonObject = {}
    for path in IMPORT_EVENT_VALUE:  # the first kept: 0 counts, false fails to parse
        found = value_at(event, path)
        if kept(found):
            attributes["value"] = as_float(found, path.text)
            break
    if (currency := lookup(event, IMPORT_VALUE_CURRENCY)) is not MISSING:
        attributes["value_currency"] = currency
    if (time := lookup(event, IMPORT_EVENT_TIME)) is not MISSING:
        _set_time(attributes, time_value(time), time)
    properties = {
        key: item
        for key, item in (event.properties or {}).items()
        if key not in IMPORT_STRIPPED_EVENT_PROPERTIES
    }
    # event_properties_always: {} when there are none (the reference omits the key, §20.1)
    attributes["properties"] = flatten(properties) if config.flatten_properties else properties
    # Q4 fixed here too: read from the untouched event, so properties.email reaches the profile
    profile = profile_data(event, config, identify=False, phone_check=phone_check)
    attributes["profile"] = {"data": profile}
    metric: JsonObject = {} if name is MISSING else {"name": name}
    attributes["metric"] = {"data": {"type": "metric", "attributes": metric}}
    attributes["unique_id"] = unique_id(event.message_id, event.received)  # D1, Part A item 8
    return [planned.create_event(attributes, revision)]


def _check_name(name: Any) -> None:
    if truthy(name) and not isinstance(name, str):
        raise InvalidEvent("Event type should be a string", field="event")


def _set_time(attributes: JsonObject, time: Any, sent: Any) -> None:
    """``time`` as ``event_time_iso`` gives it (§8.7): none, a value, or ``None`` (no date)."""
    if time is None:
        raise InvalidEvent(INVALID_TIMESTAMP.format(js_string(sent)), field="timestamp")
    if time is not MISSING:
        attributes["time"] = time


def _ecommerce(properties: JsonObject, metric: str, table: RuleTable) -> JsonObject:
    mapped = map_object(table, properties)
    items = _items(properties)
    if items:
        mapped["items"] = items
    return {"metric": {"name": metric}, "properties": mapped}


def _items(properties: JsonObject) -> list[JsonObject]:
    source: Any = MISSING
    for key in ITEM_SOURCES:  # an empty but truthy ``items: []`` hides ``products`` (Q5)
        if truthy(properties.get(key)):
            source = properties[key]
            break
    if not isinstance(source, list):
        return []
    # map_object writes kept values only, so there are no nulls left to drop (§8.3).
    items = (map_object(ITEM, element) for element in source)
    return [item for item in items if item]


def _custom_event(event: Track | Screen) -> JsonObject:
    source, found = _event_value(event)
    value = numeric_value(found) if source is not None else None
    # event_value_number: a value that is no number stays in properties, so nothing is lost.
    kept_key = source if value is None else None
    attributes: JsonObject = {"metric": {"name": _metric_name(event)}}
    # event_properties_always: Klaviyo's schema requires properties, even empty (extends Q10).
    attributes["properties"] = {
        key: item
        for key, item in (event.properties or {}).items()
        if key not in STRIPPED_EVENT_PROPERTIES or key == kept_key
    }
    if value is not None:
        attributes["value"] = value
    return attributes


def _event_value(event: Track | Screen) -> tuple[str | None, Any]:
    """The first truthy of revenue, total, value (§8.4 step 1), and the key it came from."""
    for path in EVENT_VALUE:
        found = value_at(event, path)
        if truthy(found):
            return path.segments[-1], found
    return None, MISSING


def _metric_name(event: Track | Screen) -> Any:
    name = lookup(event, METRIC_NAME)
    if name is not MISSING:
        return name
    # screen_top_level_name: SDKs put a screen's name there; only events the reference
    # rejects change. The name is sent untrimmed, like every plain metric name (Q8).
    if isinstance(event, Screen) and isinstance(event.name, str) and js_trim(event.name):
        return event.name
    raise InvalidEvent(MISSING_METRIC_MESSAGE, field="event")


def _profile(event: Track | Screen, config: DestinationConfig) -> JsonObject:
    """§8.6. Read from the untouched event, so ``properties.email`` reaches ``$email`` (Q4 fix)."""
    profile = map_event(EVENT_PROFILE, event)
    id_key = "$id"
    if config.enforce_email_as_primary:
        if not truthy(profile.get("$email")) and not truthy(profile.get("$phone_number")):
            raise InvalidEvent(NO_EMAIL_OR_PHONE, field="traits.email")
        id_key = "_id"
    user_id = lookup(event, USER_ID)
    if user_id is not MISSING:
        profile[id_key] = user_id  # part of the base profile: custom traits overwrite it in place
    profile.update(custom_traits(event))
    return flatten(profile) if config.flatten_properties else profile
