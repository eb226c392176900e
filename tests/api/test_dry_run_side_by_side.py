"""The dry run and delivery, side by side: for the same event at the same revision,
``/v1/transform`` says ``planned`` where ``/v1/events`` says ``delivered``, and ``rejected``
with the same code and field where delivery rejects (issue 27, "What a new user meets" 1).

Delivery goes to the in-process emulator, which refuses what Klaviyo refuses; the rows are the
samples in ``examples/`` (the seed page's group sample among them) and the rejections known
before Klaviyo's state counts: the mapping's, the phone rule's, and Klaviyo's own for an email
it would not take or a list job's entry with no email or phone number.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from pydantic import SecretStr

from klaviyo_destination.emulator import EmulatorStore, create_emulator
from klaviyo_destination.settings import Settings
from tests.helpers.apps import Build, served

EXAMPLES: Final = sorted((Path(__file__).parents[2] / "examples").glob("*.json"))
#: What each dry-run status says delivery will say.
DELIVERY_STATUS: Final = {"planned": "delivered", "rejected": "rejected"}

#: (id, event): events delivery rejects whatever Klaviyo's state, or delivers.
ROWS: Final[list[tuple[str, dict[str, Any]]]] = [
    *((path.stem, json.loads(path.read_text(encoding="utf-8"))) for path in EXAMPLES),
    (
        "identify-bad-email",
        {"type": "identify", "userId": "u1", "traits": {"email": "not-an-email"}},
    ),
    (
        "track-bad-email",
        {
            "type": "track",
            "event": "Viewed",
            "userId": "u2",
            "properties": {},
            "context": {"traits": {"email": "ada@example"}},
        },
    ),
    (
        "group-bad-email",
        {"type": "group", "groupId": "L1", "userId": "u3", "traits": {"email": "a b@c.co"}},
    ),
    ("group-no-contact", {"type": "group", "groupId": "L1", "userId": "u4", "traits": {}}),
    (
        "identify-sms-consent-no-phone",
        {
            "type": "identify",
            "userId": "u5",
            "traits": {
                "email": "bo@example.com",
                "properties": {"subscribe": True, "listId": "L1", "consent": "sms"},
            },
        },
    ),
    ("track-empty-name", {"type": "track", "event": "", "userId": "u6", "properties": {}}),
    ("track-long-name", {"type": "track", "event": "n" * 128, "userId": "u10", "properties": {}}),
    ("page", {"type": "page", "userId": "u7", "name": "Home"}),
    (
        "identify-national-phone",
        {"type": "identify", "userId": "u8", "traits": {"email": "c@d.co", "phone": "12"}},
    ),
    (
        "track-string-revenue",
        {"type": "track", "event": "Paid", "userId": "u9", "properties": {"revenue": "abc"}},
    ),
]


@pytest.fixture(params=["v1", "v2", "v3"])
async def service(build: Build, request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        klaviyo_private_api_key=SecretStr("pk_emulated"),
        klaviyo_base_url="http://emulator.embedded",
        klaviyo_api_version=request.param,
        max_attempts=1,
    )
    transport = httpx.ASGITransport(app=create_emulator(EmulatorStore(seed=7, rate_limits=None)))
    async with served(build(settings, transport=transport)) as client:
        yield client


def _said(result: dict[str, Any]) -> tuple[Any, ...]:
    error = result.get("error") or {}
    status = DELIVERY_STATUS.get(result["status"], result["status"])
    return status, error.get("code"), error.get("field"), result.get("warnings")


@pytest.mark.anyio
@pytest.mark.parametrize(("name", "event"), ROWS, ids=[name for name, _ in ROWS])
async def test_the_dry_run_says_what_delivery_says(
    service: httpx.AsyncClient, name: str, event: dict[str, Any]
) -> None:
    event = {"messageId": f"m-{name}", **event}

    planned = await service.post("/v1/transform", json=event)
    delivered = await service.post("/v1/events", json=event)

    [dry] = planned.json()["results"]
    [sent] = delivered.json()["results"]
    assert _said(dry) == _said(sent), (dry, sent)
    assert planned.status_code == delivered.status_code


@pytest.mark.anyio
async def test_the_seed_group_sample_is_accepted(service: httpx.AsyncClient) -> None:
    """RudderStack's own group sample (its phone written ``1-617-555-1333``) is delivered at
    every revision, and the dry run plans it."""
    [seed] = [path for path in EXAMPLES if path.stem == "group-seed-page"]
    body = json.loads(seed.read_text(encoding="utf-8"))

    planned = (await service.post("/v1/transform", json=body)).json()["results"]
    delivered = (await service.post("/v1/events", json=body)).json()["results"]

    assert [r["status"] for r in planned] == ["planned"]
    assert [r["status"] for r in delivered] == ["delivered"]
