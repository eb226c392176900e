"""Emulator auth and revision: 401 for a missing or bad key, configured keys, the answers to a
revision header it cannot serve (``tests/emulator/test_revisions.py`` has the ones it serves)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from klaviyo_destination.emulator import EmulatorStore, create_emulator
from tests.emulator.helpers import (
    HEADERS,
    KEY,
    FakeClock,
    connect,
    only_error,
    profile_body,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "authorization",
    [None, f"Bearer {KEY}", "Klaviyo-API-Key", "Klaviyo-API-Key ", KEY],
    ids=["missing", "bearer", "scheme-only", "empty-key", "no-scheme"],
)
@pytest.mark.parametrize("path", ["/api/profiles", "/api/events", "/api/lists/L1/profiles"])
async def test_missing_or_malformed_key_is_401(
    app: FastAPI, authorization: str | None, path: str
) -> None:
    headers = dict(HEADERS)
    del headers["Authorization"]
    if authorization is not None:
        headers["Authorization"] = authorization
    async with connect(app) as bare:
        response = await bare.get(path, headers=headers)

    assert await only_error(response, 401) == {
        "status": 401,
        "code": "not_authenticated",
        "title": "Authentication credentials were not provided.",
        "detail": "Missing or invalid private key.",
        "source": {"pointer": "/data/"},
        "links": {},
        "meta": {},
    }


async def test_only_configured_keys_are_accepted(clock: FakeClock) -> None:
    async with connect(create_emulator(EmulatorStore(clock=clock, api_keys={KEY}))) as client:
        good = await client.get("/api/profiles", headers=HEADERS)
        bad = await client.get(
            "/api/profiles", headers=HEADERS | {"Authorization": "Klaviyo-API-Key pk_other"}
        )

    assert (good.status_code, bad.status_code) == (200, 401)


@pytest.mark.parametrize(
    ("revision", "status", "detail"),
    [
        (None, 400, "Missing required header 'revision'."),
        ("latest", 400, "Invalid revision 'latest': expected a date like 2023-02-22."),
        ("2027-01-15", 404, "Unable to specify a future revision date."),
        ("2024-07-15", 410, "Revision 2024-07-15 is retired; use a revision from 2025-01-15 on."),
        ("2023-02-21", 410, "Revision 2023-02-21 is retired; use a revision from 2025-01-15 on."),
        ("2024-10-15", 404, "The emulator serves this endpoint at revision 2023-02-22 only, "
                            "not 2024-10-15."),
    ],
    ids=["missing", "malformed", "future", "retired", "before-2023-02-22", "not-modelled"],
)  # fmt: skip
async def test_a_revision_it_cannot_serve_gets_klaviyos_answer(
    app: FastAPI, client: httpx.AsyncClient, revision: str | None, status: int, detail: str
) -> None:
    headers = {k: v for k, v in HEADERS.items() if k != "revision"}
    if revision is not None:
        headers["revision"] = revision
    async with connect(app) as bare:
        response = await bare.post(
            "/api/profiles", json=profile_body(email="a@b.co"), headers=headers
        )

    error = await only_error(response, status)
    assert error["detail"] == detail
    assert error["source"] == {"parameter": "revision"}
    assert (await client.get("/api/profiles")).json()["data"] == []
