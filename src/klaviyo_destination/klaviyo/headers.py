"""The headers of every Klaviyo call: one builder for the client, the dry run and the protocol."""

from __future__ import annotations

from typing import Final

from pydantic import SecretStr

from ..planned import REVISION

#: What the dry run shows instead of a key.
MASKED: Final = "***"


def klaviyo_headers(api_key: SecretStr | None) -> dict[str, str]:
    """The four headers, spelled as the reference emits them (docs/mapping.md §4).

    ``None`` gives the masked form the dry run shows.
    """
    key = MASKED if api_key is None else api_key.get_secret_value()
    return {
        "Authorization": f"Klaviyo-API-Key {key}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "revision": REVISION,
    }
