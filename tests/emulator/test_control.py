"""Emulator control endpoints: request recording, state, reset, seeded ids, unknown API paths."""

from __future__ import annotations

import httpx
import pytest

from klaviyo_destination.emulator import EmulatorStore, create_emulator
from tests.emulator.helpers import (
    HEADERS,
    KEY,
    FakeClock,
    connect,
    create,
    event_body,
    only_error,
    profile_body,
    subscription_body,
)

pytestmark = pytest.mark.anyio


async def test_requests_are_recorded_with_the_key_redacted(client: httpx.AsyncClient) -> None:
    body = profile_body(email="a@b.co")
    await client.post("/api/profiles", json=body, params={"x": "1"})

    response = await client.get("/__emulator/requests", params={"path": "/api/profiles"})

    assert KEY not in response.text
    [recorded] = response.json()["requests"]
    assert (recorded["method"], recorded["path"], recorded["query"]) == (
        "POST",
        "/api/profiles",
        "x=1",
    )
    assert recorded["headers"]["authorization"] == "Klaviyo-API-Key ***"
    assert recorded["headers"]["revision"] == "2023-02-22"
    assert (recorded["body"], recorded["status"]) == (body, 201)


async def test_state_shows_profiles_events_and_lists(client: httpx.AsyncClient) -> None:
    await client.post("/api/events", json=event_body({"$email": "a@b.co"}))
    await client.post(
        "/api/profile-subscription-bulk-create-jobs",
        json=subscription_body("L1", {"email": "a@b.co"}),
    )

    state = (await client.get("/__emulator/state")).json()

    [profile] = state["profiles"]
    assert profile["attributes"]["email"] == "a@b.co"
    assert [e["attributes"]["profile_id"] for e in state["events"]] == [profile["id"]]
    assert [m["profile_id"] for m in state["lists"]["L1"]] == [profile["id"]]
    assert state["rate_limits"]["limits"]["events"] == {"burst": 350, "steady": 3500}


async def test_reset_forgets_everything(client: httpx.AsyncClient) -> None:
    await create(client, email="a@b.co")
    await client.post("/api/events", json=event_body({"$email": "a@b.co"}))
    await client.post(
        "/api/profile-subscription-bulk-create-jobs",
        json=subscription_body("L1", {"email": "a@b.co"}),
    )
    await client.post("/__emulator/faults", json={"status": 500, "count": 5, "path": "/api/lists"})

    assert (await client.post("/__emulator/reset")).status_code == 204

    state = (await client.get("/__emulator/state")).json()
    assert (state["profiles"], state["events"], state["lists"]) == ([], [], {})
    assert state["faults"] == {"latency_ms": 0, "queued": [], "random": None}
    assert (await client.get("/__emulator/requests")).json()["requests"] == []
    assert (
        await client.post("/api/profiles", json=profile_body(email="a@b.co"))
    ).status_code == 201


async def test_seeded_ids_are_reproducible(clock: FakeClock) -> None:
    ids = []
    for _ in range(2):
        async with connect(create_emulator(EmulatorStore(clock=clock, seed=1)), HEADERS) as client:
            ids.append([await create(client, external_id=str(i)) for i in range(3)])

    assert ids[0] == ids[1]
    assert len(set(ids[0])) == 3
    assert all(i.startswith("01HF7YAT7T") for i in ids[0])  # 1_700_000_000_250 ms in base32


async def test_unknown_api_path_is_a_klaviyo_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/profile-subscription-bulk-delete-jobs", json={})

    assert (await only_error(response, 404))["code"] == "not_found"
