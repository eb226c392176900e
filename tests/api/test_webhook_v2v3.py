"""``/v1/events`` at ``KLAVIYO_API_VERSION`` v2 and v3 against the emulator in process: what
arrives is what the protocol routes answer for the same events with ``Config.apiVersion`` set
the same way (docs/mapping.md §13, "At v2 and v3"), profile-import upserts (201, then 200),
list jobs merged per list as the router batches them, each user's events in order, and the
emulator's state in the newer shape (consent per list).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

import httpx
import pytest

from tests.helpers import delivery
from tests.helpers.apps import Build
from tests.helpers.delivery import GROUP_LIST, LIST, Rig, group, identify, settings_at, track

pytestmark = pytest.mark.anyio

REVISION: Final = {"v2": "2024-10-15", "v3": "2026-04-15"}


@pytest.fixture(params=["v2", "v3"])
def api_version(request: pytest.FixtureRequest) -> str:
    version: str = request.param
    return version


@pytest.fixture
async def rig(build: Build, api_version: str) -> AsyncIterator[Rig]:
    async with delivery.rig(build, settings_at(api_version)) as opened:
        yield opened


def statuses(answer: httpx.Response) -> list[list[int]]:
    return [[r["status"] for r in result["requests"]] for result in answer.json()["results"]]


# --- what arrives is the protocol's answer ----------------------------------------------------


async def test_each_kind_arrives_as_the_processor_route_answers_it(
    rig: Rig, api_version: str
) -> None:
    for event in delivery.every_kind():
        answer = await rig.deliver(event)
        assert answer.status_code == 200, answer.text
        arrived = delivery.from_emulator(await rig.arrived())
        expected = delivery.from_processor(await rig.processor([event], api_version))
        assert arrived == expected, event["messageId"]
        assert {headers for _, _, headers, _ in arrived} == {
            (
                ("Accept", "application/json"),
                ("Content-Type", "application/json"),
                ("revision", REVISION[api_version]),
                ("Authorization", "Klaviyo-API-Key"),
            )
        }


async def test_a_batch_arrives_as_the_router_answers_it(rig: Rig, api_version: str) -> None:
    """Identifies subscribing and one unsubscribing, tracks, an identify without a job: the
    jobs merged per list and operation, each after its events' profile-imports."""
    events = [
        identify("u1"),
        identify("u2"),
        track("u1"),
        identify("u3"),
        identify("u4", subscribe=False),
        track("u2", kind="screen"),
        identify("u5", subscribe=None),
    ]
    answer = await rig.deliver(events)
    assert answer.status_code == 200, answer.text
    arrived = delivery.from_emulator(await rig.arrived())
    expected = delivery.from_router(await rig.router(events, api_version))
    assert delivery.unordered(arrived) == delivery.unordered(expected)
    jobs = [body for _, path, _, body in arrived if "bulk" in path]
    assert len(jobs) == 2  # one subscribe job of three profiles, one unsubscribe job


async def test_profile_import_upserts_201_then_200(rig: Rig) -> None:
    first = await rig.deliver(identify("ada"))
    second = await rig.deliver(identify("ada"))
    assert statuses(first) == [[201, 202]]
    assert statuses(second) == [[200, 202]]
    paths = [r["path"] for r in second.json()["results"][0]["requests"]]
    assert paths == ["/api/profile-import", "/api/profile-subscription-bulk-create-jobs"]
    assert len(rig.store.profiles) == 1


async def test_the_state_page_shows_consent_per_list(rig: Rig) -> None:
    subscribed = await rig.deliver([identify("ada"), group("ada"), track("ada")])
    assert subscribed.status_code == 200, subscribed.text
    state = await rig.state()
    [profile] = state["profiles"]
    pid = profile["id"]
    assert profile["attributes"]["email"] == "ada@example.com"
    for list_id in (LIST, GROUP_LIST):
        assert state["consent"][list_id][pid]["email"]["consent"] == "SUBSCRIBED"
        assert [member["profile_id"] for member in state["lists"][list_id]] == [pid]
    [event] = state["events"]
    assert event["attributes"]["event_properties"]["sku"] == "G-32"

    left = await rig.deliver([identify("ada", subscribe=False), group("ada", subscribe=False)])
    assert statuses(left) == [[200, 202], [202]]
    state = await rig.state()
    for list_id in (LIST, GROUP_LIST):
        assert state["consent"][list_id][pid]["email"]["consent"] == "UNSUBSCRIBED"
        assert state["lists"][list_id] == []


async def test_a_batch_mixing_users_keeps_each_users_order(rig: Rig, api_version: str) -> None:
    events = [
        identify("u1"),
        track("u1"),
        identify("u2", subscribe=False),
        group("u1"),
        track("u2"),
        group("u2", subscribe=False),
        track("u3"),
        identify("u3"),
        track("u1", "Checkout"),
    ]
    answer = await rig.deliver(events)
    assert answer.status_code == 200, answer.text
    arrived = await rig.arrived()
    for user in ("u1", "u2", "u3"):
        own = [e for e in events if e["userId"] == user]
        planned = delivery.from_processor(await rig.processor(own, api_version))
        expected = [path for _, path, _, body in planned if _mentions(body, user)]
        got = [
            path for _, path, _, body in delivery.from_emulator(arrived) if _mentions(body, user)
        ]
        assert got == expected, user
        assert len(got) >= 3, user


def _mentions(body: str, user: str) -> bool:
    return f'"{user}@example.com"' in body


# --- the dry run --------------------------------------------------------------------------------


async def test_the_dry_run_shows_what_delivery_sends(rig: Rig) -> None:
    """Same method, path, headers (the key masked) and body, one event at a time; the phone
    rule's warning too."""
    events = [*delivery.every_kind(), identify("bo", phone="555-1234")]
    for event in events:
        shown = (await rig.service.post("/v1/transform", json=event)).json()["results"][0]
        answer = (await rig.deliver(event)).json()["results"][0]
        assert shown["status"] == "planned"
        assert shown.get("warnings") == answer.get("warnings")
        planned = [
            {**request, "url": request["url"].removeprefix("http://emulator.embedded")}
            for request in shown["requests"]
        ]
        assert all(r["headers"]["Authorization"] == "Klaviyo-API-Key ***" for r in planned)
        assert delivery.from_dry_run(planned) == delivery.from_emulator(await rig.arrived())


async def test_the_sdk_routes_deliver_at_the_same_revision(rig: Rig, api_version: str) -> None:
    """``/v1/batch`` and ``/v1/<type>`` share ``/v1/events``' config and delivery."""
    batch = await rig.service.post("/v1/batch", json={"batch": [identify("ada"), track("ada")]})
    single = await rig.service.post("/v1/group", json=group("ada"))
    assert (batch.status_code, single.status_code) == (200, 200), batch.text
    arrived = await rig.arrived()
    assert [entry["path"] for entry in arrived] == [
        "/api/profile-import",
        "/api/profile-subscription-bulk-create-jobs",
        "/api/events",
        "/api/profile-subscription-bulk-create-jobs",
    ]
    assert {entry["headers"]["revision"] for entry in arrived} == {REVISION[api_version]}
