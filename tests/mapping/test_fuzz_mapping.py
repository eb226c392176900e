"""Property-based fuzzing of everything that reads caller input before any I/O.

The property everywhere: whatever arrives, the code answers with data (planned requests, protocol
envelopes) or raises one of the project's own ``DestinationError`` classes; never another
exception, and never output that orjson cannot render.

Runs are short by default (a few seconds in ``make test``); ``make fuzz`` sets ``FUZZ_EXAMPLES``
for long runs.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from klaviyo_destination.errors import DestinationError
from klaviyo_destination.ingest import parse, parse_config
from klaviyo_destination.ingest.body import events_of, parse_json
from klaviyo_destination.js import JsonObject
from klaviyo_destination.klaviyo.facts import EVENTS_PATH, PROFILES_PATH, SUBSCRIPTIONS_PATH
from klaviyo_destination.mapping import merge_subscriptions
from klaviyo_destination.mapping.fields import EVENT_PROFILE, PROFILE_ATTRIBUTES
from klaviyo_destination.mapping.lookups import map_each_rule, map_event
from klaviyo_destination.pipeline import plan_events
from klaviyo_destination.planned import PlannedRequest
from klaviyo_destination.protocol import process, route
from tests.helpers.conformance import ScriptedLookup
from tests.helpers.planning import plan_or_raise

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or 0)
MAX_DEPTH = 64  # the service's default MAX_JSON_DEPTH: deeper bodies never reach the mapping


def fuzz(short: int) -> settings:
    """``short`` examples in the normal suite, ``FUZZ_EXAMPLES`` under ``make fuzz``."""
    return settings(
        max_examples=FUZZ_EXAMPLES or short,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --- JSON values, as orjson parses them ----------------------------------------------------------

# Odd but encodable characters: no surrogates (they cannot travel in UTF-8 JSON).
odd_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
MAPPED_KEYS = (
    "email", "phone", "firstName", "firstname", "first_name", "lastName", "last_name", "city",
    "region", "state", "country", "zip", "postalCode", "street", "image", "title", "organization",
    "timezone", "id", "userId", "anonymousId", "properties", "address", "subscribe", "listId",
    "consent", "smsConsent", "products", "items", "value", "revenue", "total", "name", "event",
    "product_id", "sku", "price", "quantity", "categories", "order_id", "url", "image_url",
    "traits", "externalId", "mappedToDestination", "identifierType", "endpoint",
)  # fmt: skip
ODD_KEYS = (
    "", ".", "..", "a.", ".a", "a.b", "a.b.c", "a.0", "a.0.b", "a.1.2", "0", "a.²", "a.٣",
    "a.99999999999", "a." + "9" * 5000, "a\\.b", "a/b.c", "__proto__", "constructor",
    "prototype", "a.__proto__.b", "\U0001d518\U0001d52b\U0001d526", "ключ", "\u202e",
    "\x00", "a.b.",
)  # fmt: skip
keys = st.sampled_from(MAPPED_KEYS) | st.sampled_from(ODD_KEYS) | odd_text
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | odd_text
    | st.sampled_from(["", "0", "false", "  12.5x", "Infinity", "-Infinity", "1e999", "NaN"])
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=25,
)


def nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


huge_strings = st.integers(min_value=10_000, max_value=200_000).map(lambda n: "x" * n)
deep_values = st.integers(min_value=1, max_value=MAX_DEPTH - 6).map(lambda d: nested(d, "deep"))
wild = json_values | huge_strings | deep_values

# --- realistic events ----------------------------------------------------------------------------

emails = st.sampled_from(["ada@example.com", "b@x.io", "", "not-an-email", "ÄÖ@例え.jp"])
phones = st.sampled_from(["+14155550100", "+447700900123", "12345", ""])
ids = odd_text | st.integers(min_value=-(2**63), max_value=2**63 - 1)

base_traits = st.fixed_dictionaries(
    {},
    optional={
        "email": emails,
        "phone": phones,
        "firstName": odd_text,
        "lastName": odd_text,
        "city": odd_text,
        "country": st.sampled_from(["GB", "US", "DE"]),
        "address": st.fixed_dictionaries({}, optional={"zip": odd_text, "street": odd_text}),
        "plan": odd_text,
        "a.b": odd_text,
        "properties": st.fixed_dictionaries(
            {},
            optional={
                "subscribe": st.booleans(),
                "listId": st.sampled_from(["XUepkK", "L1", "12", "007"]),
                "consent": st.sampled_from([["email"], ["sms"], ["email", "sms"], "email"]),
                "smsConsent": st.booleans(),
            },
        ),
    },
)
# Custom traits become profile properties; dotted keys are written as nested objects.
traits = st.builds(
    lambda known, custom: {**custom, **known},
    base_traits,
    st.dictionaries(st.sampled_from(ODD_KEYS) | keys, scalars, max_size=3),
)
product = st.fixed_dictionaries(
    {"product_id": ids, "sku": odd_text, "name": odd_text},
    optional={"price": st.floats(0, 1e6), "quantity": st.integers(0, 100), "url": odd_text},
)
properties = st.fixed_dictionaries(
    {},
    optional={
        "value": st.sampled_from(["14.00", 14, "", "abc", 0]),
        "revenue": st.floats(0, 1e6),
        "products": st.lists(product, max_size=3),
        "items": st.lists(product, max_size=3),
        "order_id": ids,
        "email": emails,
        "nested": json_values,
    },
)
context = st.fixed_dictionaries(
    {},
    optional={
        "traits": traits,
        "externalId": st.lists(
            st.fixed_dictionaries({"id": ids, "identifierType": st.sampled_from(["email", "a.b"])}),
            max_size=2,
        ),
        "mappedToDestination": st.booleans(),
        "ip": st.just("203.0.113.9"),
    },
)
common = {
    "userId": ids,
    "anonymousId": ids,
    "messageId": ids,
    "timestamp": st.just("2026-11-28T12:00:00Z"),
    "context": context,
}
identify = st.fixed_dictionaries(
    {"type": st.sampled_from(["identify", "IDENTIFY", "Identify"])},
    optional={**common, "traits": traits},
)
track = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["track", "Track"]),
        "event": st.sampled_from(
            ["Product Added", "product viewed ", "Checkout Started", "Signed Up", ""]
        ),
    },
    optional={**common, "properties": properties},
)
screen = st.fixed_dictionaries(
    {"type": st.just("screen")}, optional={**common, "name": odd_text, "properties": properties}
)
group = st.fixed_dictionaries(
    {"type": st.sampled_from(["group", "Group"]), "groupId": ids},
    optional={**common, "traits": traits},
)
valid_events = identify | track | screen | group

#: Every place the mapping reads, as a key path into the event.
READ_PATHS: tuple[tuple[str, ...], ...] = (
    ("type",), ("event",), ("name",), ("userId",), ("anonymousId",), ("messageId",),
    ("groupId",), ("timestamp",), ("traits",), ("properties",), ("context",),
    ("context", "traits"), ("context", "externalId"), ("context", "mappedToDestination"),
    ("traits", "email"), ("traits", "phone"), ("traits", "properties"),
    ("traits", "properties", "subscribe"), ("traits", "properties", "listId"),
    ("traits", "properties", "consent"), ("traits", "properties", "smsConsent"),
    ("traits", "address"), ("traits", "a.b"), ("traits", "id"), ("traits", "userId"),
    ("context", "traits", "email"), ("context", "traits", "properties"),
    ("properties", "value"), ("properties", "revenue"), ("properties", "products"),
    ("properties", "items"), ("properties", "email"), ("properties", "phone"),
    ("properties", "event"), ("properties", "name"), ("properties", "order_id"),
)  # fmt: skip
DELETE = object()


def mutate(event: JsonObject, path: tuple[str, ...], value: Any) -> JsonObject:
    """``event`` with ``value`` at ``path`` (creating objects on the way), or the key removed."""
    root: JsonObject = dict(event)
    node = root
    for key in path[:-1]:
        child = node.get(key)
        node[key] = dict(child) if isinstance(child, dict) else {}
        node = node[key]
    if value is DELETE:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return root


@st.composite
def mutated_events(draw: st.DrawFn) -> JsonObject:
    event: JsonObject = draw(valid_events)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(READ_PATHS))
        event = mutate(event, path, draw(st.just(DELETE) | wild))
    return event


any_events = valid_events | mutated_events() | st.dictionaries(keys, json_values)

configs = st.fixed_dictionaries(
    {},
    optional={
        "privateApiKey": st.sampled_from(["pk_fuzz", "", None]) | json_values,
        "apiVersion": st.sampled_from([None, "v1", "v2", "v9", 1]),
        "listId": st.sampled_from(["L1", "12", None]) | json_values,
        "consent": st.sampled_from(["email", ["email", "sms"], [], None]) | json_values,
        "smsConsent": json_values,
        "enforceEmailAsPrimary": st.booleans() | json_values,
        "flattenProperties": st.booleans() | json_values,
        "publicApiKey": json_values,
    },
)
good_configs = st.fixed_dictionaries(
    {"privateApiKey": st.just("pk_fuzz")},
    optional={
        "listId": st.sampled_from(["L1", "12"]),
        "consent": st.sampled_from(["email", ["email", "sms"]]),
        "enforceEmailAsPrimary": st.booleans(),
        "flattenProperties": st.booleans(),
    },
)


def check_planned(requests: Any) -> None:
    assert isinstance(requests, list)
    assert requests, "a successful transform plans at least one request"
    for request in requests:
        assert isinstance(request, PlannedRequest)
        assert request.method in ("POST", "PATCH")
        assert request.path in (PROFILES_PATH, EVENTS_PATH, SUBSCRIPTIONS_PATH)
        orjson.dumps(request.body)


def transform_or_reject(event: Any, config: Any) -> list[PlannedRequest] | None:
    try:
        return plan_or_raise(event, parse_config(config))
    except DestinationError as error:
        rejected = error
    orjson.dumps(rejected.to_dict())
    assert isinstance(rejected.status, int)
    return None


# --- the mapping ---------------------------------------------------------------------------------


@fuzz(200)
@given(valid_events, good_configs)
def test_valid_events_plan_or_reject_with_a_reason(event: JsonObject, config: JsonObject) -> None:
    planned = transform_or_reject(event, config)
    if planned is not None:
        check_planned(planned)


@fuzz(250)
@given(any_events, configs)
def test_mutated_events_and_configs_never_crash(event: JsonObject, config: JsonObject) -> None:
    planned = transform_or_reject(event, config)
    if planned is not None:
        check_planned(planned)


@fuzz(60)
@given(st.lists(valid_events, min_size=1, max_size=20), good_configs)
def test_subscription_merge_keeps_every_event(events: list[JsonObject], config: Any) -> None:
    jobs = []
    for index, event in enumerate(events):
        planned = transform_or_reject(event, config)
        if planned and planned[-1].path == SUBSCRIPTIONS_PATH:
            jobs.append((index, planned[-1]))
    merged = merge_subscriptions(jobs)
    assert sorted(k for _, members in merged for k in members) == [k for k, _ in jobs]
    for request, _ in merged:
        orjson.dumps(request.body)


# --- bodies --------------------------------------------------------------------------------------

json_bytes = st.builds(lambda value: orjson.dumps(value), json_values | any_events)


@st.composite
def damaged_bytes(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(json_bytes))
    for _ in range(draw(st.integers(0, 3))):
        position = draw(st.integers(0, len(raw)))
        raw[position:position] = draw(st.binary(min_size=1, max_size=3))
    return bytes(raw)


bodies = st.binary(max_size=200) | json_bytes | damaged_bytes()


@fuzz(200)
@given(bodies, st.integers(min_value=1, max_value=MAX_DEPTH), st.integers(1, 50))
def test_any_bytes_parse_or_get_a_400(raw: bytes, depth: int, max_events: int) -> None:
    try:
        events = events_of(parse_json(raw, max_depth=depth), max_events=max_events)
    except DestinationError as error:
        rejected = error
    else:
        assert 1 <= len(events.items) <= max_events
        return
    assert rejected.status in (400, 413)


@fuzz(100)
@given(bodies, good_configs)
def test_body_to_plans_never_crashes(raw: bytes, config: JsonObject) -> None:
    try:
        events = events_of(parse_json(raw, max_depth=MAX_DEPTH), max_events=1000)
    except DestinationError:
        return
    planned = plan_events(events.items, parse_config(config))
    assert len(planned) == len(events.items)
    for item in planned:
        assert (item.error is None) != (not item.requests)


# --- the rudder-server protocol ------------------------------------------------------------------

CREATED = {"data": {"id": "01PROFILE", "attributes": {"email": "a@b.co"}}}
answer_bodies = (
    st.sampled_from(
        [
            CREATED,
            {"errors": [{"meta": {"duplicate_profile_id": "01DUP"}}]},
            {"errors": [{"detail": "bad", "code": "invalid"}]},
            "",
            {"data": {"id": ""}},
        ]
    )
    | json_values
)
lookup_answers = st.lists(
    st.fixed_dictionaries({"status": st.sampled_from([200, 201, 202]), "body": st.just(CREATED)})
    | st.fixed_dictionaries(
        {"status": st.sampled_from([201, 400, 401, 409, 429, 500, 503]), "body": answer_bodies}
    ),
    min_size=1,
    max_size=4,
)
metadata = st.fixed_dictionaries(
    {}, optional={"userId": ids | st.none(), "destinationId": ids, "workspaceId": ids}
)
destinations = st.fixed_dictionaries(
    {"Config": configs | good_configs},
    optional={"ID": st.sampled_from(["d1", "d2"]), "hasDynamicConfig": st.booleans()},
)


def numbered(job: Any, index: int) -> JsonObject:
    return {**job, "metadata": {**job["metadata"], "jobId": index}}


# Jobs carry a unique jobId, so the test can find every one of them in the answer.
numbered_jobs = st.lists(
    st.fixed_dictionaries(
        {"message": any_events | json_values, "metadata": metadata, "destination": destinations}
    ),
    min_size=1,
    max_size=12,
).map(lambda jobs: [numbered(job, index) for index, job in enumerate(jobs)])


def job_ids(metadata_value: Any) -> list[Any]:
    values = metadata_value if isinstance(metadata_value, list) else [metadata_value]
    return [m.get("jobId") for m in values if isinstance(m, dict)]


@fuzz(60)
@given(numbered_jobs, lookup_answers, st.booleans())
def test_processor_answers_every_job(jobs: list[JsonObject], answers: Any, code: bool) -> None:
    items = asyncio.run(process(jobs, ScriptedLookup(answers), filter_code=code))
    orjson.dumps(items)
    seen = [job_id for item in items for job_id in job_ids(item["metadata"])]
    assert set(seen) == set(range(len(jobs)))
    for item in items:
        assert isinstance(item["statusCode"], int)
        assert ("output" in item) == (item["statusCode"] == 200)
        assert ("error" in item) == (item["statusCode"] != 200)


@fuzz(60)
@given(numbered_jobs, lookup_answers, st.booleans())
def test_router_answers_every_job_once(jobs: list[JsonObject], answers: Any, code: bool) -> None:
    outputs = asyncio.run(route(jobs, ScriptedLookup(answers), filter_code=code))
    orjson.dumps(outputs)
    seen = sorted(job_id for out in outputs for job_id in job_ids(out["metadata"]))
    assert seen == list(range(len(jobs)))
    for out in outputs:
        assert isinstance(out["statusCode"], int)
        # 299 (already applied) carries both the request and the reason.
        assert ("batchedRequest" in out) == (200 <= out["statusCode"] < 300)
        assert ("error" in out) == (out["statusCode"] != 200)


@fuzz(60)
@given(json_values, lookup_answers)
def test_protocols_take_any_json(body: Any, answers: Any) -> None:
    jobs = body if isinstance(body, list) else [body]
    items = asyncio.run(process(jobs, ScriptedLookup(answers)))
    assert len(items) >= len(jobs)
    orjson.dumps(items)
    outputs = asyncio.run(route(body, ScriptedLookup(answers)))
    assert outputs
    orjson.dumps(outputs)


@pytest.mark.parametrize("status", [200, 202])
def test_create_answered_2xx_without_id_is_not_success(status: int) -> None:
    job = {
        "message": {"type": "identify", "userId": "u1", "traits": {"email": "a@b.co"}},
        "metadata": {"jobId": 1},
        "destination": {"Config": {"privateApiKey": "pk_fuzz"}},
    }
    lookup = ScriptedLookup([{"status": status, "body": {"errors": []}}])
    [item] = asyncio.run(process([job], lookup))
    assert not 200 <= item["statusCode"] < 300 or "output" in item


# --- the indexed field tables --------------------------------------------------------------------

PROFILE_KEYS = (
    "email", "phone", "firstName", "first_name", "lastname", "city", "region", "state", "country",
    "zip", "postalcode", "postalCode", "street", "image", "title", "organization", "timezone",
    "consent", "id", "userId", "address", "address.city", "address.zip", "address.state", "a.b",
)  # fmt: skip
lookup_values = scalars | st.dictionaries(st.sampled_from(PROFILE_KEYS), scalars, max_size=4)
lookup_objects = st.dictionaries(st.sampled_from(PROFILE_KEYS) | keys, lookup_values, max_size=6)
lookup_events = st.fixed_dictionaries(
    {"type": st.sampled_from(["identify", "track"]), "event": st.just("E")},
    optional={
        "userId": scalars,
        "anonymousId": scalars,
        "traits": lookup_objects,
        "properties": lookup_objects,
        "context": st.fixed_dictionaries(
            {},
            optional={"traits": lookup_objects, "a.b": scalars, "traits.email": scalars},
        ),
    },
)


@fuzz(300)
@given(lookup_events | valid_events | mutated_events())
def test_indexed_tables_map_as_walking_every_path(raw: JsonObject) -> None:
    """``map_event`` walks only the paths whose first key an event has; it must give exactly
    what a lookup per rule gives (same keys, same values, same order)."""
    _, event = parse(raw, parse_config({"privateApiKey": "pk"}))
    if isinstance(event, DestinationError):
        return
    for table in (PROFILE_ATTRIBUTES, EVENT_PROFILE):
        indexed, walked = map_event(table, event), map_each_rule(table, event)
        assert orjson.dumps(indexed) == orjson.dumps(walked)
