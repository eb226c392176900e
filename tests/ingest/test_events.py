"""The event models (``ingest.events``) through ``ingest.parse``: the §2 step 5 refusals the
golden cases (tests/cases/errors.json) leave out, what is accepted as it came, and the event as
received beside its typed fields."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from klaviyo_destination.errors import DestinationError
from klaviyo_destination.ingest import (
    EVENT,
    Group,
    Identify,
    Identity,
    RudderEvent,
    Screen,
    Track,
    parse,
)
from klaviyo_destination.ingest.config import parse_config
from klaviyo_destination.js import JsonObject

CONFIG = parse_config({"privateApiKey": "pk"})
SCALAR = "must be a string or a number, not an object or array"
OBJECT = "must be a JSON object"
TRAITS = "context.traits must be a JSON object"
EXTERNAL_ID = "context.externalId must be a JSON array"
CONTAINERS: tuple[Any, ...] = ({}, [], [1], {"a": 1})
NOT_OBJECTS: tuple[Any, ...] = ("x", 0, 1.5, True, False, [], [{}])


def refusal(event: JsonObject, config: Any = CONFIG) -> tuple[str, str | None]:
    _, parsed = parse(event, config)
    assert isinstance(parsed, DestinationError), parsed
    return parsed.message, parsed.field


def parsed(event: JsonObject) -> Any:
    _, result = parse(event, CONFIG)
    assert not isinstance(result, DestinationError), result.message
    return result


@pytest.mark.parametrize(
    ("event", "field", "reason"),
    [
        # every scalar field refuses an object and an array, on every event type that reads it
        *[
            ({"type": kind, name: bad, "groupId": "L"}, name, SCALAR)
            for kind in ("identify", "track", "screen", "group")
            for name in ("userId", "anonymousId", "messageId")
            for bad in CONTAINERS
        ],
        ({"type": "group", "groupId": {}}, "groupId", SCALAR),
        # every object field refuses a string, a number, a boolean and an array
        *[
            ({"type": kind, name: bad}, name, OBJECT)
            for kind in ("identify", "track", "screen", "group")
            for name in ("traits", "context", "properties", "integrations")
            for bad in NOT_OBJECTS
        ],
        ({"type": "track", "context": {"traits": []}}, "context", TRAITS),
        ({"type": "track", "context": {"traits": 0}}, "context", TRAITS),
        ({"type": "screen", "context": {"externalId": "x"}}, "context", EXTERNAL_ID),
        ({"type": "group", "context": {"externalId": {}}}, "context", EXTERNAL_ID),
        # context.traits is checked before context.externalId
        ({"type": "identify", "context": {"externalId": {}, "traits": "t"}}, "context", TRAITS),
        # the first wrong field in the declared order is named, whatever the order in the JSON
        ({"type": "track", "integrations": 1, "properties": 1, "context": 1}, "context", OBJECT),
        ({"type": "identify", "traits": 1, "messageId": {}}, "messageId", SCALAR),
        ({"type": "track", "anonymousId": [], "userId": []}, "userId", SCALAR),
        ({"type": "track", "integrations": [], "properties": []}, "properties", OBJECT),
        ({"type": "group", "groupId": [], "integrations": []}, "integrations", OBJECT),
        # the type's case does not change the checks
        ({"type": "TRACK", "userId": {}}, "userId", SCALAR),
    ],
)  # fmt: skip
def test_a_wrong_shape_is_refused_with_the_first_wrong_field(
    event: JsonObject, field: str, reason: str
) -> None:
    assert refusal(event) == (f"Invalid event field {field}: {reason}", field)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        # §2's earlier steps come first, however wrong the fields are
        ({"type": "page", "userId": {}}, ("Event type page is not supported", "type")),
        ({"type": ["track"], "traits": 1}, ("Event type ['track'] is not supported", "type")),
        ({"type": {"a": 1}}, ("Event type {'a': 1} is not supported", "type")),
        ({"type": True}, ("Event type true is not supported", "type")),
        ({"type": 0, "userId": {}}, ("Event type is required", "type")),
        ({"type": False}, ("Event type is required", "type")),
        ({"type": None, "traits": []}, ("Event type is required", "type")),
    ],
)
def test_the_type_is_checked_before_the_fields(
    event: JsonObject, expected: tuple[str, str]
) -> None:
    assert refusal(event) == expected


def test_the_key_is_checked_before_the_type_is_dispatched_and_the_fields() -> None:
    config = parse_config({})
    expected = ("Private API Key is a required field for Track events", "privateApiKey")
    assert refusal({"type": "Track", "userId": {}}, config) == expected


@pytest.mark.parametrize(
    "value", ["u1", "", 0, -1, 2**70, 1.5, 2.0, 1e300, True, False, None], ids=repr
)
def test_scalars_are_kept_as_they_came(value: Any) -> None:
    event = parsed(
        {
            "type": "group",
            "userId": value,
            "anonymousId": value,
            "messageId": value,
            "groupId": value,
        }
    )
    for kept in (event.user_id, event.anonymous_id, event.message_id, event.group_id):
        assert kept == value
        assert type(kept) is type(value)  # 2.0 stays a float, True a boolean, 0 an int
    assert event.roots["userId"] is value


@pytest.mark.parametrize("name", ["traits", "context", "properties", "integrations"])
def test_objects_are_the_ones_received_not_copies(name: str) -> None:
    value: JsonObject = {"traits": {"nested": [1, {"x": None}]}, "a.b": 1}
    event = parsed({"type": "track", name: value})
    assert getattr(event, name) is value


@pytest.mark.parametrize(
    "event",
    [
        {"type": "track", "traits": None, "context": None, "properties": None},
        {"type": "track", "context": {"traits": None, "externalId": None}},
        {"type": "identify", "context": {"traits": {}, "externalId": []}},
        {"type": "screen", "event": {}, "name": [], "timestamp": {"t": 1}},
        {"type": "group", "groupId": None},
        {"type": "track", "user_id": {}, "message_id": [], "received": 5, "roots": "x"},
    ],
    ids=["nulls", "context-nulls", "context-empty", "unread-any", "group-null", "not-aliases"],
)
def test_what_the_mapping_does_not_read_as_a_shape_is_accepted(event: JsonObject) -> None:
    assert parsed(event).received is event


@pytest.mark.parametrize(
    ("kind", "model"),
    [("identify", Identify), ("TRACK", Track), ("Screen", Screen), ("gRoUp", Group)],
)
def test_the_type_picks_the_model_in_any_case(kind: str, model: type[RudderEvent]) -> None:
    raw: JsonObject = {"type": kind, "userId": "u1", "extra": {"kept": True}}
    event = parsed(raw)
    assert type(event) is model
    assert event.type == kind.lower()
    assert event.received is raw  # type in its original case, unknown fields included
    assert event.received["type"] == kind


def test_roots_are_the_lookup_roots() -> None:
    context = {"traits": {"email": "a@b.co"}, "ip": "1"}
    raw = {"type": "screen", "userId": "u", "traits": {"t": 1}, "context": context, "event": "E"}
    event = parsed(raw)
    assert event.roots == {
        "userId": "u",
        "anonymousId": None,
        "traits": {"t": 1},
        "context": context,
        "properties": None,
        "event": "E",
        "context.traits": {"email": "a@b.co"},
    }
    assert list(event.roots)[-1] == "context.traits"
    # a dotted key in context: context.traits is no root of its own
    dotted = parsed({"type": "identify", "context": {"traits.email": "x", "traits": {}}})
    assert "context.traits" not in dotted.roots
    assert dotted.roots["event"] is None  # identify has no event field


def test_an_event_is_frozen_and_a_changed_copy_recomputes_its_roots() -> None:
    raw = {"type": "identify", "userId": "u1", "traits": {"email": "a@b.co"}}
    event = parsed(raw)
    with pytest.raises(ValidationError, match="frozen"):
        event.user_id = "u2"
    changed = event.copy_with(user_id="u2", traits={})
    assert (changed.user_id, changed.roots["userId"], changed.roots["traits"]) == ("u2", "u2", {})
    assert changed.received is raw
    assert (event.user_id, event.roots["userId"]) == ("u1", "u1")


def test_the_identity_is_what_the_caller_sent_refused_or_not() -> None:
    assert parse({"type": "TRACK", "messageId": 7, "userId": 0, "anonymousId": "a"}, CONFIG)[
        0
    ] == Identity(7, "TRACK", "a")
    refused = {"type": 5, "messageId": {"id": 1}, "userId": ["u"]}
    assert parse(refused, CONFIG)[0] == Identity({"id": 1}, 5, "['u']")
    assert parse("not an object", CONFIG)[0] == Identity(None, None, "")


def test_the_union_validates_on_its_own_too() -> None:
    """The adapter alone (no config): the same models and refusal order."""
    assert type(EVENT.validate_python({"type": "Group", "groupId": 1})) is Group
    with pytest.raises(ValidationError) as caught:
        EVENT.validate_python({"type": "alias"})
    assert caught.value.errors()[0]["type"] == "union_tag_invalid"
