"""In-process emulator of Klaviyo's API at the revisions the ``revision`` header asks for:
2023-02-22, 2024-10-15, 2026-04-15 and 2026-10-15 (``revisions.py``; ``app.create_emulator``)."""

from klaviyo_destination.emulator.app import create_emulator
from klaviyo_destination.emulator.errors import ApiError, DroppedConnection
from klaviyo_destination.emulator.faults import FaultSpec
from klaviyo_destination.emulator.ratelimit import DEFAULT_RATE_LIMITS, EndpointClass, RateLimit
from klaviyo_destination.emulator.store import EmulatorStore, EventOutcome
from klaviyo_destination.klaviyo.facts import REVISION

__all__ = [
    "DEFAULT_RATE_LIMITS",
    "REVISION",
    "ApiError",
    "DroppedConnection",
    "EmulatorStore",
    "EndpointClass",
    "EventOutcome",
    "FaultSpec",
    "RateLimit",
    "create_emulator",
]
