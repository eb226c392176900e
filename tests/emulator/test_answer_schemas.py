"""The emulator's answers validate against the answer schemas of Klaviyo's OpenAPI document.

Each answer is checked against the schema ``tests/schemas/operations.json`` names for its
operation and status (the exact status, else its ``4XX``/``5XX`` range), so the test also proves
which schema the document declares.

Two readings of the document apply to every answer:

* A null member counts as an absent one. The 2023-02-22 document never uses ``nullable``, yet the
  profile resource lists every attribute, and the emulator (like Klaviyo) answers an unset one
  with null; a null *required* member is still refused, as "required".
* The profile's ``relationships`` are checked apart (``relationships=True``), with a profile
  that belongs to a list as well as one that belongs to none.
"""

from __future__ import annotations

from typing import Any, Final

import httpx
import pytest
from fastapi import FastAPI

from klaviyo_destination.emulator import EmulatorStore, EndpointClass, RateLimit, create_emulator
from tests.emulator.helpers import (
    HEADERS,
    FakeClock,
    Json,
    connect,
    create,
    event_body,
    patch_body,
    profile_body,
    subscription_body,
)
from tests.schemas import answer_schema, validator

pytestmark = [pytest.mark.anyio, pytest.mark.contract]

CREATE: Final = "POST /api/profiles/"
UPDATE: Final = "PATCH /api/profiles/{id}/"
EVENT: Final = "POST /api/events/"
SUBSCRIBE: Final = "POST /api/profile-subscription-bulk-create-jobs/"
RELATIONSHIPS: Final = ("data", "relationships")

FULL_PROFILE: Final = {
    "email": "ada@example.com",
    "phone_number": "+15551234567",
    "external_id": "u1",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "organization": "Analytical Engines",
    "title": "Countess",
    "image": "https://example.com/ada.png",
    "location": {
        "address1": "12 St James's Square",
        "address2": "Flat 1",
        "city": "London",
        "country": "United Kingdom",
        "region": "Greater London",
        "zip": "SW1Y 4JH",
        "timezone": "Europe/London",
        "latitude": "51.5074",
        "longitude": -0.1278,
    },
    "properties": {"plan": "pro", "nested": {"a": [1, None]}},
}


