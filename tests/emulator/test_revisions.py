"""The emulator at the revisions after 2023-02-22: profile-import upserts, events in the newer
shape, read-backs, each body checked against its revision's schema, limits per revision."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import httpx
import pytest
from fastapi import FastAPI

from klaviyo_destination.emulator import EmulatorStore, create_emulator
from klaviyo_destination.emulator.schema import load
from klaviyo_destination.klaviyo.facts import NEWEST_REVISION
from tests.emulator.helpers import (
    HEADERS,
    FakeClock,
    connect,
    import_body,
    newer_event_body,
    only_error,
    revision_headers,
)

pytestmark = pytest.mark.anyio

NEWER: Final = ["2024-10-15", "2026-04-15", NEWEST_REVISION]
IMPORT: Final = "/api/profile-import"
Json = dict[str, Any]


@pytest.fixture(params=NEWER)
def revision(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def newer(app: FastAPI, revision: str) -> AsyncIterator[httpx.AsyncClient]:
    async with connect(app, revision_headers(revision)) as client:
        yield client


async def upsert(client: httpx.AsyncClient, status: int, **body: Any) -> Json:
    response = await client.post(IMPORT, json=import_body(**body))
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/vnd.api+json"
    answer: Json = response.json()
    revision = client.headers["revision"]
    assert load(revision).violations("PostProfileResponse", answer) == []
    return answer


async def test_upsert_creates_then_updates_the_same_profile(newer: httpx.AsyncClient) -> None:
    created = await upsert(newer, 201, email="Ada@Example.com", first_name="Ada")
    updated = await upsert(newer, 200, email="ada@example.com", last_name="Lovelace")

    assert updated["data"]["id"] == created["data"]["id"]
    attributes = updated["data"]["attributes"]
    assert (attributes["first_name"], attributes["last_name"]) == ("Ada", "Lovelace")
    assert updated["data"]["links"]["self"].endswith(f"/api/profiles/{created['data']['id']}/")


@pytest.mark.parametrize(
    ("first", "again"),
    [
        ({"phone_number": "+1 (500) 555-0006"}, {"phone_number": "+15005550006"}),
        ({"external_id": "u1"}, {"external_id": "u1"}),
        ({"email": "a@b.co", "external_id": "u1"}, {"external_id": "u1", "email": None}),
    ],
    ids=["phone", "external-id", "null-clears"],
)
async def test_upsert_matches_each_identifier(
    newer: httpx.AsyncClient, first: Json, again: Json
) -> None:
    created = await upsert(newer, 201, **first)
    updated = await upsert(newer, 200, **again)

    assert updated["data"]["id"] == created["data"]["id"]
    assert updated["data"]["attributes"]["email"] == again.get("email", first.get("email"))


async def test_upsert_by_id_and_its_conflicts(newer: httpx.AsyncClient) -> None:
    ada = (await upsert(newer, 201, email="ada@b.co"))["data"]["id"]
    bob = (await upsert(newer, 201, phone_number="+15005550006"))["data"]["id"]

    renamed = await upsert(newer, 200, profile_id=ada, email="ada@c.co")
    stolen = await newer.post(IMPORT, json=import_body(ada, phone_number="+15005550006"))
    both = await newer.post(IMPORT, json=import_body(email="ada@c.co", phone_number="+15005550006"))
    unknown = await newer.post(IMPORT, json=import_body("01NOPE", email="x@y.co"))

    assert renamed["data"]["attributes"]["email"] == "ada@c.co"
    assert (await only_error(stolen, 409))["meta"] == {"duplicate_profile_id": bob}
    assert (await only_error(both, 409))["meta"] == {"duplicate_profile_id": ada}
    assert (await only_error(unknown, 404))["code"] == "not_found"


async def test_patch_properties_unset_append_unappend(newer: httpx.AsyncClient) -> None:
    properties = {"plan": "free", "tags": "a", "seen": ["x", "y"]}
    await upsert(newer, 201, email="a@b.co", properties=properties)
    meta = {"patch_properties": {"unset": "plan", "append": {"tags": ["b", "c"]}}}
    await upsert(newer, 200, email="a@b.co", meta=meta)
    meta = {"patch_properties": {"unset": ["nothing"], "unappend": {"tags": "b", "seen": "x"}}}
    answer = await upsert(newer, 200, email="a@b.co", meta=meta)

    assert answer["data"]["attributes"]["properties"] == {"tags": ["a", "c"], "seen": ["y"]}


@pytest.mark.parametrize(
    ("body", "pointer", "detail"),
    [
        (
            {"data": {"type": "profile", "attributes": {"email": 5}}},
            "/data/attributes/email",
            "'email' must be of type string.",
        ),
        (
            {"data": {"type": "profile", "attributes": {"nickname": "x"}}},
            "/data/attributes",
            "'nickname' is not a valid field for the resource 'profile'.",
        ),
        (
            {"data": {"attributes": {"email": "a@b.co"}}},
            "/data/type",
            "'type' is a required field for the resource 'unknown'.",
        ),
        (
            {"data": {"type": "person", "attributes": {"email": "a@b.co"}}},
            "/data/type",
            "'person' is not a valid choice for 'type' (profile).",
        ),
        (
            import_body(email="a@b.co", location={"latitude": True}),
            "/data/attributes/location/latitude",
            "'latitude' is not of an accepted type.",
        ),
        (import_body(email="not-an-email"), "/data/attributes/email", "Invalid email address"),
        (
            import_body(first_name="Ada"),
            "/data/attributes",
            "A profile requires at least one of email, phone_number or external_id.",
        ),
    ],
    ids=["type", "foreign", "missing", "enum", "one-of", "email", "no-identifier"],
)
async def test_a_body_its_revision_refuses_is_400_with_a_pointer(
    newer: httpx.AsyncClient, body: Json, pointer: str, detail: str
) -> None:
    error = await only_error(await newer.post(IMPORT, json=body), 400)

    assert (error["code"], error["title"]) == ("invalid", "Invalid input.")
    assert (error["source"], error["detail"]) == ({"pointer": pointer}, detail)
    assert (await newer.get("/api/profiles")).json()["data"] == []


async def test_anonymous_id_is_accepted_on_profile_import(newer: httpx.AsyncClient) -> None:
    await upsert(newer, 201, email="a@b.co", anonymous_id="anon-1")


async def test_profile_import_does_not_exist_at_2023_02_22(client: httpx.AsyncClient) -> None:
    error = await only_error(await client.post(IMPORT, json=import_body(email="a@b.co")), 404)

    assert error["detail"] == "No valid revisions found for method."


async def test_read_back_is_the_revisions_profile_shape(
    newer: httpx.AsyncClient, revision: str
) -> None:
    profile_id = (await upsert(newer, 201, email="a@b.co"))["data"]["id"]
    plain = (await newer.get(f"/api/profiles/{profile_id}")).json()
    extra = await newer.get(
        f"/api/profiles/{profile_id}/", params={"additional-fields[profile]": "subscriptions"}
    )
    found = await newer.get("/api/profiles", params={"filter": 'equals(email,"a@b.co")'})

    schemas = load(revision)
    assert schemas.violations("PostProfileResponse", plain) == []
    assert "subscriptions" not in plain["data"]["attributes"]
    marketing = extra.json()["data"]["attributes"]["subscriptions"]["email"]["marketing"]
    assert (marketing["consent"], marketing["can_receive_email_marketing"]) == (
        "NEVER_SUBSCRIBED",
        False,
    )
    assert [p["id"] for p in found.json()["data"]] == [profile_id]
    relationships = set(plain["data"]["relationships"])
    top_links = "links" in plain
    assert (relationships, top_links) == (
        ({"lists", "segments"}, False)
        if revision == "2024-10-15"
        else ({"lists", "segments", "push-tokens"}, True)
    )


async def test_create_and_update_profile_are_served_at_2023_02_22_only(
    newer: httpx.AsyncClient,
) -> None:
    created = await newer.post("/api/profiles", json=import_body(email="a@b.co"))

    assert (await only_error(created, 404))["source"] == {"parameter": "revision"}


async def test_events_in_the_newer_shape(newer: httpx.AsyncClient) -> None:
    profile_id = (await upsert(newer, 201, email="a@b.co"))["data"]["id"]
    body = newer_event_body(
        {"email": "a@b.co", "first_name": "Ada"},
        "Ordered",
        value=9.5,
        value_currency="EUR",
        unique_id="o-1",
        properties={"sku": "A"},
        time="2023-11-14T20:00:00Z",
    )
    answers = [(await newer.post("/api/events", json=body)).status_code for _ in range(2)]
    events = (await newer.get("/api/events")).json()["data"]
    profile = (await newer.get(f"/api/profiles/{profile_id}")).json()["data"]

    assert answers == [202, 202]
    [event] = [e["attributes"] for e in events]
    assert (event["profile_id"], event["metric_name"], event["unique_id"]) == (
        profile_id,
        "Ordered",
        "o-1",
    )
    assert (event["value"], event["event_properties"]) == (9.5, {"sku": "A"})
    assert profile["attributes"]["first_name"] == "Ada"
    assert profile["attributes"]["last_event_date"] == "2023-11-14T20:00:00+00:00"


@pytest.mark.parametrize(
    ("profile", "pointer"),
    [
        ({"phone_number": "12"}, "/data/attributes/profile/data/attributes/phone_number"),
        ({"first_name": "Ada"}, "/data/attributes/profile/data"),
    ],
    ids=["phone", "no-identifier"],
)
async def test_an_event_without_a_usable_profile_is_400(
    newer: httpx.AsyncClient, profile: Json, pointer: str
) -> None:
    response = await newer.post("/api/events", json=newer_event_body(profile))

    assert (await only_error(response, 400))["source"] == {"pointer": pointer}


async def test_an_events_profile_meta_moved_at_2026_10_15(app: FastAPI) -> None:
    """Klaviyo's SDK for 2026-10-15 puts it beside the attributes (derive_schemas)."""
    patch = {"patch_properties": {"append": {"tags": "a"}}}
    inside = newer_event_body({"email": "a@b.co", "meta": patch})
    beside = newer_event_body({"email": "a@b.co"})
    beside["data"]["attributes"]["profile"]["data"]["meta"] = patch
    statuses = {}
    for revision in ("2026-04-15", NEWEST_REVISION):
        async with connect(app, revision_headers(revision)) as client:
            statuses[revision] = [
                (await client.post("/api/events", json=body)).status_code
                for body in (inside, beside)
            ]

    assert statuses == {"2026-04-15": [202, 400], NEWEST_REVISION: [400, 202]}


