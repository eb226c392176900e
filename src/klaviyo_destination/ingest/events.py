"""Inbound events: RudderStack's identify, track, screen and group, as frozen pydantic models.

Only what the mapping reads is typed and checked (docs/mapping.md §2 step 5); the event as
received is kept whole beside it. ``traits``, ``properties``, ``context`` and ``integrations``
are checked to be JSON objects and kept as received, neither copied nor walked: the mapping
reads them with the reference's path semantics (``mapping/paths.py``, §1), and copying every
event's ``context`` cost more than the checks (bench/optimisations.md).

The models validate Python values that orjson parsed, not bytes: pydantic-core's own JSON
parser reads integers beyond 64 bits exactly and accepts ``NaN``, where orjson (and so the
protocol routes) reads a double and refuses, so one event would map differently by route; it
also measured slower (bench/optimisations.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    InstanceOf,
    ModelWrapValidatorHandler,
    Tag,
    TypeAdapter,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from ..js import JsonObject

#: the reasons of §2 step 5, by shape
NOT_SCALAR: Final = "must be a string or a number, not an object or array"
NOT_OBJECT: Final = "must be a JSON object"
CONTEXT_TRAITS_NOT_OBJECT: Final = "context.traits must be a JSON object"
EXTERNAL_ID_NOT_ARRAY: Final = "context.externalId must be a JSON array"
#: the pydantic error types whose message is the reason itself
OWN_ERRORS: Final = frozenset({"context_traits", "context_external_id"})
#: Top-level fields only the v2/v3 tables read (docs/mapping.md §17.1, §20.1): offered as
#: lookup roots as received, untyped, when the event has them.
EXTRA_ROOTS: Final = ("timestamp", "originalTimestamp", "request_ip", "latitude", "longitude")

#: An identifier RudderStack may send as a string or a number (``true`` passes, as it always
#: has); an object or an array is refused.
Identifier = str | int | float | bool | None
#: A JSON object, checked for its type and kept as it came (``InstanceOf``: no copy).
Object = InstanceOf[dict[str, Any]]


def _context_shape(context: JsonObject) -> JsonObject:
    traits, external_id = context.get("traits"), context.get("externalId")
    if traits is not None and not isinstance(traits, dict):
        raise PydanticCustomError("context_traits", CONTEXT_TRAITS_NOT_OBJECT)
    if external_id is not None and not isinstance(external_id, list):
        raise PydanticCustomError("context_external_id", EXTERNAL_ID_NOT_ARRAY)
    return context


Context = Annotated[
    Object,
    AfterValidator(_context_shape),
    WithJsonSchema(
        {
            "type": "object",
            "properties": {
                "traits": {"anyOf": [{"type": "object"}, {"type": "null"}]},
                "externalId": {"anyOf": [{"type": "array"}, {"type": "null"}]},
            },
        }
    ),
]


class RudderEvent(BaseModel):
    """The fields of RudderStack's event spec that the Klaviyo mapping reads.

    Frozen; any other field of the event stays in :attr:`received`. ``null`` counts as absent.
    """

    model_config = ConfigDict(frozen=True, alias_generator=to_camel)

    type: str = Field(description="the event type, in any case (kept lower-cased)")
    user_id: Identifier = None
    anonymous_id: Identifier = None
    message_id: Identifier = Field(
        default=None, description="Klaviyo's unique_id; without one, a digest of the event"
    )
    timestamp: Any = None
    traits: Object | None = None
    context: Context | None = None
    properties: Object | None = None
    integrations: Object | None = None

    @field_validator("type", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        """RudderStack lower-cases the type before dispatching; the literal must match too."""
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="wrap")
    @classmethod
    def _keep_received(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        event = handler(data)
        if event is not data:
            # Beside the fields, where pydantic keeps a cached_property's value (so not in the
            # schema, a dump or ==); written once, here, and read-only from then on.
            vars(event).update(received=data, roots=_roots(event, data))
        return event

    @property
    def received(self) -> JsonObject:
        """The JSON object this event was validated from, untouched (``type`` in its original
        case): what a resend repeats (its ``unique_id``, §8.7). A reference, not a copy."""
        received: JsonObject = self.__dict__["received"]
        return received

    @property
    def roots(self) -> dict[str, Any]:
        """The top-level values lookup paths start from (``traits`` in ``traits.email``)."""
        roots: dict[str, Any] = self.__dict__["roots"]
        return roots

    @property
    def context_traits(self) -> JsonObject | None:
        traits = (self.context or {}).get("traits")
        return traits if isinstance(traits, dict) else None

    def root(self, name: str) -> Any:
        return self.roots.get(name)

    def copy_with(self, **changes: Any) -> Self:
        """This event with ``changes`` (by attribute name), as the mapping derives one (§6.2):
        not validated again, ``received`` kept, the roots recomputed."""
        event = self.model_copy(update=changes)
        vars(event)["roots"] = _roots(event, self.received)
        return event


def _roots(event: RudderEvent, received: Any) -> dict[str, Any]:
    """The top-level values lookup paths start from. ``context.traits`` is offered as a root of
    its own when no key of ``context`` contains a dot, because only then is it certain that a
    path into it cannot match a dotted key. (No key has a dot exactly when their concatenation
    has none.)
    """
    context = event.context
    roots = {
        "userId": event.user_id,
        "anonymousId": event.anonymous_id,
        "traits": event.traits,
        "context": context,
        "properties": event.properties,
        "event": vars(event).get("event"),  # track's and screen's field; no getattr fallback
    }
    if context is not None and "." not in "".join(context):
        roots["context.traits"] = event.context_traits
    if isinstance(received, dict):
        for name in EXTRA_ROOTS:
            if name in received:
                roots[name] = received[name]
    return roots


class Identify(RudderEvent):
    """Creates or updates the Klaviyo profile, and subscribes it when its traits ask."""

    type: Literal["identify"]


class Track(RudderEvent):
    """Creates a Klaviyo event for the profile."""

    type: Literal["track"]
    event: Any = Field(default=None, description="the metric name")


class Screen(RudderEvent):
    """Creates a Klaviyo event for the profile, as track does."""

    type: Literal["screen"]
    event: Any = Field(default=None, description="the metric name")
    name: Any = Field(default=None, description="the metric name when no other is given")


class Group(RudderEvent):
    """Subscribes the profile to the list named by `groupId`, when `traits.subscribe` is true."""

    type: Literal["group"]
    group_id: Identifier = Field(default=None, description="the Klaviyo list to subscribe to")


def _event_type(value: Any) -> str | None:
    """The lower-cased type that picks the model (a model instance passes as it is)."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind.lower() if isinstance(kind, str) else None


#: Dispatch on the lower-cased ``type``; any other type fails with ``union_tag_invalid`` (or
#: ``union_tag_not_found`` when it is no string), which ``ingest.parse`` words as §2 step 4.
Event = Annotated[
    Annotated[Identify, Tag("identify")]
    | Annotated[Track, Tag("track")]
    | Annotated[Screen, Tag("screen")]
    | Annotated[Group, Tag("group")],
    Discriminator(_event_type),
]
EVENT: Final = TypeAdapter[Event](Event)
#: The fields whose refusal is ``NOT_SCALAR`` (the others are objects), by JSON name.
SCALARS: Final = frozenset({"userId", "anonymousId", "messageId", "groupId"})
