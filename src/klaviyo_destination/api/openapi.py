"""The OpenAPI document's event bodies, security schemes and tags (``/docs``, schemathesis).

The event routes read their bodies themselves (``ingest``), so FastAPI cannot derive their
schemas: they are generated here from the event models, added to the document's components,
and referenced from each route's ``openapi_extra``. The webhook token is declared as HTTP Bearer
and Basic (``/docs`` gets an Authorize button); ``api/auth.check_token`` enforces it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final

from fastapi import FastAPI
from fastapi.openapi.models import HTTPBase, HTTPBearer
from pydantic import BaseModel, Field, RootModel

from ..ingest import events
from .samples import SAMPLES

_COMPONENTS: Final = "#/components/schemas/{model}"


class Event(RootModel[events.Event]):
    """A RudderStack identify, track, screen or group event (its `type` in any case); fields
    not shown are accepted and ignored."""


class Batch(BaseModel):
    """RudderStack's batch, as its and Segment's SDKs send it (other keys, such as `sentAt`,
    are ignored)."""

    batch: list[Event] = Field(min_length=1)


# ingest.events_of checks this shape, with its own refusals.
class Events(RootModel[Event | Annotated[list[Event], Field(min_length=1)] | Batch]):
    """One event, a JSON array of events, or `{"batch": [...]}`; each event is answered on
    its own."""


def _event_schemas() -> dict[str, Any]:
    schema = Events.model_json_schema(ref_template=_COMPONENTS)
    definitions: dict[str, Any] = schema.pop("$defs", {})
    definitions.setdefault("Events", schema)  # unless pydantic made the body a definition
    return definitions


#: The components the event routes refer to: ``Events`` and what it is made of.
EVENT_SCHEMAS: Final = _event_schemas()
_WHEN_NEEDED: Final = (
    "Needed when WEBHOOK_TOKEN is set; without it the service answers loopback hosts only."
)
SECURITY_SCHEMES: Final = {
    "bearer": HTTPBearer(
        description=f"`Authorization: Bearer <WEBHOOK_TOKEN>`. {_WHEN_NEEDED}"
    ).model_dump(mode="json", by_alias=True, exclude_none=True),
    "basic": HTTPBase(
        scheme="basic",
        description="WEBHOOK_TOKEN as the username (an SDK's write key, with an empty "
        f"password) or as the password. {_WHEN_NEEDED}",
    ).model_dump(mode="json", by_alias=True, exclude_none=True),
}
#: Either scheme will do.
_SECURITY: Final[list[dict[str, list[str]]]] = [{"bearer": []}, {"basic": []}]

EVENTS_TAG: Final = "events"
PROTOCOL_TAG: Final = "rudder-server protocol"
OPERATIONS_TAG: Final = "operations"
TAGS: Final = [
    {"name": EVENTS_TAG, "description": "RudderStack events in, Klaviyo requests out"},
    {
        "name": PROTOCOL_TAG,
        "description": "rudder-server's transformer protocol (private network, no token)",
    },
    {"name": OPERATIONS_TAG, "description": "Liveness, readiness and metrics"},
]


def events_openapi() -> dict[str, Any]:
    """``openapi_extra`` of a route that takes one event, an array, or ``{"batch": [...]}``,
    with the seed's sample events as examples."""
    examples = {
        name: {"summary": f"{name} event", "value": event} for name, event in SAMPLES.items()
    }
    examples["batch"] = {"summary": "a batch", "value": {"batch": list(SAMPLES.values())}}
    schema = {"$ref": _COMPONENTS.format(model="Events")}
    content = {"application/json": {"schema": schema, "examples": examples}}
    return {"requestBody": {"required": True, "content": content}, "security": _SECURITY}


def document_events(app: FastAPI) -> None:
    """Add the event schemas, security schemes and tag descriptions to ``app``'s document
    (FastAPI's "Extending OpenAPI": the document is built once, then cached)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        components = document.setdefault("components", {})
        components.setdefault("schemas", {}).update(EVENT_SCHEMAS)
        components.setdefault("securitySchemes", {}).update(SECURITY_SCHEMES)
        document["tags"] = TAGS
        return document

    app.openapi = openapi  # type: ignore[method-assign]
