"""Emulator events: 202 with implicit profile create/match, dedup, dropped and invalid events."""

from __future__ import annotations

import httpx
import pytest

from tests.emulator.helpers import FakeClock, Json, create, event_body, events, only_error

pytestmark = pytest.mark.anyio


async def test_event_is_202_empty_and_creates_the_profile(client: httpx.AsyncClient) -> None:
    profile = {
        "$email": "ada@example.com",
        "$phone_number": "+1 555 123 4567",
        "$id": "u1",
        "$first_name": "Ada",
        "$city": "London",
        "plan": "pro",
        "_id": "u1",
    }
    body = event_body(profile, properties={"total": 9.5}, value=9.5, time="2023-03-01T10:00:00Z")

    response = await client.post("/api/events", json=body)

    assert (response.status_code, response.content) == (202, b"")
    [stored] = await events(client)
    assert (stored["metric_name"], stored["event_properties"], stored["value"]) == (
        "Order Completed",
        {"total": 9.5},
        9.5,
    )
    assert stored["datetime"] == "2023-03-01T10:00:00+00:00"
    created = (await client.get(f"/api/profiles/{stored['profile_id']}")).json()["data"]
    attributes = created["attributes"]
    assert (attributes["email"], attributes["phone_number"], attributes["external_id"]) == (
        "ada@example.com",
        "+15551234567",
        "u1",
    )
    assert attributes["first_name"] == "Ada"
    assert attributes["location"]["city"] == "London"
    assert attributes["properties"] == {"plan": "pro", "_id": "u1"}


async def test_event_matches_an_existing_profile(client: httpx.AsyncClient) -> None:
    existing = await create(client, external_id="u1")

    await client.post("/api/events", json=event_body({"$id": "u1", "$email": "a@b.co"}))

    [stored] = await events(client)
    assert stored["profile_id"] == existing
    profile = (await client.get(f"/api/profiles/{existing}")).json()["data"]["attributes"]
    assert profile["email"] == "a@b.co"


async def test_events_deduplicate_on_profile_metric_and_unique_id(
    client: httpx.AsyncClient,
) -> None:
    who = {"$email": "a@b.co"}
    for metric, unique_id in [("Paid", "m1"), ("Paid", "m1"), ("Paid", "m2"), ("Refund", "m1")]:
        response = await client.post(
            "/api/events", json=event_body(who, metric, unique_id=unique_id)
        )
        assert response.status_code == 202

    stored = await events(client)
    assert [(e["metric_name"], e["unique_id"]) for e in stored] == [
        ("Paid", "m1"),
        ("Paid", "m2"),
        ("Refund", "m1"),
    ]


async def test_without_unique_id_events_collide_within_one_second(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    who = {"$email": "a@b.co"}
    for time in ["2023-03-01T10:00:00.100Z", "2023-03-01T10:00:00.900Z", "2023-03-01T10:00:01Z"]:
        await client.post("/api/events", json=event_body(who, time=time))
    await client.post("/api/events", json=event_body(who, "Viewed"))  # no time: receive time
    await client.post("/api/events", json=event_body(who, "Viewed"))
    clock.advance(1)
    await client.post("/api/events", json=event_body(who, "Viewed"))

    assert [(e["metric_name"], e["unique_id"]) for e in await events(client)] == [
        ("Order Completed", "2023-03-01T10:00:00+00:00"),
        ("Order Completed", "2023-03-01T10:00:01+00:00"),
        ("Viewed", "2023-11-14T22:13:20+00:00"),
        ("Viewed", "2023-11-14T22:13:21+00:00"),
    ]


async def test_phone_only_event_with_bad_phone_is_silently_dropped(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/events", json=event_body({"$phone_number": "5551234"}))

    assert response.status_code == 202
    assert await events(client) == []
    assert (await client.get("/__emulator/state")).json()["dropped_events"] == 1


@pytest.mark.parametrize(
    ("attributes", "pointer"),
    [
        ({"profile": {"plan": "pro"}}, "/data/attributes/profile"),
        ({"profile": {"$email": "nope"}}, "/data/attributes/profile/$email"),
        ({"metric": {}}, "/data/attributes/metric/name"),
        ({"metric": {"name": "x" * 128}}, "/data/attributes/metric/name"),
        ({"properties": None}, "/data/attributes/properties"),
        ({"properties": {f"p{i}": i for i in range(301)}}, "/data/attributes/properties"),
        ({"properties": {"deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}}},
         "/data/attributes/properties"),
        ({"time": "1999-12-31T23:59:59Z"}, "/data/attributes/time"),
        ({"time": "2025-01-01T00:00:00Z"}, "/data/attributes/time"),
        ({"time": 1677664800}, "/data/attributes/time"),
        ({"value": "9.99"}, "/data/attributes/value"),
    ],
    ids=["no-identifier", "bad-email", "no-metric-name", "metric-name-128", "no-properties",
         "301-properties", "11-levels", "before-2000", "over-a-year-ahead", "time-number",
         "value-string"],
)  # fmt: skip
async def test_invalid_event_is_400(
    client: httpx.AsyncClient, attributes: Json, pointer: str
) -> None:
    body = event_body({"$email": "a@b.co"})
    body["data"]["attributes"] |= attributes
    if attributes.get("properties", {}) is None:
        del body["data"]["attributes"]["properties"]

    error = await only_error(await client.post("/api/events", json=body), 400)

    assert error["source"] == {"pointer": pointer}
    assert await events(client) == []
