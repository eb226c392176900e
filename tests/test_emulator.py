"""Contract tests for the Klaviyo 2023-02-22 emulator: bodies, errors, limits, faults, controls.

Expected error objects are written out from klaviyo-api.md section 4, not computed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from klaviyo_destination.emulator import EmulatorStore, EndpointClass, RateLimit, create_emulator
from tests.emulator_helpers import (
    HEADERS,
    KEY,
    ULID,
    FakeClock,
    FakeSleep,
    Json,
    event_body,
    loopback_server,
    patch_body,
    profile_body,
    subscription_body,
    without_id,
)

pytestmark = pytest.mark.anyio

INVALID = {"status": 400, "code": "invalid", "title": "Invalid input.", "links": {}, "meta": {}}
PHONE_DETAIL = "Invalid phone number format (Example of a valid format: +12345678901)"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def store(clock: FakeClock, sleep: FakeSleep) -> EmulatorStore:
    return EmulatorStore(clock=clock, seed=7, sleep=sleep)


@pytest.fixture
def app(store: EmulatorStore) -> FastAPI:
    return create_emulator(store)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with connect(app, HEADERS) as client:
        yield client


def connect(app: FastAPI, headers: Mapping[str, str] | None = None) -> httpx.AsyncClient:
    """An in-process client; without ``headers`` it sends no auth or revision."""
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://emulator", headers=headers)


async def create(client: httpx.AsyncClient, **attributes: Any) -> str:
    response = await client.post("/api/profiles", json=profile_body(**attributes))
    assert response.status_code == 201, response.text
    profile_id: str = response.json()["data"]["id"]
    return profile_id


async def events(client: httpx.AsyncClient) -> list[Json]:
    data: list[Json] = (await client.get("/api/events")).json()["data"]
    return [e["attributes"] for e in data]


async def only_error(response: httpx.Response, status: int) -> Json:
    assert response.status_code == status, response.text
    errors: list[Json] = response.json()["errors"]
    assert len(errors) == 1, errors
    return without_id(errors[0])


# Profiles


async def test_create_profile_returns_the_profile_resource(client: httpx.AsyncClient) -> None:
    body = profile_body(
        email="ada@example.com",
        phone_number="+1 (555) 123-4567",
        external_id="u1",
        first_name="Ada",
        location={"city": "London", "zip": "N1"},
        properties={"plan": "pro"},
    )
    response = await client.post("/api/profiles/", json=body)

    assert response.status_code == 201
    assert response.headers["content-type"] == "application/vnd.api+json"
    data = response.json()["data"]
    assert re.match(ULID, data["id"])
    assert data["type"] == "profile"
    attributes = data["attributes"]
    assert attributes["email"] == "ada@example.com"
    assert attributes["phone_number"] == "+15551234567"
    assert (attributes["external_id"], attributes["first_name"]) == ("u1", "Ada")
    assert attributes["location"]["city"] == "London"
    assert attributes["location"]["region"] is None
    assert attributes["properties"] == {"plan": "pro"}
    assert attributes["created"] == "2023-11-14T22:13:20+00:00"
    assert data["links"] == {"self": f"http://emulator/api/profiles/{data['id']}/"}


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"email": "ada@example.com"}, {"email": "ADA@example.com"}),
        ({"phone_number": "+15551234567"}, {"phone_number": "+1 555-123-4567"}),
        ({"external_id": "u1"}, {"external_id": "u1", "email": "new@example.com"}),
    ],
    ids=["email-any-case", "phone-any-format", "external-id"],
)
async def test_existing_identifier_is_409_naming_the_profile(
    client: httpx.AsyncClient, first: Json, second: Json
) -> None:
    existing = await create(client, **first)

    error = await only_error(await client.post("/api/profiles", json=profile_body(**second)), 409)

    assert error == {
        "status": 409,
        "code": "duplicate_profile",
        "title": "Conflict.",
        "detail": "A profile already exists with one of these identifiers.",
        "source": {"pointer": "/data/attributes"},
        "links": {},
        "meta": {"duplicate_profile_id": existing},
    }


async def test_identifiers_of_two_profiles_conflict_on_create_and_on_patch(
    client: httpx.AsyncClient,
) -> None:
    by_email = await create(client, email="ada@example.com")
    by_phone = await create(client, phone_number="+15551234567")
    both = profile_body(email="ada@example.com", phone_number="+15551234567")

    created = await only_error(await client.post("/api/profiles", json=both), 409)
    patch = patch_body(by_email, phone_number="+15551234567")
    patched = await only_error(await client.patch(f"/api/profiles/{by_email}", json=patch), 409)

    assert created["meta"] == {"duplicate_profile_id": by_email}
    assert patched["meta"] == {"duplicate_profile_id": by_phone}
    assert patched["code"] == "duplicate_profile"


@pytest.mark.parametrize(
    ("attributes", "pointer", "detail"),
    [
        ({"email": "not-an-email"}, "/data/attributes/email", "Invalid email address"),
        ({"email": "a@b"}, "/data/attributes/email", "Invalid email address"),
        ({"phone_number": "5551234567"}, "/data/attributes/phone_number", PHONE_DETAIL),
        ({"phone_number": "+1234567"}, "/data/attributes/phone_number", PHONE_DETAIL),
        ({"phone_number": "+1234567890123456"}, "/data/attributes/phone_number", PHONE_DETAIL),
        ({"phone_number": "+44 20 7946 095x"}, "/data/attributes/phone_number", PHONE_DETAIL),
        (
            {"first_name": "Ada"},
            "/data/attributes",
            "A profile requires at least one of email, phone_number or external_id.",
        ),
        (
            {"email": "a@b.co", "anonymous_id": "x"},
            "/data/attributes",
            "'anonymous_id' is not a valid field for the resource 'profile'.",
        ),
        ({"external_id": 42}, "/data/attributes/external_id", "Input should be a valid string"),
    ],
    ids=["email", "email-no-tld", "phone-no-plus", "phone-7", "phone-16", "phone-letter",
         "no-identifier", "create-has-no-anonymous-id", "external-id-not-string"],
)  # fmt: skip
async def test_invalid_profile_is_400_pointing_at_the_member(
    client: httpx.AsyncClient, attributes: Json, pointer: str, detail: str
) -> None:
    response = await client.post("/api/profiles", json=profile_body(**attributes))

    error = await only_error(response, 400)
    assert error == INVALID | {"detail": detail, "source": {"pointer": pointer}}


@pytest.mark.parametrize(
    "phone", ["+44 20 7946 0958", "+1 (555) 123-4567", "+1.555.123.4567", "+12345678"]
)
async def test_phone_is_e164_once_punctuation_is_removed(
    client: httpx.AsyncClient, phone: str
) -> None:
    response = await client.post("/api/profiles", json=profile_body(phone_number=phone))

    assert response.status_code == 201
    assert response.json()["data"]["attributes"]["phone_number"] == re.sub(r"[^+\d]", "", phone)


@pytest.mark.parametrize(
    ("content", "content_type", "status", "pointer"),
    [
        (b"{not json", "application/json", 400, "/data"),
        (b"[1, 2]", "application/json", 400, "/data"),
        (b'{"data": {"type": "person", "attributes": {}}}', "application/json", 400, "/data/type"),
        (b'{"data": {"type": "profile"}}', "application/json", 400, "/data/attributes"),
        (b'{"data": {}}', "text/plain", 415, None),
    ],
    ids=["malformed", "not-an-object", "wrong-type", "no-attributes", "not-json-media-type"],
)
async def test_unusable_body_is_rejected(
    client: httpx.AsyncClient, content: bytes, content_type: str, status: int, pointer: str | None
) -> None:
    headers = {"content-type": content_type}
    response = await client.post("/api/profiles", content=content, headers=headers)

    error = await only_error(response, status)
    assert error["source"] == ({"pointer": pointer} if pointer else {})


async def test_patch_merges_attributes_and_null_clears(client: httpx.AsyncClient) -> None:
    profile_id = await create(
        client, email="a@b.co", first_name="Ada", location={"city": "London"}, properties={"a": 1}
    )
    patch = patch_body(
        profile_id,
        first_name=None,
        title="Countess",
        location={"zip": "N1"},
        properties={"b": 2},
        anonymous_id="anon-1",
    )

    response = await client.patch(f"/api/profiles/{profile_id}", json=patch)

    assert response.status_code == 200
    attributes = response.json()["data"]["attributes"]
    assert (attributes["first_name"], attributes["title"]) == (None, "Countess")
    assert (attributes["location"]["city"], attributes["location"]["zip"]) == ("London", "N1")
    assert attributes["properties"] == {"a": 1, "b": 2}
    assert attributes["anonymous_id"] == "anon-1"
    assert attributes["email"] == "a@b.co"


async def test_patch_unknown_profile_is_404(client: httpx.AsyncClient) -> None:
    unknown = "01GW3PHVY0MTCDGS0A1612HARX"
    response = await client.patch(f"/api/profiles/{unknown}/", json=patch_body(unknown, title="x"))

    assert await only_error(response, 404) == {
        "status": 404,
        "code": "not_found",
        "title": "Not found.",
        "detail": f"A profile with id {unknown} does not exist.",
        "source": {"pointer": "/data/"},
        "links": {},
        "meta": {},
    }


async def test_patch_body_id_must_match_the_path(client: httpx.AsyncClient) -> None:
    profile_id = await create(client, email="a@b.co")
    patch = patch_body("01GW3PHVY0MTCDGS0A1612HARX", title="x")

    error = await only_error(await client.patch(f"/api/profiles/{profile_id}", json=patch), 400)

    assert error["source"] == {"pointer": "/data/id"}


async def test_get_profiles_by_filter_and_by_id(client: httpx.AsyncClient) -> None:
    ada = await create(client, email="ada@example.com", external_id="u1")
    bob = await create(client, phone_number="+15551234567")

    async def ids(filter_: str) -> list[str]:
        response = await client.get("/api/profiles/", params={"filter": filter_})
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["data"]]

    assert await ids('equals(email,"ADA@example.com")') == [ada]
    assert await ids('equals(phone_number,"+15551234567")') == [bob]
    assert await ids('any(external_id,["u1","u2"])') == [ada]
    assert await ids('equals(email,"nobody@example.com")') == []
    bad = await client.get("/api/profiles", params={"filter": "equals(first_name,'Ada')"})
    assert (await only_error(bad, 400))["source"] == {"parameter": "filter"}
    fetched = await client.get(f"/api/profiles/{ada}")
    assert fetched.json()["data"]["attributes"]["email"] == "ada@example.com"


# Events


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


# Subscriptions


async def test_subscription_records_membership_and_consent(client: httpx.AsyncClient) -> None:
    marketing = {"email": ["MARKETING"], "sms": ["MARKETING"]}
    body = subscription_body(
        "L1",
        {"email": "ada@example.com", "phone_number": "+15551234567", "channels": marketing},
        {"email": "bob@example.com", "channels": {"sms": ["MARKETING"]}},
        {"phone_number": "+15557654321"},
    )
    body["data"]["attributes"]["custom_source"] = "Checkout"

    response = await client.post("/api/profile-subscription-bulk-create-jobs", json=body)

    assert (response.status_code, response.content) == (202, b"")
    members = (await client.get("/__emulator/state")).json()["lists"]["L1"]
    assert [(m["email"], m["phone_number"], m["channels"]) for m in members] == [
        ("ada@example.com", "+15551234567", ["email", "sms"]),
        ("bob@example.com", None, []),  # sms asked for, but there is no phone to consent
        (None, "+15557654321", ["sms"]),  # no channels: every channel it has an identifier for
    ]
    listed = (await client.get("/api/lists/L1/profiles/")).json()["data"]
    consent = listed[0]["attributes"]["subscriptions"]
    assert consent["email"]["marketing"]["consent"] == "SUBSCRIBED"
    assert consent["email"]["marketing"]["custom_method_detail"] == "Checkout"
    assert consent["sms"]["marketing"]["consent"] == "SUBSCRIBED"
    assert listed[1]["attributes"]["subscriptions"] == {"email": None, "sms": None}


async def test_subscription_reuses_the_existing_profile(client: httpx.AsyncClient) -> None:
    existing = await create(client, email="ada@example.com")

    await client.post(
        "/api/profile-subscription-bulk-create-jobs/",
        json=subscription_body("L1", {"email": "ADA@example.com", "phone_number": "+15551234567"}),
    )

    listed = (await client.get("/api/lists/L1/profiles")).json()["data"]
    assert [p["id"] for p in listed] == [existing]
    assert listed[0]["attributes"]["phone_number"] == "+15551234567"


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        (subscription_body("L1", *[{"email": f"u{i}@b.co"} for i in range(101)]),
         "/data/attributes/subscriptions"),
        (subscription_body(None, {"email": "a@b.co"}), "/data/attributes/list_id"),
        ({"data": {"type": "profile-subscription-bulk-create-job",
                   "attributes": {"list_id": None, "subscriptions": []}}},
         "/data/attributes/list_id"),
        (subscription_body("L1", {"phone_number": "555"}),
         "/data/attributes/subscriptions/0/phone_number"),
        (subscription_body("L1", {"channels": {"email": ["MARKETING"]}}),
         "/data/attributes/subscriptions/0"),
        (subscription_body("L1", {"email": "a@b.co", "channels": {"email": ["TRANSACTIONAL"]}}),
         "/data/attributes/subscriptions/0/channels/email/0"),
    ],
    ids=["101-subscriptions", "no-list-id", "null-list-id", "bad-phone", "no-identifier",
         "unknown-message-type"],
)  # fmt: skip
async def test_invalid_subscription_job_is_400(
    client: httpx.AsyncClient, body: Json, pointer: str
) -> None:
    response = await client.post("/api/profile-subscription-bulk-create-jobs", json=body)

    error = await only_error(response, 400)
    assert error["source"] == {"pointer": pointer}
    assert (await client.get("/__emulator/state")).json()["lists"] == {}


async def test_exactly_100_subscriptions_are_accepted(client: httpx.AsyncClient) -> None:
    body = subscription_body("L1", *[{"email": f"u{i}@b.co"} for i in range(100)])

    response = await client.post("/api/profile-subscription-bulk-create-jobs", json=body)

    assert response.status_code == 202
    assert len((await client.get("/api/lists/L1/profiles")).json()["data"]) == 100


# Auth and revision


@pytest.mark.parametrize(
    "authorization",
    [None, f"Bearer {KEY}", "Klaviyo-API-Key", "Klaviyo-API-Key ", KEY],
    ids=["missing", "bearer", "scheme-only", "empty-key", "no-scheme"],
)
@pytest.mark.parametrize("path", ["/api/profiles", "/api/events", "/api/lists/L1/profiles"])
async def test_missing_or_malformed_key_is_401(
    app: FastAPI, authorization: str | None, path: str
) -> None:
    headers = dict(HEADERS)
    del headers["Authorization"]
    if authorization is not None:
        headers["Authorization"] = authorization
    async with connect(app) as bare:
        response = await bare.get(path, headers=headers)

    assert await only_error(response, 401) == {
        "status": 401,
        "code": "not_authenticated",
        "title": "Authentication credentials were not provided.",
        "detail": "Missing or invalid private key.",
        "source": {"pointer": "/data/"},
        "links": {},
        "meta": {},
    }


async def test_only_configured_keys_are_accepted(clock: FakeClock) -> None:
    async with connect(create_emulator(EmulatorStore(clock=clock, api_keys={KEY}))) as client:
        good = await client.get("/api/profiles", headers=HEADERS)
        bad = await client.get(
            "/api/profiles", headers=HEADERS | {"Authorization": "Klaviyo-API-Key pk_other"}
        )

    assert (good.status_code, bad.status_code) == (200, 401)


@pytest.mark.parametrize(
    ("revision", "detail"),
    [
        (None, "Missing required header 'revision'."),
        ("2024-10-15", "Revision '2024-10-15' is not supported: this API serves revision "
                       "2023-02-22."),
        ("latest", "Invalid revision 'latest': expected a date like 2023-02-22."),
    ],
    ids=["missing", "other-revision", "malformed"],
)  # fmt: skip
async def test_revision_header_is_required_and_must_be_2023_02_22(
    app: FastAPI, client: httpx.AsyncClient, revision: str | None, detail: str
) -> None:
    headers = {k: v for k, v in HEADERS.items() if k != "revision"}
    if revision is not None:
        headers["revision"] = revision
    async with connect(app) as bare:
        response = await bare.post(
            "/api/profiles", json=profile_body(email="a@b.co"), headers=headers
        )

    error = await only_error(response, 400)
    assert error == INVALID | {"detail": detail, "source": {"parameter": "revision"}}
    assert (await client.get("/api/profiles")).json()["data"] == []


# Rate limits


def limited(clock: FakeClock, limit: RateLimit) -> FastAPI:
    store = EmulatorStore(clock=clock)
    return create_emulator(store, rate_limits={EndpointClass.PROFILES: limit})


async def test_success_carries_steady_window_headers(clock: FakeClock) -> None:
    async with connect(limited(clock, RateLimit(burst=5, steady=50)), HEADERS) as client:
        first = await client.get("/api/profiles/01GW3PHVY0MTCDGS0A1612HARX")
        second = await client.post("/api/profiles", json=profile_body(email="a@b.co"))

    # 20.25 s into the minute: the steady window resets in 39.75 s, rounded up.
    assert first.status_code == 404  # a counted request that failed for another reason
    assert (first.headers["RateLimit-Limit"], first.headers["RateLimit-Remaining"]) == ("50", "49")
    assert second.headers["RateLimit-Remaining"] == "48"
    assert second.headers["RateLimit-Reset"] == "40"


async def test_burst_exhaustion_is_429_until_the_next_second(clock: FakeClock) -> None:
    async with connect(limited(clock, RateLimit(burst=2, steady=50)), HEADERS) as client:
        ok = [await client.get("/api/profiles/x") for _ in range(2)]
        refused = await client.get("/api/profiles/x")
        other_class = await client.post("/api/events", json=event_body({"$email": "a@b.co"}))
        clock.advance(0.75)
        again = await client.get("/api/profiles/x")

    assert [r.status_code for r in ok] == [404, 404]
    assert await only_error(refused, 429) == {
        "status": 429,
        "code": "throttled",
        "title": "Request was throttled.",
        "detail": "Request was throttled. Expected available in 0 seconds.",
        "source": {"pointer": "/data/"},
        "links": {
            "type": "https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling"
            "#rate-limits"
        },
        "meta": {},
    }
    assert refused.headers["Retry-After"] == "1"
    assert "RateLimit-Limit" not in refused.headers
    assert other_class.status_code == 202
    assert (again.status_code, again.headers["RateLimit-Remaining"]) == (404, "47")


async def test_steady_exhaustion_waits_for_the_minute(clock: FakeClock) -> None:
    async with connect(limited(clock, RateLimit(burst=10, steady=2)), HEADERS) as client:
        for _ in range(2):
            await client.get("/api/profiles/x")
        refused = await client.get("/api/profiles/x")

    assert refused.headers["Retry-After"] == "40"
    detail = (await only_error(refused, 429))["detail"]
    assert detail == "Request was throttled. Expected available in 39 seconds."


async def test_retry_after_can_be_omitted_like_in_2023(clock: FakeClock) -> None:
    async with connect(limited(clock, RateLimit(burst=1, steady=50)), HEADERS) as client:
        switched = await client.post("/__emulator/rate-limits", json={"send_retry_after": False})
        await client.get("/api/profiles/x")
        refused = await client.get("/api/profiles/x")

    assert switched.json()["send_retry_after"] is False
    assert refused.status_code == 429
    assert "Retry-After" not in refused.headers


async def test_refused_requests_use_no_quota(clock: FakeClock) -> None:
    app = limited(clock, RateLimit(burst=1, steady=50))
    async with connect(app) as bare, connect(app, HEADERS) as client:
        assert (await bare.get("/api/profiles/x")).status_code == 401
        allowed = await client.get("/api/profiles/x")

    assert allowed.status_code == 404


async def test_rate_limits_can_be_disabled(clock: FakeClock) -> None:
    store = EmulatorStore(clock=clock, rate_limits={EndpointClass.PROFILES: RateLimit(1, 1)})
    async with connect(create_emulator(store, rate_limits=False), HEADERS) as client:
        responses = [await client.get("/api/profiles/x") for _ in range(3)]

    assert [r.status_code for r in responses] == [404, 404, 404]
    assert "RateLimit-Limit" not in responses[0].headers


# Faults


async def test_status_fault_answers_the_next_n_requests(client: httpx.AsyncClient) -> None:
    fault = {"status": 503, "count": 2, "retry_after": 2}
    assert (await client.post("/__emulator/faults", json=fault)).status_code == 201

    faulted = [await client.post("/api/profiles", json=profile_body(email="a@b.co")) for _ in "ab"]
    passed = await client.post("/api/profiles", json=profile_body(email="a@b.co"))

    for response in faulted:
        assert response.headers["Retry-After"] == "2"
        assert (await only_error(response, 503))["code"] == "service_unavailable"
    assert passed.status_code == 201
    recorded = (await client.get("/__emulator/requests")).json()["requests"]
    assert [(r["status"], r["fault"]) for r in recorded] == [
        (503, "status:503"),
        (503, "status:503"),
        (201, None),
    ]


async def test_proxy_html_403_and_retired_revision_410(client: httpx.AsyncClient) -> None:
    html = "<html><body>Attention Required! | Cloudflare</body></html>"
    await client.post(
        "/__emulator/faults",
        json={"status": 403, "body": html, "content_type": "text/html; charset=UTF-8"},
    )
    await client.post("/__emulator/faults", json={"status": 410})

    blocked = await client.get("/api/profiles")
    gone = await client.get("/api/profiles")

    assert (blocked.status_code, blocked.text) == (403, html)
    assert blocked.headers["content-type"] == "text/html; charset=UTF-8"
    assert (await only_error(gone, 410))["code"] == "gone"


async def test_fault_with_path_prefix_skips_other_paths(client: httpx.AsyncClient) -> None:
    await client.post("/__emulator/faults", json={"status": 500, "path": "/api/events"})

    profile = await client.post("/api/profiles", json=profile_body(email="a@b.co"))
    event = await client.post("/api/events", json=event_body({"$email": "a@b.co"}))
    control = await client.get("/__emulator/state")

    assert (profile.status_code, event.status_code, control.status_code) == (201, 500, 200)


async def test_latency_applies_until_cleared(client: httpx.AsyncClient, sleep: FakeSleep) -> None:
    await client.post("/__emulator/faults", json={"latency_ms": 50})
    await client.get("/api/profiles")
    await client.get("/api/events")
    await client.delete("/__emulator/faults")
    await client.get("/api/profiles")

    assert sleep.calls == [0.05, 0.05]


@pytest.mark.parametrize(("rate", "expected"), [(0.0, {200}), (1.0, {500})])
async def test_error_rate_extremes(
    client: httpx.AsyncClient, rate: float, expected: set[int]
) -> None:
    await client.post("/__emulator/faults", json={"error_rate": rate, "status": 500, "seed": 1})

    statuses = {(await client.get("/api/events")).status_code for _ in range(20)}

    assert statuses == expected


async def test_error_rate_is_repeatable_with_a_seed(app: FastAPI, store: EmulatorStore) -> None:
    runs = []
    async with connect(app, HEADERS) as client:
        for _ in range(2):
            store.reset()
            await client.post(
                "/__emulator/faults", json={"error_rate": 0.5, "status": 500, "seed": 3}
            )
            runs.append([(await client.get("/api/events")).status_code for _ in range(30)])

    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 500}


async def test_drop_connection_in_process_is_a_transport_error(client: httpx.AsyncClient) -> None:
    await client.post("/__emulator/faults", json={"drop_connection": True, "count": 1})

    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/api/profiles", json=profile_body(email="a@b.co"))
    retried = await client.post("/api/profiles", json=profile_body(email="a@b.co"))

    assert retried.status_code == 201  # the dropped request was not applied
    recorded = (await client.get("/__emulator/requests")).json()["requests"]
    assert [(r["status"], r["fault"]) for r in recorded] == [(None, "drop_connection"), (201, None)]


async def test_drop_after_processing_applies_the_request(client: httpx.AsyncClient) -> None:
    await client.post(
        "/__emulator/faults", json={"drop_connection": True, "after_processing": True}
    )

    with pytest.raises(httpx.TransportError):
        await client.post("/api/profiles", json=profile_body(email="a@b.co"))
    retried = await client.post("/api/profiles", json=profile_body(email="a@b.co"))

    assert retried.status_code == 409


@pytest.mark.parametrize(
    "spec",
    [{}, {"status": 503, "drop_connection": True}, {"error_rate": 0.5}, {"status": 99},
     {"status": 500, "surprise": 1}],
    ids=["empty", "status-and-drop", "rate-without-status", "status-99", "unknown-member"],
)  # fmt: skip
async def test_unusable_fault_spec_is_400(client: httpx.AsyncClient, spec: Json) -> None:
    response = await client.post("/__emulator/faults", json=spec)

    assert (await only_error(response, 400))["code"] == "invalid"
    assert (await client.get("/__emulator/faults")).json()["queued"] == []


# Recording, state, reset


async def test_requests_are_recorded_with_the_key_redacted(client: httpx.AsyncClient) -> None:
    body = profile_body(email="a@b.co")
    await client.post("/api/profiles", json=body, params={"x": "1"})

    response = await client.get("/__emulator/requests", params={"path": "/api/profiles"})

    assert KEY not in response.text
    [recorded] = response.json()["requests"]
    assert (recorded["method"], recorded["path"], recorded["query"]) == (
        "POST",
        "/api/profiles",
        "x=1",
    )
    assert recorded["headers"]["authorization"] == "Klaviyo-API-Key ***"
    assert recorded["headers"]["revision"] == "2023-02-22"
    assert (recorded["body"], recorded["status"]) == (body, 201)


async def test_state_shows_profiles_events_and_lists(client: httpx.AsyncClient) -> None:
    await client.post("/api/events", json=event_body({"$email": "a@b.co"}))
    await client.post(
        "/api/profile-subscription-bulk-create-jobs",
        json=subscription_body("L1", {"email": "a@b.co"}),
    )

    state = (await client.get("/__emulator/state")).json()

    [profile] = state["profiles"]
    assert profile["attributes"]["email"] == "a@b.co"
    assert [e["attributes"]["profile_id"] for e in state["events"]] == [profile["id"]]
    assert [m["profile_id"] for m in state["lists"]["L1"]] == [profile["id"]]
    assert state["rate_limits"]["limits"]["events"] == {"burst": 350, "steady": 3500}


async def test_reset_forgets_everything(client: httpx.AsyncClient) -> None:
    await create(client, email="a@b.co")
    await client.post("/api/events", json=event_body({"$email": "a@b.co"}))
    await client.post(
        "/api/profile-subscription-bulk-create-jobs",
        json=subscription_body("L1", {"email": "a@b.co"}),
    )
    await client.post("/__emulator/faults", json={"status": 500, "count": 5, "path": "/api/lists"})

    assert (await client.post("/__emulator/reset")).status_code == 204

    state = (await client.get("/__emulator/state")).json()
    assert (state["profiles"], state["events"], state["lists"]) == ([], [], {})
    assert state["faults"] == {"latency_ms": 0, "queued": [], "random": None}
    assert (await client.get("/__emulator/requests")).json()["requests"] == []
    assert (
        await client.post("/api/profiles", json=profile_body(email="a@b.co"))
    ).status_code == 201


async def test_seeded_ids_are_reproducible(clock: FakeClock) -> None:
    ids = []
    for _ in range(2):
        async with connect(create_emulator(EmulatorStore(clock=clock, seed=1)), HEADERS) as client:
            ids.append([await create(client, external_id=str(i)) for i in range(3)])

    assert ids[0] == ids[1]
    assert len(set(ids[0])) == 3
    assert all(i.startswith("01HF7YAT7T") for i in ids[0])  # 1_700_000_000_250 ms in base32


async def test_unknown_api_path_is_a_klaviyo_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/profile-subscription-bulk-delete-jobs", json={})

    assert (await only_error(response, 404))["code"] == "not_found"


# Real sockets


def test_over_a_real_socket_including_a_dropped_connection() -> None:
    with (
        loopback_server(create_emulator()) as base_url,
        httpx.Client(base_url=base_url, headers=HEADERS) as client,
    ):
        created = client.post("/api/profiles", json=profile_body(email="a@b.co"))
        client.post("/__emulator/faults", json={"drop_connection": True})
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.post("/api/profiles", json=profile_body(email="b@b.co"))
        after = client.get("/api/profiles", params={"filter": 'equals(email,"b@b.co")'})

    assert created.status_code == 201
    assert created.headers["content-type"] == "application/vnd.api+json"
    assert (after.status_code, after.json()["data"]) == (200, [])