def without_nulls(value: Any) -> Any:
    """``value`` with every null object member left out (array elements are kept)."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def problems(operation: str, response: httpx.Response, *, relationships: bool = False) -> list[str]:
    """What the declared schema refuses in the answer; ``relationships`` selects that part only."""
    schema = validator(answer_schema(operation, response.status_code))
    found = []
    for error in schema.iter_errors(without_nulls(response.json())):
        path = tuple(error.absolute_path)
        if (path[: len(RELATIONSHIPS)] == RELATIONSHIPS) is relationships:
            found.append(f"/{'/'.join(map(str, path))}: {error.message}")
    return found


def limited(clock: FakeClock) -> FastAPI:
    store = EmulatorStore(clock=clock)
    return create_emulator(store, rate_limits={EndpointClass.PROFILES: RateLimit(1, 50)})


# --- success bodies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "attributes",
    [{"email": "ada@example.com"}, {"phone_number": "+15551234567"}, FULL_PROFILE],
    ids=["email-only", "phone-only", "every-attribute"],
)
async def test_created_profile_is_a_post_profile_response(
    client: httpx.AsyncClient, attributes: Json
) -> None:
    response = await client.post("/api/profiles", json=profile_body(**attributes))

    assert response.status_code == 201
    assert answer_schema(CREATE, 201) == "PostProfileResponse"
    assert problems(CREATE, response) == []


async def test_patched_profile_is_a_patch_profile_response(client: httpx.AsyncClient) -> None:
    profile_id = await create(client, email="ada@example.com", first_name="Ada")
    patch = patch_body(profile_id, **FULL_PROFILE | {"first_name": None, "anonymous_id": "anon-1"})

    response = await client.patch(f"/api/profiles/{profile_id}/", json=patch)

    assert response.status_code == 200
    assert answer_schema(UPDATE, 200) == "PatchProfileResponse"
    assert problems(UPDATE, response) == []


async def test_profile_relationships_match_the_document(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/profiles", json=profile_body(email="ada@example.com"))

    assert problems(CREATE, response, relationships=True) == []


async def test_profile_relationships_name_its_lists(client: httpx.AsyncClient) -> None:
    created = await client.post("/api/profiles", json=profile_body(email="ada@example.com"))
    profile_id = created.json()["data"]["id"]
    await client.post(
        "/api/profile-subscription-bulk-create-jobs",
        json=subscription_body("L1", {"email": "ada@example.com"}),
    )
    response = await client.get(f"/api/profiles/{profile_id}", headers=HEADERS)

    relationships = response.json()["data"]["relationships"]
    assert relationships["lists"]["data"] == [{"type": "list", "id": "L1"}]
    assert relationships["segments"]["data"] == []
    assert problems(UPDATE, response, relationships=True) == []


@pytest.mark.parametrize(
    ("path", "body", "operation"),
    [
        ("/api/events", event_body({"$email": "a@b.co"}), EVENT),
        ("/api/profile-subscription-bulk-create-jobs", subscription_body("L1", {"email": "a@b.co"}),
         SUBSCRIBE),
    ],
    ids=["event", "subscription-job"],
)  # fmt: skip
async def test_accepted_jobs_have_no_body_as_declared(
    client: httpx.AsyncClient, path: str, body: Json, operation: str
) -> None:
    response = await client.post(path, json=body)

    assert response.status_code == 202
    with pytest.raises(LookupError, match="declares no body for 202"):
        answer_schema(operation, 202)
    assert response.content == b""


# --- error bodies ----------------------------------------------------------------------------


async def test_duplicate_profile_409_is_a_client_error(client: httpx.AsyncClient) -> None:
    await create(client, email="ada@example.com")

    response = await client.post("/api/profiles", json=profile_body(email="ADA@example.com"))

    assert response.status_code == 409
    assert answer_schema(CREATE, 409) == "ClientError"
    assert problems(CREATE, response) == []


async def test_duplicate_identifier_409_on_patch_is_a_client_error(
    client: httpx.AsyncClient,
) -> None:
    await create(client, phone_number="+15551234567")
    profile_id = await create(client, email="ada@example.com")
    patch = patch_body(profile_id, phone_number="+15551234567")

    response = await client.patch(f"/api/profiles/{profile_id}", json=patch)

    assert response.status_code == 409
    assert problems(UPDATE, response) == []


@pytest.mark.parametrize(
    ("path", "content", "operation"),
    [
        ("/api/profiles", profile_body(email="not-an-email"), CREATE),
        ("/api/profiles", profile_body(first_name="Ada"), CREATE),
        ("/api/profiles", {"data": {"type": "person", "attributes": {}}}, CREATE),
        ("/api/events", event_body({"$email": "a@b.co"}, metric=""), EVENT),
        ("/api/profile-subscription-bulk-create-jobs", subscription_body(None), SUBSCRIBE),
    ],
    ids=["bad-email", "no-identifier", "wrong-type", "event-metric-name", "no-list-id"],
)
async def test_validation_400_is_a_client_error(
    client: httpx.AsyncClient, path: str, content: Json, operation: str
) -> None:
    response = await client.post(path, json=content)

    assert response.status_code == 400
    assert problems(operation, response) == []


async def test_malformed_json_400_is_a_client_error(client: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/json"}
    response = await client.post("/api/profiles", content=b"{not json", headers=headers)

    assert response.status_code == 400
    assert problems(CREATE, response) == []


async def test_unknown_profile_404_is_a_client_error(client: httpx.AsyncClient) -> None:
    unknown = "01GW3PHVY0MTCDGS0A1612HARX"

    response = await client.patch(f"/api/profiles/{unknown}/", json=patch_body(unknown, title="x"))

    assert response.status_code == 404
    assert problems(UPDATE, response) == []


async def test_missing_key_401_is_a_client_error(app: FastAPI) -> None:
    headers = {name: value for name, value in HEADERS.items() if name != "Authorization"}
    async with connect(app, headers) as bare:
        response = await bare.post("/api/profiles", json=profile_body(email="a@b.co"))

    assert response.status_code == 401
    assert problems(CREATE, response) == []


async def test_throttled_429_is_a_client_error(clock: FakeClock) -> None:
    async with connect(limited(clock), HEADERS) as client:
        await create(client, email="ada@example.com")
        response = await client.post("/api/profiles", json=profile_body(email="bob@example.com"))

    assert response.status_code == 429
    assert answer_schema(CREATE, 429) == "ClientError"
    assert problems(CREATE, response) == []


@pytest.mark.parametrize("status", [500, 503])
async def test_injected_5xx_is_a_server_error(client: httpx.AsyncClient, status: int) -> None:
    fault = {"status": status, "count": 1}
    assert (await client.post("/__emulator/faults", json=fault)).status_code == 201

    response = await client.post("/api/profiles", json=profile_body(email="a@b.co"))

    assert response.status_code == status
    assert answer_schema(CREATE, status) == "ServerError"
    assert problems(CREATE, response) == []
