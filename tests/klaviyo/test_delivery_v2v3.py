"""Delivery of v2/v3 requests through the session and the batch, against respx: each request's
own revision header, profile-import as an upsert (no 409 dance), list jobs merged per list and
operation and narrowed by Klaviyo's pointers into ``profiles.data``, per-event results."""

from __future__ import annotations

from typing import Any, Final

import httpx
import orjson
import pytest
import respx

from klaviyo_destination import planned
from klaviyo_destination.klaviyo import KlaviyoClient
from klaviyo_destination.klaviyo.facts import REVISIONS, V1, ApiVersion
from klaviyo_destination.klaviyo.refusals import refusal
from klaviyo_destination.planned import PlannedRequest
from tests.klaviyo.helpers import deliver, deliver_batch, error_body, plan

pytestmark = pytest.mark.anyio

V2: Final = REVISIONS[ApiVersion.V2]
V3: Final = REVISIONS[ApiVersion.V3]
IMPORT: Final = "/api/profile-import"
SUBSCRIBE: Final = "/api/profile-subscription-bulk-create-jobs"
UNSUBSCRIBE: Final = "/api/profile-subscription-bulk-delete-jobs"


def profile_import(email: str = "a@b.co") -> PlannedRequest:
    data = {"type": "profile", "attributes": {"email": email}, "meta": {}}
    return planned.import_profile(data, V3)


def job(email: str, *, subscribe: bool = True, list_id: str = "L1", revision: Any = V3) -> Any:
    consent = "SUBSCRIBED" if subscribe else "UNSUBSCRIBED"
    attributes = {"email": email, "subscriptions": {"email": {"marketing": {"consent": consent}}}}
    profile = {"type": "profile", "attributes": attributes}
    return planned.list_job(subscribe, list_id, [profile], revision)


def profiles_of(call: Any) -> list[str]:
    body = orjson.loads(call.request.content)
    return [p["attributes"]["email"] for p in body["data"]["attributes"]["profiles"]["data"]]


async def test_each_request_carries_its_own_revision(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    route = router.post("/api/events").respond(202)
    v1 = planned.create_event({"profile": {}, "metric": {"name": "x"}, "properties": {}})
    v3 = planned.create_event({"profile": {}, "metric": {}, "properties": {}}, V3)
    outcomes = await deliver_batch(client, [plan("u1", [v1]), plan("u2", [v3])])
    assert [o.status for o in outcomes] == ["delivered", "delivered"]
    sent = sorted(call.request.headers["revision"] for call in route.calls)
    assert sent == [V1.name, V3.name]


@pytest.mark.parametrize("status", [200, 201])
async def test_profile_import_is_an_upsert(
    client: KlaviyoClient, router: respx.MockRouter, status: int
) -> None:
    """200 (updated) and 201 (created) are both success, with or without ``data.id``."""
    route = router.post(IMPORT).respond(status, json={})
    outcome = await deliver(client, [profile_import()])
    assert outcome.status == "delivered"
    assert [r.status_code for r in outcome.requests] == [status]
    assert route.calls.last.request.headers["revision"] == V3.name


async def test_a_409_from_profile_import_is_a_plain_rejection(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    body = error_body(409, "duplicate_profile", "Two profiles", "/data/attributes/email")
    body["errors"][0]["meta"] = {"duplicate_profile_id": "01ABC"}
    route = router.post(IMPORT).respond(409, json=body)
    patch = router.patch(url__regex=r"/api/profiles/.*").respond(200)
    outcome = await deliver(client, [profile_import(), job("a@b.co")])
    assert outcome.status == "rejected"
    assert outcome.error is not None
    assert outcome.error["code"] == "klaviyo_rejected"  # not the v1 upsert's conflict
    assert outcome.error["klaviyo_errors"][0]["detail"] == "Two profiles"
    assert (route.call_count, patch.call_count) == (1, 0)


async def test_jobs_merge_per_list_and_operation_after_their_imports(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    imports = router.post(IMPORT).respond(201, json={"data": {"id": "p"}})
    subscribe = router.post(SUBSCRIBE).respond(202)
    unsubscribe = router.post(UNSUBSCRIBE).respond(202)
    events = [
        plan("u1", [profile_import("u1@x.co"), job("u1@x.co")]),
        plan("u2", [job("u2@x.co", list_id="L2")]),
        plan("u3", [profile_import("u3@x.co"), job("u3@x.co")]),
        plan("u4", [job("u4@x.co", subscribe=False)]),
        plan("u5", [job("u5@x.co", subscribe=False)]),
    ]
    outcomes = await deliver_batch(client, events)
    assert [o.status for o in outcomes] == ["delivered"] * 5
    assert imports.call_count == 2
    assert sorted(profiles_of(call) for call in subscribe.calls) == [
        ["u1@x.co", "u3@x.co"],
        ["u2@x.co"],
    ]
    assert [profiles_of(call) for call in unsubscribe.calls] == [["u4@x.co", "u5@x.co"]]
    assert [r.path for r in outcomes[0].requests] == [IMPORT, SUBSCRIBE]


@pytest.mark.parametrize(
    ("pointer", "calls", "rejected"),
    [
        # an entry: that event alone, its pointer rebased; the rest sent again
        ("/data/attributes/profiles/data/1/attributes/email", 2, [1]),
        # the job itself (its list): every event would meet it alone too
        ("/data/relationships/list/data/id", 1, [0, 1, 2]),
        ("/data/type", 1, [0, 1, 2]),
        # the entries' array (too many?): halves, until what is refused is alone
        ("/data/attributes/profiles/data", 5, [0, 1, 2]),
    ],
)
async def test_a_400_is_narrowed_by_its_pointer(
    client: KlaviyoClient, router: respx.MockRouter, pointer: str, calls: int, rejected: list[int]
) -> None:
    route = router.post(SUBSCRIBE).mock(
        side_effect=lambda request: (
            httpx.Response(400, json=error_body(400, "invalid", "No.", pointer))
            if len(orjson.loads(request.content)["data"]["attributes"]["profiles"]["data"]) > 2
            or "/data/attributes/profiles/data/" not in pointer
            else httpx.Response(202)
        )
    )
    events = [plan(f"u{n}", [job(f"u{n}@x.co")]) for n in range(3)]
    outcomes = await deliver_batch(client, events)
    assert [n for n, o in enumerate(outcomes) if o.status == "rejected"] == rejected
    assert route.call_count == calls
    if rejected == [1]:
        assert outcomes[1].error is not None
        assert outcomes[1].error["field"] == "/data/attributes/profiles/data/0/attributes/email"


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"email": "nope"}, "/data/attributes/profiles/data/0/attributes/email"),
        ({"email": "a@b.co", "phone_number": "555"}, None),  # Klaviyo's check: not E.164
        ({"email": "a@b.co", "phone_number": "+14155550100"}, "ok"),
    ],
)
def test_refusals_name_the_v2v3_entry(entry: dict[str, str], field: str | None) -> None:
    request = planned.list_job(True, "L1", [{"type": "profile", "attributes": entry}], V2)
    refused = refusal(request)
    if field == "ok":
        assert refused is None
        return
    assert refused is not None
    expected = field or "/data/attributes/profiles/data/0/attributes/phone_number"
    assert refused.field == expected
    assert "in a list job" in refused.message
