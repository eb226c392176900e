"""Identify's upsert on the delivery path (``klaviyo/upsert.py``): create, 409 → PATCH, conflict."""

from __future__ import annotations

import httpx
import pytest
import respx

from klaviyo_destination import planned
from klaviyo_destination.klaviyo import KlaviyoClient, Outcome, SentRequest
from tests.klaviyo.helpers import BOTH_IDS_BODY, PROFILE_BODY, conflict, deliver

pytestmark = pytest.mark.anyio


async def test_201_completes_the_profile_without_patch(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    create = router.post("/api/profiles").respond(201, json={"data": {"id": "P1"}})
    outcome = await deliver(client, [planned.create_profile(PROFILE_BODY)])
    assert outcome == Outcome("delivered", [SentRequest("POST", "/api/profiles", 201)])
    assert create.call_count == 1
    assert router.calls.call_count == 1


async def test_any_2xx_with_an_id_is_a_created_profile(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    router.post("/api/profiles").respond(200, json={"data": {"id": "P1"}})
    outcome = await deliver(client, [planned.create_profile(PROFILE_BODY)])
    assert outcome.status == "delivered"
    assert router.calls.call_count == 1


async def test_409_patches_the_duplicate_profile(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    router.post("/api/profiles").mock(return_value=conflict("P9"))
    patch = router.patch("/api/profiles/P9").respond(200, json={"data": {"id": "P9"}})
    outcome = await deliver(client, [planned.create_profile(PROFILE_BODY)])
    assert outcome.status == "delivered"
    assert outcome.requests == [
        SentRequest("POST", "/api/profiles", 409),
        SentRequest("PATCH", "/api/profiles/P9", 200),
    ]
    sent = patch.calls.last.request
    assert httpx.Response(200, content=sent.content).json() == {
        "data": {"type": "profile", "attributes": {"email": "a@b.co"}, "id": "P9"}
    }


async def test_409_without_duplicate_id_is_rejected(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    router.post("/api/profiles").mock(return_value=conflict(None))
    outcome = await deliver(client, [planned.create_profile(PROFILE_BODY)])
    assert outcome.status == "rejected"
    assert outcome.error is not None
    assert outcome.error["code"] == "klaviyo_profile_conflict"
    assert "duplicate_profile_id" in outcome.error["message"]
    assert router.calls.call_count == 1


async def test_409_on_the_patch_names_the_identifiers_to_fix(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    router.post("/api/profiles").mock(return_value=conflict("P9"))
    router.patch("/api/profiles/P9").mock(return_value=conflict(None))
    outcome = await deliver(client, [planned.create_profile(BOTH_IDS_BODY)])
    assert outcome.status == "rejected"
    assert outcome.error is not None
    assert outcome.error["message"].startswith(
        "email and phone_number belong to two different Klaviyo profiles;"
    )
    assert outcome.error["klaviyo_status"] == 409
    assert [r.status_code for r in outcome.requests] == [409, 409]


async def test_a_2xx_without_an_id_fails_retryably(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    # The reference retries such a create; the resent event meets 409 and PATCHes.
    router.post("/api/profiles").respond(201, json={"data": {}})
    outcome = await deliver(client, [planned.create_profile(PROFILE_BODY)])
    assert outcome.status == "failed"
    assert outcome.requests == [SentRequest("POST", "/api/profiles", 201)]
    assert outcome.error is not None
    assert outcome.error["message"] == "Klaviyo answered 201 to create-profile without data.id"
    assert router.calls.call_count == 1
