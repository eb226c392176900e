"""Emulator profiles: create, duplicate 409s, validation 400s, PATCH merge, GET by filter.

Expected error objects are written out from klaviyo-api.md section 4, not computed.
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.emulator.helpers import (
    INVALID,
    ULID,
    Json,
    create,
    only_error,
    patch_body,
    profile_body,
)

pytestmark = pytest.mark.anyio


PHONE_DETAIL = "Invalid phone number format (Example of a valid format: +12345678901)"


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
