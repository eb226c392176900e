"""The only part that talks to Klaviyo: the pool, sessions, retries, limits and outcomes.

The names below load on first use (PEP 562 ``__getattr__``), so importing ``klaviyo.facts``
(Klaviyo's facts, which the settings, the planned requests and the emulator read) runs no
client code: no httpx, no stamina, and no import cycle through ``planned``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .answers import KlaviyoAnswer, SentRequest
    from .batch import Outcome
    from .client import KlaviyoClient
    from .facts import klaviyo_headers
    from .metrics import DeliveryMetrics
    from .session import KlaviyoSession

__all__ = [
    "DeliveryMetrics",
    "KlaviyoAnswer",
    "KlaviyoClient",
    "KlaviyoSession",
    "Outcome",
    "SentRequest",
    "klaviyo_headers",
]

#: The module each name above is defined in.
_HOMES: Final = {
    "DeliveryMetrics": "metrics",
    "KlaviyoAnswer": "answers",
    "KlaviyoClient": "client",
    "KlaviyoSession": "session",
    "Outcome": "batch",
    "SentRequest": "answers",
    "klaviyo_headers": "facts",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(f".{home}", __name__), name)
