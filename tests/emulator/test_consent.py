"""Subscribe and unsubscribe jobs at the revisions after 2023-02-22: consent per channel per
list, in the store and on the state page; "profiles not in the list are globally unsubscribed"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final

import httpx
import pytest
from fastapi import FastAPI

from klaviyo_destination.klaviyo.facts import NEWEST_REVISION
from tests.emulator.helpers import connect, job_body, marketing, only_error, revision_headers

pytestmark = pytest.mark.anyio

SUBSCRIBE: Final = "/api/profile-subscription-bulk-create-jobs"
UNSUBSCRIBE: Final = "/api/profile-subscription-bulk-delete-jobs"
ADA: Final = {"email": "ada@b.co", "phone_number": "+15005550006"}
Json = dict[str, Any]


@pytest.fixture(params=["2024-10-15", "2026-04-15", NEWEST_REVISION])
async def newer(app: FastAPI, request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    async with connect(app, revision_headers(request.param)) as client:
        yield client


async def job(client: httpx.AsyncClient, path: str, body: Json) -> None:
    response = await client.post(path, json=body)
    assert response.status_code == 202, response.text
    assert response.content == b""


async def consent_of(client: httpx.AsyncClient) -> tuple[Json, Json, Json]:
    """(the one profile's email and sms marketing, the state page's per-list consent)."""
    state = (await client.get("/__emulator/state")).json()
    [profile] = state["profiles"]
    answer = await client.get(
        f"/api/profiles/{profile['id']}", params={"additional-fields[profile]": "subscriptions"}
    )
    subscriptions = answer.json()["data"]["attributes"]["subscriptions"]
    per_list = {
        list_id: {channel: c["consent"] for channel, c in profiles[profile["id"]].items()}
        for list_id, profiles in state["consent"].items()
    }
    return subscriptions["email"]["marketing"], subscriptions["sms"]["marketing"], per_list


async def test_subscribe_grants_each_channel_on_the_list(newer: httpx.AsyncClient) -> None:
    subscriptions = marketing("SUBSCRIBED", "email", "sms")
    await job(newer, SUBSCRIBE, job_body("create", "L1", ADA | {"subscriptions": subscriptions}))

    email, sms, per_list = await consent_of(newer)
    state = (await newer.get("/__emulator/state")).json()
    assert (email["consent"], email["can_receive_email_marketing"]) == ("SUBSCRIBED", True)
    assert (sms["consent"], sms["can_receive_sms_marketing"]) == ("SUBSCRIBED", True)
    assert per_list == {"L1": {"email": "SUBSCRIBED", "sms": "SUBSCRIBED"}}
    [member] = state["lists"]["L1"]
    assert member["channels"] == ["email", "sms"]


async def test_unsubscribing_a_member_is_per_list(newer: httpx.AsyncClient) -> None:
    subscriptions = marketing("SUBSCRIBED", "email", "sms")
    await job(newer, SUBSCRIBE, job_body("create", "L1", ADA | {"subscriptions": subscriptions}))
    revoked = {"email": ADA["email"], "subscriptions": marketing("UNSUBSCRIBED", "email")}
    await job(newer, UNSUBSCRIBE, job_body("delete", "L1", revoked))

    email, sms, per_list = await consent_of(newer)
    state = (await newer.get("/__emulator/state")).json()
    assert email["consent"] == "SUBSCRIBED"  # still consenting to other lists
    assert [s["list_id"] for s in email["list_suppressions"]] == ["L1"]
    assert per_list == {"L1": {"email": "UNSUBSCRIBED", "sms": "SUBSCRIBED"}}
    assert state["lists"]["L1"] == []  # "All profiles will be removed from the provided list."
    assert sms["consent"] == "SUBSCRIBED"


@pytest.mark.parametrize("list_id", ["OTHER", None], ids=["not-on-the-list", "no-list"])
async def test_unsubscribing_a_non_member_is_global(
    newer: httpx.AsyncClient, list_id: str | None
) -> None:
    subscriptions = marketing("SUBSCRIBED", "email")
    await job(newer, SUBSCRIBE, job_body("create", "L1", ADA | {"subscriptions": subscriptions}))
    revoked = {"email": ADA["email"], "subscriptions": marketing("UNSUBSCRIBED", "email")}
    await job(newer, UNSUBSCRIBE, job_body("delete", list_id, revoked))

    email, _, per_list = await consent_of(newer)
    assert (email["consent"], email["can_receive_email_marketing"]) == ("UNSUBSCRIBED", False)
    assert [s["reason"] for s in email["suppression"]] == ["UNSUBSCRIBE"]
    assert per_list == {"L1": {"email": "SUBSCRIBED"}}


async def test_unsubscribing_an_unknown_profile_creates_it_unsubscribed(
    newer: httpx.AsyncClient,
) -> None:
    revoked = {"phone_number": "+15005550006", "subscriptions": marketing("UNSUBSCRIBED", "sms")}
    await job(newer, UNSUBSCRIBE, job_body("delete", "L1", revoked))

    _, sms, _ = await consent_of(newer)
    assert sms["consent"] == "UNSUBSCRIBED"


@pytest.mark.parametrize(
    ("entry", "pointer"),
    [
        ({"phone_number": "+15005550006", "subscriptions": marketing("SUBSCRIBED", "email")},
         "/data/attributes/profiles/data/0/attributes/email"),
        ({"email": "bad", "subscriptions": marketing("SUBSCRIBED", "email")},
         "/data/attributes/profiles/data/0/attributes/email"),
        ({"email": "a@b.co", "subscriptions": marketing("UNSUBSCRIBED", "email")},
         "/data/attributes/profiles/data/0/attributes/subscriptions/email/marketing/consent"),
    ],
    ids=["email-channel-needs-an-email", "bad-email", "wrong-consent-value"],
)  # fmt: skip
async def test_a_subscription_that_cannot_be_kept_is_400(
    newer: httpx.AsyncClient, entry: Json, pointer: str
) -> None:
    response = await newer.post(SUBSCRIBE, json=job_body("create", "L1", entry))

    assert (await only_error(response, 400))["source"] == {"pointer": pointer}
    assert (await newer.get("/__emulator/state")).json()["profiles"] == []


async def test_subscriptions_are_required_from_2025_01_15_on(app: FastAPI) -> None:
    answers = {}
    for revision in ("2024-10-15", "2026-04-15"):
        async with connect(app, revision_headers(revision)) as client:
            response = await client.post(SUBSCRIBE, json=job_body("create", "L1", ADA))
            answers[revision] = response.status_code

    assert answers == {"2024-10-15": 202, "2026-04-15": 400}


async def test_consented_at_only_with_historical_import(newer: httpx.AsyncClient) -> None:
    subscriptions = {"email": {"marketing": {"consent": "SUBSCRIBED"}}}
    subscriptions["email"]["marketing"]["consented_at"] = "2023-01-01T00:00:00+00:00"
    body = job_body("create", "L1", {"email": "a@b.co", "subscriptions": subscriptions})
    refused = await newer.post(SUBSCRIBE, json=body)
    body["data"]["attributes"]["historical_import"] = True
    accepted = await newer.post(SUBSCRIBE, json=body)

    assert (await only_error(refused, 400))["code"] == "invalid"
    assert accepted.status_code == 202
    email, _, _ = await consent_of(newer)
    assert email["consent_timestamp"] == "2023-01-01T00:00:00+00:00"


async def test_at_most_100_profiles_per_unsubscribe_job(newer: httpx.AsyncClient) -> None:
    revoked = marketing("UNSUBSCRIBED", "email")
    entries = [{"email": f"{i}@b.co", "subscriptions": revoked} for i in range(101)]
    response = await newer.post(UNSUBSCRIBE, json=job_body("delete", "L1", *entries))

    error = await only_error(response, 400)
    assert error["source"] == {"pointer": "/data/attributes/profiles/data"}


async def test_bulk_delete_does_not_exist_at_2023_02_22(client: httpx.AsyncClient) -> None:
    response = await client.post(UNSUBSCRIBE, json=job_body("delete", "L1", ADA))

    assert (await only_error(response, 404))["detail"] == "No valid revisions found for method."
