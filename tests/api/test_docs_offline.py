"""The API docs work without internet: every asset of /docs and /redoc (the service's, and the
emulator's mounted on it) comes from the service itself."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from klaviyo_destination.app import create_app
from klaviyo_destination.emulator import create_emulator
from klaviyo_destination.settings import Settings
from tests.helpers.apps import served

ASSET = re.compile(r"""(?:src|href)="([^"]+)"|url: '([^']+)'""")

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    emulator = create_emulator()
    settings = Settings(klaviyo_private_api_key=SecretStr("pk_docs"))
    app = create_app(
        settings, transport=httpx.ASGITransport(emulator), mounts={"/emulator": emulator}
    )
    async with served(app) as c:
        yield c


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/emulator/docs", "/emulator/redoc"])
async def test_every_asset_of_the_docs_is_served_here(client: httpx.AsyncClient, page: str) -> None:
    html = await client.get(page)
    assert html.status_code == 200
    assets = [a or b for a, b in ASSET.findall(html.text)]
    assert len(assets) >= 2, assets  # the page's script and its OpenAPI document, at least
    for asset in assets:
        assert asset.startswith("/"), f"{page} loads {asset} from elsewhere"
        answer = await client.get(asset)
        assert answer.status_code == 200, asset
    assert "googleapis" not in html.text
    assert "cdn." not in html.text
