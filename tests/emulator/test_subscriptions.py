"""Emulator bulk subscription jobs: list membership, consent, profile reuse, 400s, 100 cap."""

from __future__ import annotations

import httpx
import pytest

from tests.emulator.helpers import Json, create, only_error, subscription_body

pytestmark = pytest.mark.anyio


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
