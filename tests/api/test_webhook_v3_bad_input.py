"""``/v1/events`` at v3 meets what Klaviyo or the reference refuses: consent that resolves to
nothing, phones that cannot be made E.164, a list longer than one job, an entry Klaviyo refuses,
a 429 with ``Retry-After``, a retired revision (410). One event's refusal is only its own.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any, Final

import pytest

from klaviyo_destination.js import JsonObject
from tests.helpers import delivery
from tests.helpers.apps import Build
from tests.helpers.delivery import GROUP_LIST, LIST, Rig, group, identify, settings_at, track

pytestmark = pytest.mark.anyio

NO_SUBSCRIPTIONS: Final = "No subscriptions could be resolved for v3 API version"
IMPORT: Final = "/api/profile-import"
SUBSCRIBE: Final = "/api/profile-subscription-bulk-create-jobs"
UNSUBSCRIBE: Final = "/api/profile-subscription-bulk-delete-jobs"


@pytest.fixture
async def rig(build: Build) -> AsyncIterator[Rig]:
    # A generous limiter: these tests are about what is sent, not about pacing it.
    settings = settings_at("v3", profiles_rate_burst=10_000, profiles_rate_steady=100_000)
    async with delivery.rig(build, settings) as opened:
        yield opened


def results(answer: Any) -> list[JsonObject]:
    found: list[JsonObject] = answer.json()["results"]
    return found


def bodies(arrived: list[JsonObject], path: str) -> list[JsonObject]:
    return [entry["body"] for entry in arrived if entry["path"] == path]


# --- consent ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "properties",
    [
        pytest.param({"consent": []}, id="empty-consent"),
        pytest.param({"consent": "sms"}, id="sms-without-a-phone"),
        pytest.param({"consent": "whatsapp"}, id="unknown-channel"),
    ],
)
async def test_v3_without_resolvable_consent_is_the_references_400_for_that_event(
    rig: Rig, properties: JsonObject
) -> None:
    bad = identify("bad")
    bad["traits"]["properties"].update(properties)
    answer = await rig.deliver([bad, track("good")])
    assert answer.status_code == 207
    refused, delivered = results(answer)
    assert delivered["status"] == "delivered"
    assert refused["status"] == "rejected"
    assert refused["requests"] == []
    assert refused["error"]["code"] == "invalid_event"
    assert refused["error"]["field"] == "consent"
    [item] = await rig.processor_items([bad], "v3")
    assert item["statusCode"] == 400
    assert refused["error"]["message"] == item["error"]
    assert item["error"].startswith(NO_SUBSCRIPTIONS)
    assert [entry["path"] for entry in await rig.arrived()] == ["/api/events"]
    alone = await rig.deliver(bad)
    assert alone.status_code == 400


# --- phones (Part A 11) -----------------------------------------------------------------------


async def test_a_phone_that_cannot_be_made_e164_is_left_out_of_an_email_subscriber(
    rig: Rig,
) -> None:
    """The reference refuses the whole identify (§17.2); the webhook leaves the phone out of
    the profile-import and the job, says so, and subscribes the email."""
    event = identify("ada", phone="555-1234")
    answer = await rig.deliver(event)
    assert answer.status_code == 200, answer.text
    [result] = results(answer)
    [warning] = result["warnings"]
    assert warning["code"] == "phone_not_e164"
    assert warning["field"] == "traits.phone"
    assert "left out of the profile and subscription:" in warning["message"]
    arrived = await rig.arrived()
    [profile] = bodies(arrived, IMPORT)
    [job] = bodies(arrived, SUBSCRIBE)
    assert "phone_number" not in profile["data"]["attributes"]
    [entry] = job["data"]["attributes"]["profiles"]["data"]
    assert entry["attributes"] == {
        "email": "ada@example.com",
        "subscriptions": {"email": {"marketing": {"consent": "SUBSCRIBED"}}},
    }
    [item] = await rig.processor_items([event], "v3")
    assert item["error"] == "Phone number is not in E.164 format."


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(
            identify("ada", phone="555-1234", consent=["email", "sms"]), id="identify-with-sms"
        ),
        pytest.param(
            {**group("ada"), "traits": {"subscribe": True, "phone": "555-1234", "consent": "sms"}},
            id="group-phone-only",
        ),
    ],
)
async def test_a_phone_that_is_needed_and_cannot_be_made_e164_rejects_the_event(
    rig: Rig, event: JsonObject
) -> None:
    answer = await rig.deliver(event)
    assert answer.status_code == 400
    [result] = results(answer)
    assert result["requests"] == []
    assert result["error"]["code"] == "invalid_event"
    assert result["error"]["field"] == "traits.phone"
    assert result["error"]["message"].startswith("Phone number is not in E.164 format. ")
    assert await rig.arrived() == []


async def test_a_track_leaves_the_phone_out_of_the_events_profile(rig: Rig) -> None:
    event = track("ada")
    event["context"]["traits"]["phone"] = "+1/415/555/0100"  # the reference's check passes
    answer = await rig.deliver(event)
    assert answer.status_code == 200, answer.text
    assert results(answer)[0]["warnings"][0]["field"] == "context.traits.phone"
    [body] = bodies(await rig.arrived(), "/api/events")
    attributes = body["data"]["attributes"]["profile"]["data"]["attributes"]
    assert "phone_number" not in attributes
    assert attributes["external_id"] == "ada"


@pytest.mark.parametrize(
    ("phone", "sent"),
    [("1-617-555-1333", "+16175551333"), ("+1/415/555/0100", "+14155550100")],
)
async def test_a_default_region_sends_one_e164_number_everywhere(
    build: Build, phone: str, sent: str
) -> None:
    async with delivery.rig(build, settings_at("v3", default_phone_region="US")) as rig:
        event = identify("ada", phone=phone, consent=["email", "sms"])
        answer = await rig.deliver(
            [event, {**track("ada"), "context": {"traits": event["traits"]}}]
        )
        assert answer.status_code == 200, answer.text
        arrived = await rig.arrived()
        [profile] = bodies(arrived, IMPORT)
        [job] = bodies(arrived, SUBSCRIBE)
        [tracked] = bodies(arrived, "/api/events")
        [entry] = job["data"]["attributes"]["profiles"]["data"]
        assert profile["data"]["attributes"]["phone_number"] == sent
        assert entry["attributes"]["phone_number"] == sent
        assert set(entry["attributes"]["subscriptions"]) == {"email", "sms"}
        event_profile = tracked["data"]["attributes"]["profile"]["data"]["attributes"]
        assert event_profile["phone_number"] == sent


# --- lists longer than one job ----------------------------------------------------------------


async def test_250_subscribes_to_one_list_are_split_into_jobs_and_none_dropped(rig: Rig) -> None:
    users = [f"user{n:03}" for n in range(250)]
    answer = await rig.deliver([identify(user) for user in users])
    assert answer.status_code == 200, answer.text
    assert {r["status"] for r in results(answer)} == {"delivered"}
    arrived = await rig.arrived()
    assert len(bodies(arrived, IMPORT)) == 250
    jobs = bodies(arrived, SUBSCRIBE)
    sizes = [len(job["data"]["attributes"]["profiles"]["data"]) for job in jobs]
    assert sizes == [100, 100, 50]
    emails = [
        p["attributes"]["email"]
        for job in jobs
        for p in job["data"]["attributes"]["profiles"]["data"]
    ]
    assert emails == [f"{user}@example.com" for user in users]  # input order, none twice
    state = await rig.state()
    assert len(state["lists"][LIST]) == 250


async def test_150_unsubscribes_stay_within_klaviyos_100_a_job(rig: Rig) -> None:
    users = [f"user{n:03}" for n in range(150)]
    answer = await rig.deliver([group(user, subscribe=False) for user in users])
    assert answer.status_code == 200, answer.text
    jobs = bodies(await rig.arrived(), UNSUBSCRIBE)
    assert [len(job["data"]["attributes"]["profiles"]["data"]) for job in jobs] == [100, 50]


# --- what Klaviyo refuses in one entry --------------------------------------------------------


async def test_an_entry_klaviyo_would_refuse_is_rejected_before_merging(rig: Rig) -> None:
    bad = group("bad")
    bad["traits"]["email"] = "not-an-email"
    answer = await rig.deliver([group("u1"), bad, group("u2")])
    assert answer.status_code == 207
    first, refused, last = results(answer)
    assert refused["requests"] == []
    assert refused["error"]["field"] == "/data/attributes/profiles/data/0/attributes/email"
    assert first["status"] == last["status"] == "delivered"
    [job] = bodies(await rig.arrived(), SUBSCRIBE)
    assert len(job["data"]["attributes"]["profiles"]["data"]) == 2


async def test_a_400_pointing_at_one_entry_rejects_only_that_event(rig: Rig) -> None:
    """Klaviyo refuses a profile id it does not know, naming the entry: that event alone is
    rejected, with the pointer of its own request; the others are sent again and delivered."""
    unknown = group("ghost")
    unknown["context"] = {"externalId": [{"type": "klaviyo-profileId", "id": "01GHOST"}]}
    answer = await rig.deliver([group("u1"), unknown, group("u2")])
    assert answer.status_code == 207
    first, refused, last = results(answer)
    assert refused["status"] == "rejected"
    assert refused["error"]["klaviyo_status"] == 400
    assert refused["error"]["field"] == "/data/attributes/profiles/data/0/id"
    assert [r["status"] for r in refused["requests"]] == [400]
    assert [r["status"] for r in first["requests"]] == [400, 202]
    assert last["status"] == "delivered"
    statuses = [(entry["path"], entry["status"]) for entry in await rig.arrived()]
    assert statuses == [(SUBSCRIBE, 400), (SUBSCRIBE, 202)]
    assert len((await rig.state())["lists"][GROUP_LIST]) == 2


# --- Klaviyo's 429 and 410 --------------------------------------------------------------------


async def test_a_429_with_retry_after_is_honoured_at_v3(rig: Rig) -> None:
    await rig.fault(status=429, retry_after=1, path="/api/events")
    started = time.monotonic()
    answer = await rig.deliver(track("ada"))
    waited = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    assert waited >= 0.95
    arrived = await rig.arrived()
    assert [entry["status"] for entry in arrived] == [429, 202]
    assert {entry["headers"]["revision"] for entry in arrived} == {"2026-04-15"}


async def test_a_wait_longer_than_the_deadline_is_handed_back_as_429(rig: Rig) -> None:
    await rig.fault(status=429, retry_after=120, path=IMPORT)
    answer = await rig.deliver(identify("ada"))
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "120"
    [result] = results(answer)
    assert result["status"] == "failed"
    assert result["retry_after"] == 120


@pytest.mark.parametrize(
    ("api_version", "revision", "advice"),
    [
        ("v1", "2023-02-22", "Set KLAVIYO_API_VERSION=v3 (revision 2026-04-15)"),
        ("v2", "2024-10-15", "Set KLAVIYO_API_VERSION=v3 (revision 2026-04-15)"),
        ("v3", "2026-04-15", "Upgrade this service"),
    ],
)
async def test_a_410_names_the_revision_sent_and_the_way_on(
    build: Build, api_version: str, revision: str, advice: str
) -> None:
    async with delivery.rig(build, settings_at(api_version)) as rig:
        await rig.fault(status=410, path="/api/events")
        answer = await rig.deliver(track("ada"))
        assert answer.status_code == 400
        error = results(answer)[0]["error"]
        assert error["code"] == "klaviyo_revision_retired"
        assert error["message"].startswith(
            f"Klaviyo answered 410 Gone: API revision {revision} is retired there. {advice}"
        )
