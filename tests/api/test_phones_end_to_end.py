"""Phones in the webhook path (Part A 11) against the in-process emulator, which refuses what
Klaviyo refuses: the seed page's group sample delivers its email subscription, the dry run says
what delivery does, and the warning reaches the log without the number.

The service is wired as ``make run`` wires it without a key: ``/v1/events`` delivering to the
emulator through an ASGI transport, nothing on the network.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from pydantic import SecretStr

from klaviyo_destination.emulator import EmulatorStore, create_emulator
from klaviyo_destination.emulator.models import Profile
from klaviyo_destination.logs import fields_of
from klaviyo_destination.settings import Settings
from tests.helpers.apps import Build, served

SEED_SAMPLE: Final[dict[str, Any]] = json.loads(
    (Path(__file__).parents[2] / "examples" / "group-seed-page.json").read_text(encoding="utf-8")
)
SEED_LIST: Final = "listId"
SEED_EMAIL: Final = "user.test@gmail.com"
SUBSCRIBE: Final = {
    "method": "POST",
    "path": "/api/profile-subscription-bulk-create-jobs",
    "status": 202,
}


@pytest.fixture(params=[None, "US"], ids=["no-region", "region-US"])
def region(request: pytest.FixtureRequest) -> str | None:
    value: str | None = request.param
    return value


@pytest.fixture
def store() -> EmulatorStore:
    return EmulatorStore(seed=7, rate_limits=None)


@pytest.fixture
async def service(
    build: Build, store: EmulatorStore, region: str | None
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        klaviyo_private_api_key=SecretStr("pk_emulated"),
        klaviyo_base_url="http://emulator.embedded",
        max_attempts=1,
        default_phone_region=region,
    )
    transport = httpx.ASGITransport(app=create_emulator(store))
    async with served(build(settings, transport=transport)) as client:
        yield client


def _member(store: EmulatorStore, list_id: str) -> tuple[Profile, tuple[str, ...]]:
    [membership] = store.lists[list_id].values()
    return store.profiles[membership.profile_id], membership.channels


# --- the seed page's group sample ------------------------------------------------------------


def test_the_example_is_the_seed_pages_sample() -> None:
    """RudderStack's Klaviyo page (old API), "Group": its ``client.group({...})`` as JSON, with
    the type the SDK sets."""
    assert SEED_SAMPLE["type"] == "group"
    assert SEED_SAMPLE["context"]["traits"]["phone"] == "1-617-555-1333"
    assert SEED_SAMPLE["context"]["traits"]["consent"] == "email"


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/v1/events", "/v1/group", "/v1/batch"])
async def test_the_seed_group_sample_delivers_its_email_subscription(
    service: httpx.AsyncClient, store: EmulatorStore, region: str | None, path: str
) -> None:
    body = {"batch": [SEED_SAMPLE]} if path == "/v1/batch" else SEED_SAMPLE
    response = await service.post(path, json=body)

    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert (result["status"], result["requests"]) == ("delivered", [SUBSCRIBE])
    profile, channels = _member(store, SEED_LIST)
    assert profile.fields["email"] == SEED_EMAIL
    assert channels == ("email",)  # subscribed for email; no SMS consent
    assert set(profile.consent) == {"email"}
    if region is None:  # left out, and said so
        assert "phone_number" not in profile.fields
        [warning] = result["warnings"]
        assert (warning["code"], warning["field"]) == ("phone_not_e164", "context.traits.phone")
    else:  # libphonenumber reads it as a US number
        assert profile.fields["phone_number"] == "+16175551333"
        assert "warnings" not in result


# --- the table, delivered and dry-run --------------------------------------------------------

#: (phone, consent): one group event each, all in one batch, each its own list
CASES: Final = [
    (phone, consent)
    for phone in [
        "+14155550100", "+1 (415) 555-0100", "+1.415.555.0101", "1-617-555-1333",
        "(617) 555-1333", "14155550100", "call me maybe", "12", "+1234567", "555-CALL",
        "1-800-FLOWERS",
    ]
    for consent in ["email", "sms", ["email", "sms"]]
]  # fmt: skip


def _case(index: int, phone: str, consent: Any) -> dict[str, Any]:
    return {
        "type": "group",
        "groupId": f"L{index}",
        "userId": f"u{index}",
        "messageId": f"m{index}",
        "traits": {"subscribe": True, "properties": {"consent": consent}},
        "context": {"traits": {"email": f"user{index}@example.com", "phone": phone}},
    }


#: What a dry-run status says delivery will say.
DELIVERY_STATUS: Final = {"planned": "delivered", "rejected": "rejected"}


def _said(result: dict[str, Any]) -> tuple[Any, ...]:
    error = result.get("error") or {}
    return (
        DELIVERY_STATUS.get(result["status"], result["status"]),
        error.get("code"),
        error.get("message"),
        error.get("field"),
        result.get("warnings"),
    )


@pytest.mark.anyio
async def test_the_dry_run_says_what_delivery_does(
    service: httpx.AsyncClient, store: EmulatorStore
) -> None:
    """With and without a region (the ``service`` fixture's two)."""
    events = [_case(index, phone, consent) for index, (phone, consent) in enumerate(CASES)]

    planned = (await service.post("/v1/transform", json=events)).json()["results"]
    delivered = (await service.post("/v1/events", json=events)).json()["results"]

    assert [_said(p) for p in planned] == [_said(d) for d in delivered]
    assert {r["status"] for r in delivered} == {"delivered", "rejected"}
    # What was planned is what the emulator took: every planned entry, as shown.
    received = [
        entry
        for request in store.requests
        if request.status == 202
        for entry in request.body["data"]["attributes"]["subscriptions"]
    ]
    shown = [
        entry
        for result in planned
        for request in result["requests"]
        for entry in request["body"]["data"]["attributes"]["subscriptions"]
    ]
    assert sorted(map(json.dumps, received)) == sorted(map(json.dumps, shown))
    for index, (_, consent) in enumerate(CASES):
        result = delivered[index]
        if result["status"] == "rejected":
            assert "sms" in consent
            assert result["requests"] == []
            assert result["error"]["field"] == "context.traits.phone"
        elif "warnings" in result:
            profile, channels = _member(store, f"L{index}")
            assert ("phone_number" not in profile.fields, channels) == (True, ("email",))


@pytest.mark.anyio
async def test_identify_with_a_national_phone_and_email_consent_is_delivered(
    service: httpx.AsyncClient, store: EmulatorStore, region: str | None
) -> None:
    """Klaviyo refuses a profile with such a phone too: it is left out of both requests."""
    properties = {"subscribe": True, "listId": "L1", "consent": ["email"]}
    traits = {"email": "a@example.com", "phone": "(617) 555-1333", "properties": properties}
    event = {"type": "identify", "userId": "u1", "messageId": "m1", "traits": traits}

    response = await service.post("/v1/events", json=event)

    assert response.status_code == 200, response.text
    [result] = response.json()["results"]
    assert [r["status"] for r in result["requests"]] == [201, 202]
    profile, channels = _member(store, "L1")
    assert profile.fields.get("phone_number") == ("+16175551333" if region else None)
    assert channels == ("email",)
    assert ("warnings" in result) == (region is None)


# --- the log ---------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("region", [None], ids=["no-region"])
async def test_the_warning_is_logged_once_without_the_number(
    service: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="klaviyo_destination")
    response = await service.post("/v1/events", json=SEED_SAMPLE)
    assert response.status_code == 200, response.text

    [record] = [r for r in caplog.records if fields_of(r).get("warning") == "phone_not_e164"]
    assert record.levelno == logging.WARNING
    assert fields_of(record)["field"] == "context.traits.phone"
    assert "context.traits.phone" in record.getMessage()
    logged = f"{record.getMessage()} {fields_of(record)}"
    for shape in ("1-617-555-1333", "6175551333", "555-1333", "1333"):
        assert shape not in logged

    caplog.clear()
    await service.post("/v1/transform", json=SEED_SAMPLE)  # a dry run sends nothing, logs none
    assert not [r for r in caplog.records if fields_of(r).get("warning")]


@pytest.mark.anyio
@pytest.mark.parametrize("region", [None], ids=["no-region"])
async def test_the_openapi_document_shows_the_warnings(service: httpx.AsyncClient) -> None:
    schemas = (await service.get("/openapi.json")).json()["components"]["schemas"]
    for result in ("DeliveryResult", "PlannedResult"):
        warnings = schemas[result]["properties"]["warnings"]
        assert warnings["items"] == {"$ref": "#/components/schemas/EventWarning"}
    assert set(schemas["EventWarning"]["required"]) == {"code", "field", "message"}