@pytest.mark.parametrize(
    ("revision", "steady"), [("2024-10-15", "700"), ("2026-04-15", "750"), ("2026-10-15", "750")]
)
async def test_limits_follow_the_revisions_tiers(
    clock: FakeClock, revision: str, steady: str
) -> None:
    app = create_emulator(EmulatorStore(clock=clock))
    async with connect(app, revision_headers(revision)) as client:
        answers = [
            await client.post(IMPORT, json=import_body(email=f"{i}@b.co")) for i in range(76)
        ]
        event = await client.post("/api/events", json=newer_event_body({"email": "a@b.co"}))

    assert answers[0].headers["RateLimit-Limit"] == steady
    assert event.headers["RateLimit-Limit"] == "3500"
    throttled = answers[-1]
    assert throttled.headers["Retry-After"] == "1"
    assert "RateLimit-Limit" not in throttled.headers
    error = await only_error(throttled, 429)
    assert (error["code"], error["detail"]) == (
        "throttled",
        "Request was throttled. Expected available in 0 seconds.",
    )


@pytest.mark.parametrize("header", ["2025-07-15", "2026-01-15", "2026-10-15.pre"])
async def test_a_live_revision_it_does_not_model_is_served(app: FastAPI, header: str) -> None:
    async with connect(app, HEADERS | {"revision": header}) as client:
        response = await client.post(IMPORT, json=import_body(email="a@b.co"))

    assert response.status_code == 201, response.text
