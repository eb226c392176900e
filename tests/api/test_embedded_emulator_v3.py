"""The embedded emulator as ``make run`` builds it, at ``KLAVIYO_API_VERSION=v3``: what
``/v1/events`` delivers shows in its state page in the newer shape, and what rudder-server
delivers to its ``/emulator`` mount passes the emulator's gate as on its own port (recorded,
authenticated as Klaviyo does, rate-limited), behind the webhook token when one is set.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from pydantic import SecretStr

from klaviyo_destination.cli import _embedded_app
from klaviyo_destination.settings import Settings
from tests.helpers.apps import served, served_way

pytestmark = pytest.mark.anyio

EXAMPLES: Final = Path(__file__).resolve().parents[2] / "examples"
TOKEN: Final = "embedded-token-0123456789"
V3: Final = {"revision": "2026-04-15", "Content-Type": "application/json"}
PROFILE: Final = {
    "data": {"type": "profile", "attributes": {"email": "rs@example.com"}, "meta": {}}
}


@contextlib.asynccontextmanager
async def embedded(way: str, token: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(klaviyo_api_version="v3", webhook_token=SecretStr(token) if token else None)
    banner = io.StringIO()
    with contextlib.redirect_stdout(banner):
        app = _embedded_app(settings, "127.0.0.1", 8080)
    assert "emulator at revision 2026-04-15 (KLAVIYO_API_VERSION=v3)" in banner.getvalue()
    async with served(served_way(way, app, settings)) as client:
        yield client


async def test_the_readme_samples_show_in_the_state_page_in_the_v3_shape(way: str) -> None:
    async with embedded(way) as client:
        for name in ("identify", "track", "screen", "group", "identify"):
            sample: Any = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
            answer = await client.post("/v1/events", json=sample)
            assert answer.status_code == 200, answer.text
        statuses = [r["status"] for r in answer.json()["results"][0]["requests"]]
        assert statuses == [200, 202]  # the second identify: the upsert updated
        state = (await client.get("/emulator/__emulator/state")).json()
        [profile] = state["profiles"]
        assert state["consent"]["XUepkK"][profile["id"]]["email"]["consent"] == "SUBSCRIBED"
        assert len(state["events"]) == 2
        recorded = (await client.get("/emulator/__emulator/requests")).json()["requests"]
        assert {r["headers"]["revision"] for r in recorded} == {"2026-04-15"}
        assert recorded[0]["path"] == "/api/profile-import"


async def test_what_reaches_the_mount_is_recorded_authenticated_and_rate_limited(
    way: str,
) -> None:
    async with embedded(way) as client:
        key = {**V3, "Authorization": "Klaviyo-API-Key pk_rudder"}
        created = await client.post("/emulator/api/profile-import", json=PROFILE, headers=key)
        assert created.status_code == 201, created.text
        [entry] = (await client.get("/emulator/__emulator/requests")).json()["requests"]
        assert (entry["path"], entry["status"]) == ("/api/profile-import", 201)
        assert entry["headers"]["authorization"] == "Klaviyo-API-Key ***"
        assert created.headers["RateLimit-Limit"] == "750"  # v3's steady tier

        bearer = {**V3, "Authorization": "Bearer pk_rudder"}
        refused = await client.post("/emulator/api/profile-import", json=PROFILE, headers=bearer)
        assert refused.status_code == 401
        assert refused.json()["errors"][0]["code"] == "not_authenticated"

        limits = {"limits": {"profile_import": {"burst": 1, "steady": 100}}}
        assert (await client.post("/emulator/__emulator/rate-limits", json=limits)).is_success
        # The emulator's windows start on the clock's whole seconds, as Klaviyo's may: two
        # requests can straddle one (a loaded machine makes that likely), so the burst of 1 is
        # shown by the first pair that shares a second, within a few tries.
        statuses: list[int] = []
        for _ in range(5):
            throttled = await client.post("/emulator/api/profile-import", json=PROFILE, headers=key)
            statuses.append(throttled.status_code)
            if throttled.status_code == 429:
                break
        assert statuses[-1] == 429, statuses
        assert set(statuses[:-1]) <= {200}, statuses  # the profile exists: updated, not created
        assert throttled.headers["Retry-After"] == "1"


async def test_behind_the_token_the_mount_takes_it_either_way(way: str) -> None:
    async with embedded(way, TOKEN) as client:
        for scheme in ("Bearer", "Klaviyo-API-Key"):
            headers = {**V3, "Authorization": f"{scheme} {TOKEN}"}
            created = await client.post(
                "/emulator/api/profile-import", json=PROFILE, headers=headers
            )
            assert created.status_code in (200, 201), created.text
        wrong = {**V3, "Authorization": "Klaviyo-API-Key pk_other"}
        assert (
            await client.post("/emulator/api/profile-import", json=PROFILE, headers=wrong)
        ).status_code == 401
        token = {"Authorization": f"Bearer {TOKEN}"}
        recorded = (await client.get("/emulator/__emulator/requests", headers=token)).json()
        assert [r["status"] for r in recorded["requests"]] == [201, 200]
        assert TOKEN not in json.dumps(recorded)
