"""Masking secrets (the Klaviyo key, the webhook token) in text and in parsed JSON.

Secrets travel as ``SecretStr``; these helpers are for text that comes from elsewhere, such as
an answer of Klaviyo that echoes the key back, before it reaches a caller or a log line.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from pydantic import SecretStr

MASK: Final = "**********"


def redact(text: str, secret: SecretStr | None) -> str:
    """``text`` with the secret's value masked."""
    value = secret.get_secret_value() if secret is not None else ""
    return text.replace(value, MASK) if value else text


def redact_json(value: Any, secret: SecretStr | None) -> Any:
    """A parsed JSON value with the secret masked in every string, keys included."""
    text = secret.get_secret_value() if secret is not None else ""
    if not text:
        return value
    raw = orjson.dumps(value)
    encoded = orjson.dumps(text)[1:-1]  # the secret as it appears inside a JSON string
    return orjson.loads(raw.replace(encoded, MASK.encode())) if encoded in raw else value
