"""The emulator over a real loopback socket under uvicorn, including a dropped connection."""

from __future__ import annotations

import httpx
import pytest

from klaviyo_destination.emulator import create_emulator
from tests.emulator.helpers import HEADERS, loopback_server, profile_body

pytestmark = pytest.mark.anyio


def test_over_a_real_socket_including_a_dropped_connection() -> None:
    with (
        loopback_server(create_emulator()) as base_url,
        httpx.Client(base_url=base_url, headers=HEADERS) as client,
    ):
        created = client.post("/api/profiles", json=profile_body(email="a@b.co"))
        client.post("/__emulator/faults", json={"drop_connection": True})
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.post("/api/profiles", json=profile_body(email="b@b.co"))
        after = client.get("/api/profiles", params={"filter": 'equals(email,"b@b.co")'})

    assert created.status_code == 201
    assert created.headers["content-type"] == "application/vnd.api+json"
    assert (after.status_code, after.json()["data"]) == (200, [])
