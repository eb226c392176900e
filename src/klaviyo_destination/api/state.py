"""What the app's lifespan shares with every request: the objects built once per process.

uvicorn (and asgi-lifespan in tests) gives each request a shallow copy of it as
``scope["state"]``; :func:`.exchange.state_of` reads it with these types.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

from ..ingest.config import DestinationConfig
from ..klaviyo import DeliveryMetrics, KlaviyoClient, KlaviyoSession
from ..protocol.front import Front
from ..settings import Settings
from .metrics import EventMetrics, HttpMetrics


class State(TypedDict):
    settings: Settings
    #: the settings as a destination config, built once: for /v1/events and the dry run
    config: DestinationConfig
    klaviyo: KlaviyoClient
    #: the client bound to KLAVIYO_PRIVATE_API_KEY, for /v1/events
    session: KlaviyoSession
    #: the protocol routes' look-up, limits and upstream transformer
    front: Front
    #: in embedded mode, where the emulator is mounted (protocol answers point there)
    emulator_prefix: str | None
    metrics: DeliveryMetrics
    #: the events of /v1/events and the SDK routes, by outcome and reason
    events: EventMetrics
    #: the HTTP routes' metrics: the request log counts with them, and so do the lanes
    http_metrics: HttpMetrics
    #: set on a request's own copy by a protocol route: its error answers carry apiVersion too
    protocol: NotRequired[bool]
