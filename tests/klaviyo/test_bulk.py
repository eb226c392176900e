"""One subscription Klaviyo refuses never sinks the others (``klaviyo/bulk.py``, with the
pre-checks of ``klaviyo/refusals.py``): refused entries alone, the rest resent, halves bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import respx

from klaviyo_destination import planned
from klaviyo_destination.emulator import EmulatorStore, create_emulator
from klaviyo_destination.klaviyo import KlaviyoClient, SentRequest
from klaviyo_destination.planned import PlannedRequest
from tests.klaviyo.helpers import (
    Factory,
    Handler,
    deliver_batch,
    error_body,
    job_sizes,
    plan,
    subscription,
)

pytestmark = pytest.mark.anyio


def entry_job(list_id: str, **entry: Any) -> PlannedRequest:
    """A subscription job of one entry, as the mapping plans it for one event."""
    return planned.subscribe(
        {"list_id": list_id, "subscriptions": [{**entry, "channels": {"email": ["MARKETING"]}}]}
    )


@pytest.fixture
def emulator_store() -> EmulatorStore:
    return EmulatorStore(rate_limits=None)


@pytest.fixture
async def emulated(
    make_client: Factory, emulator_store: EmulatorStore
) -> AsyncIterator[KlaviyoClient]:
    """The client against the bundled emulator, whose validation is the reference here."""
    transport = httpx.ASGITransport(app=create_emulator(emulator_store))
    async with make_client(transport) as opened:
        yield opened


def list_emails(store: EmulatorStore, list_id: str) -> list[str]:
    return sorted(store.profiles[pid].fields["email"] for pid in store.lists.get(list_id, {}))


async def test_one_bad_email_is_rejected_alone_and_the_others_are_subscribed(
    emulated: KlaviyoClient, emulator_store: EmulatorStore
) -> None:
    emails = [f"user{i}@example.com" for i in range(10)]
    emails[4] = "not-an-email"
    events = [plan(f"u{i}", [entry_job("L1", email=email)]) for i, email in enumerate(emails)]
    outcomes = await deliver_batch(emulated, events)
    assert [o.status for o in outcomes] == ["delivered"] * 4 + ["rejected"] + ["delivered"] * 5
    error = outcomes[4].error
    assert error is not None
    assert (error["code"], error["field"]) == (
        "invalid_event",
        "/data/attributes/subscriptions/0/email",
    )
    assert "Invalid email address" in error["message"]
    assert outcomes[4].requests == []  # never sent
    assert list_emails(emulator_store, "L1") == sorted(e for e in emails if "@" in e)
    assert [r.status for r in emulator_store.requests] == [202]  # the nine in one job


@pytest.mark.parametrize("phone", ["+12 345 678 900", "+1 (415) 555-0100", "+1.415.555.0101"])
async def test_a_phone_number_klaviyo_accepts_stays_in_the_merged_job(
    emulated: KlaviyoClient, emulator_store: EmulatorStore, phone: str
) -> None:
    events = [
        plan("u1", [entry_job("L1", email="a@example.com", phone_number=phone)]),
        plan("u2", [entry_job("L1", email="b@example.com")]),
    ]
    outcomes = await deliver_batch(emulated, events)
    assert [o.status for o in outcomes] == ["delivered", "delivered"]
    assert [r.status for r in emulator_store.requests] == [202]
    assert list_emails(emulator_store, "L1") == ["a@example.com", "b@example.com"]


@pytest.mark.parametrize("phone", ["0123", "14155550100", "+1 415 555 0100 ext 7", "+12"])
async def test_a_phone_number_that_is_not_e164_is_rejected_alone(
    emulated: KlaviyoClient, emulator_store: EmulatorStore, phone: str
) -> None:
    events = [
        plan("u1", [entry_job("L1", email="a@example.com")]),
        plan("u2", [entry_job("L1", email="b@example.com", phone_number=phone)]),
        plan("u3", [entry_job("L1", email="c@example.com")]),
    ]
    outcomes = await deliver_batch(emulated, events)
    assert [o.status for o in outcomes] == ["delivered", "rejected", "delivered"]
    error = outcomes[1].error
    assert error is not None
    assert error["field"] == "/data/attributes/subscriptions/0/phone_number"
    assert "Invalid phone number format" in error["message"]
    assert list_emails(emulator_store, "L1") == ["a@example.com", "c@example.com"]


async def test_a_refused_entry_klaviyo_points_at_is_rejected_and_the_rest_resent(
    emulated: KlaviyoClient, emulator_store: EmulatorStore
) -> None:
    # Not a string: nothing checks that before sending, so the emulator's 400 names the entry.
    emails: list[Any] = ["a@example.com", "b@example.com", 12345, "d@example.com"]
    events = [plan(f"u{i}", [entry_job("L1", email=email)]) for i, email in enumerate(emails)]
    outcomes = await deliver_batch(emulated, events)
    assert [o.status for o in outcomes] == ["delivered", "delivered", "rejected", "delivered"]
    error = outcomes[2].error
    assert error is not None
    assert (error["code"], error["klaviyo_status"]) == ("klaviyo_rejected", 400)
    # The pointer names the entry in the event's own request, as /v1/transform shows it.
    assert error["field"] == "/data/attributes/subscriptions/0/email"
    assert [e["source"]["pointer"] for e in error["klaviyo_errors"]] == [error["field"]]
    assert [r.status for r in emulator_store.requests] == [400, 202]
    jobs = SentRequest("POST", "/api/profile-subscription-bulk-create-jobs", 400)
    assert outcomes[0].requests == [jobs, SentRequest(jobs.method, jobs.path, 202)]
    assert outcomes[2].requests == [jobs]
    assert list_emails(emulator_store, "L1") == ["a@example.com", "b@example.com", "d@example.com"]


def refusing(refused: str, pointer: str | None) -> Handler:
    """Klaviyo refusing any job that holds ``refused``: the 400 points at ``pointer``, or at
    the refused entry itself (``/data/attributes/subscriptions/<i>/email``) when it is None."""

    async def handle(request: httpx.Request) -> httpx.Response:
        subs = orjson.loads(request.content)["data"]["attributes"]["subscriptions"]
        emails = [sub.get("email") for sub in subs]
        if refused not in emails:
            return httpx.Response(202)
        where = pointer or f"/data/attributes/subscriptions/{emails.index(refused)}/email"
        return httpx.Response(400, json=error_body(400, "invalid", "Refused", where))

    return handle


async def test_a_400_pointing_at_one_entry_resends_the_others_without_it(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    jobs = router.post("/api/profile-subscription-bulk-create-jobs").mock(
        side_effect=refusing("2@b.co", None)
    )
    events = [plan(f"u{i}", [subscription("L1", f"{i}@b.co")]) for i in range(4)]
    outcomes = await deliver_batch(client, events)
    assert [o.status for o in outcomes] == ["delivered", "delivered", "rejected", "delivered"]
    assert job_sizes(jobs) == [("L1", 4), ("L1", 3)]
    error = outcomes[2].error
    assert error is not None
    assert error["field"] == "/data/attributes/subscriptions/0/email"
    assert error["message"] == "Klaviyo rejected the request (400 invalid): Refused"


@pytest.mark.parametrize("pointer", ["/data", "/data/", "/data/attributes/subscriptions/99/email"])
async def test_a_400_without_a_usable_pointer_splits_the_job_in_halves(
    client: KlaviyoClient, router: respx.MockRouter, pointer: str
) -> None:
    jobs = router.post("/api/profile-subscription-bulk-create-jobs").mock(
        side_effect=refusing("3@b.co", pointer)
    )
    events = [plan(f"u{i}", [subscription("L1", f"{i}@b.co")]) for i in range(5)]
    outcomes = await deliver_batch(client, events)
    assert [o.status for o in outcomes] == ["delivered"] * 3 + ["rejected", "delivered"]
    # 5 fails; halves 2 (sent) and 3 (fails); 1 (sent) and 2 (fails); 1 (refused), 1 (sent).
    assert [size for _, size in job_sizes(jobs)] == [5, 2, 3, 1, 2, 1, 1]
    assert outcomes[3].error is not None
    assert outcomes[3].error["klaviyo_status"] == 400


async def test_splitting_is_bounded_when_klaviyo_refuses_every_job(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    jobs = router.post("/api/profile-subscription-bulk-create-jobs").respond(
        400, json=error_body(400, "invalid", "The payload provided in the request is invalid.")
    )
    events = [plan(f"u{i}", [subscription("L1", f"{i}@b.co")]) for i in range(8)]
    outcomes = await deliver_batch(client, events)
    assert [o.status for o in outcomes] == ["rejected"] * 8
    assert jobs.call_count == 2 * 8 - 1  # every member ends alone, at most once each


@pytest.mark.parametrize(
    ("status", "pointer"),
    [(400, "/data/attributes/list_id"), (401, "/data/"), (410, "/data/")],
)
async def test_a_refusal_of_the_job_itself_rejects_every_event_at_once(
    client: KlaviyoClient, router: respx.MockRouter, status: int, pointer: str
) -> None:
    jobs = router.post("/api/profile-subscription-bulk-create-jobs").respond(
        status, json=error_body(status, "invalid", "no", pointer)
    )
    events = [plan(f"u{i}", [subscription("L1", f"{i}@b.co")]) for i in range(3)]
    outcomes = await deliver_batch(client, events)
    assert [o.status for o in outcomes] == ["rejected"] * 3
    assert jobs.call_count == 1
