"""Masking secrets (the Klaviyo key, the webhook token) in text and in parsed JSON.

Secrets travel as ``SecretStr``; these helpers are for text that comes from elsewhere, such as
an answer of Klaviyo that echoes the key back, before it reaches a caller or a log line. Besides
the known secrets, anything that reads as the value of an ``Authorization`` header is masked
too: Klaviyo may echo the header (``Klaviyo-API-Key pk_...``) of a key this process does not
hold, such as a rudder-server job's.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

MASK: Final = "**********"

_CREDENTIAL: Final = r"[A-Za-z0-9._~+/=\-]"
#: After the header's name ("Authorization: x", "'authorization': 'Bearer x'"), the value;
#: not a placeholder such as "<WEBHOOK_TOKEN>" in the service's own advice.
_AFTER_NAME: Final = re.compile(
    r"(?i)(\bauthorization[\"']?\s*[:=]\s*[\"']?(?:(?:klaviyo-api-key|bearer|basic)\s+)?)"
    r"([^\s\"',;)}\]]+)"
)
#: After Klaviyo's scheme, the key; after Bearer or Basic, a word that reads as a credential
#: (8 or more characters, not only letters), so that prose such as "Basic authentication" stays.
_AFTER_SCHEME: Final = re.compile(
    rf"(?i)(\bklaviyo-api-key\s+){_CREDENTIAL}+"
    rf"|(\b(?:bearer|basic)\s+)(?={_CREDENTIAL}*[0-9._~+/=\-]){_CREDENTIAL}{{8,}}"
)


def mask_authorization(text: str) -> str:
    """``text`` with every value of an ``Authorization`` header in it masked."""
    lowered = text.lower()  # once, not once a hint: this runs on every log line
    if not (
        "authorization" in lowered
        or "klaviyo-api-key" in lowered
        or "bearer" in lowered
        or "basic" in lowered
    ):
        return text
    text = _AFTER_SCHEME.sub(lambda m: (m[1] or m[2]) + MASK, text)
    return _AFTER_NAME.sub(lambda m: m[0] if m[2].startswith("<") else m[1] + MASK, text)


def redact(text: str, secret: SecretStr | None) -> str:
    """``text`` with the secret's value, and any Authorization value, masked."""
    value = secret.get_secret_value() if secret is not None else ""
    return mask_authorization(text.replace(value, MASK) if value else text)


def redact_json(value: Any, secret: SecretStr | None) -> Any:
    """A parsed JSON value with :func:`redact` applied to every string, keys included."""
    if isinstance(value, str):
        return redact(value, secret)
    if isinstance(value, dict):
        return {redact(str(k), secret): redact_json(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_json(item, secret) for item in value]
    return value


def without_credentials(url: str) -> str:
    """``url`` with any ``user:password@`` masked, for a banner or a log line: a proxy in
    front of Klaviyo or rudder-transformer may take its credentials in the URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{MASK}@{host}"))
