"""Inbound events: RudderStack's identify, track, screen and group, typed for the mapping.

Only what the mapping reads is typed and checked (docs/mapping.md §2 step 5); the event as
received is kept whole beside it. ``traits``, ``properties`` and ``context`` stay JSON objects:
the mapping reads them with the reference's path semantics (``mapping/paths.py``, §1).

The checks are written out rather than left to a pydantic model: they are a handful of
``isinstance`` tests, and validating (and copying) every event's whole ``context`` through a
model cost more than the mapping itself at a hundred events a request (bench/optimisations.md).
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, ClassVar, Final, Self, cast

from ..errors import InvalidEvent
from ..js import JSON_CONTAINERS, JsonObject
from ..records import record

_OBJECT_OR_NULL: Final = (dict, type(None))

#: the reasons of §2 step 5, by shape
NOT_SCALAR: Final = "must be a string or a number, not an object or array"
NOT_OBJECT: Final = "must be a JSON object"
CONTEXT_TRAITS_NOT_OBJECT: Final = "context.traits must be a JSON object"
EXTERNAL_ID_NOT_ARRAY: Final = "context.externalId must be a JSON array"


@record(kw_only=True)
class RudderEvent:
    """The fields of RudderStack's event spec that the Klaviyo mapping reads."""

    #: identifiers RudderStack may send as a string or a number (objects and arrays refused)
    SCALARS: ClassVar[tuple[str, ...]] = ("userId", "anonymousId", "messageId")
    OBJECTS: ClassVar[tuple[str, ...]] = ("traits", "context", "properties", "integrations")
    #: the fields a subclass adds: (JSON name, attribute), after the common ones
    OWN: ClassVar[tuple[tuple[str, str], ...]] = ()
    #: the scalars a subclass adds, checked after ``OBJECTS``
    EXTRA_SCALARS: ClassVar[tuple[str, ...]] = ()

    type: str
    user_id: Any = None
    anonymous_id: Any = None
    message_id: Any = None
    timestamp: Any = None
    traits: JsonObject | None = None
    context: JsonObject | None = None
    properties: JsonObject | None = None
    integrations: JsonObject | None = None
    #: the JSON object this event was parsed from, untouched (``type`` in its original case):
    #: what a resend repeats (its ``unique_id``, §8.7). A reference, not a copy: nothing
    #: mutates an event.
    received: JsonObject = field(default_factory=dict, repr=False, compare=False)
    #: the top-level values lookup paths start from (``traits`` in ``traits.email``)
    roots: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "roots", _roots(self))

    @classmethod
    def parse(cls, data: JsonObject) -> Self:
        """The event of ``data`` (whose ``type`` names this class), or ``InvalidEvent``.

        Built slot by slot rather than through the generated ``__init__``: keyword arguments and
        ``__post_init__`` were half of an event's parse (bench/optimisations.md). Built either
        way, an event is equal, roots included (tests/test_fuzz_mapping.py).
        """
        get = data.get
        user_id, anonymous_id, message_id = get("userId"), get("anonymousId"), get("messageId")
        traits, context, properties = get("traits"), get("context"), get("properties")
        integrations = get("integrations")
        if (
            isinstance(user_id, JSON_CONTAINERS)
            or isinstance(anonymous_id, JSON_CONTAINERS)
            or isinstance(message_id, JSON_CONTAINERS)
            or not isinstance(traits, _OBJECT_OR_NULL)
            or not isinstance(context, _OBJECT_OR_NULL)
            or not isinstance(properties, _OBJECT_OR_NULL)
            or not isinstance(integrations, _OBJECT_OR_NULL)
            or (context is not None and _context_problem(context) is not None)
            or (cls.EXTRA_SCALARS and _has_container(data, cls.EXTRA_SCALARS))
        ):
            raise _shape_error(cls, data)
        event: Any = object.__new__(cls)  # Any: frozen to the type checker, plain slots here
        event.type = data["type"].lower()
        event.user_id, event.anonymous_id, event.message_id = user_id, anonymous_id, message_id
        event.timestamp = get("timestamp")
        event.traits, event.context, event.properties = traits, context, properties
        event.integrations = integrations
        event.received = data
        for name, attribute in cls.OWN:
            setattr(event, attribute, get(name))
        event.roots = _roots(event)
        return cast(Self, event)

    @property
    def context_traits(self) -> JsonObject | None:
        traits = (self.context or {}).get("traits")
        return traits if isinstance(traits, dict) else None

    def root(self, name: str) -> Any:
        return self.roots.get(name)


def _roots(event: RudderEvent) -> dict[str, Any]:
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
        "event": getattr(event, "event", None),
    }
    if context is not None and "." not in "".join(context):
        roots["context.traits"] = event.context_traits
    return roots


def _has_container(data: JsonObject, names: tuple[str, ...]) -> bool:
    return any(isinstance(data.get(name), JSON_CONTAINERS) for name in names)


def _context_problem(context: JsonObject) -> str | None:
    if context.get("traits") is not None and not isinstance(context["traits"], dict):
        return CONTEXT_TRAITS_NOT_OBJECT
    if context.get("externalId") is not None and not isinstance(context["externalId"], list):
        return EXTERNAL_ID_NOT_ARRAY
    return None


def _shape_error(cls: type[RudderEvent], data: JsonObject) -> InvalidEvent:
    """The first field, in the order the fields are declared, whose shape is wrong."""
    for name in (*RudderEvent.SCALARS, *RudderEvent.OBJECTS, *cls.EXTRA_SCALARS):
        value = data.get(name)
        if value is None:
            continue
        if name in RudderEvent.OBJECTS:
            reason = NOT_OBJECT if not isinstance(value, dict) else None
            if reason is None and name == "context":
                reason = _context_problem(value)
        else:
            reason = NOT_SCALAR if isinstance(value, JSON_CONTAINERS) else None
        if reason is not None:
            return InvalidEvent(f"Invalid event field {name}: {reason}", field=name)
    raise AssertionError("_shape_error called for a well-formed event")  # pragma: no cover


@record(kw_only=True)
class Identify(RudderEvent):
    pass


@record(kw_only=True)
class Track(RudderEvent):
    OWN: ClassVar[tuple[tuple[str, str], ...]] = (("event", "event"),)

    event: Any = None


@record(kw_only=True)
class Screen(RudderEvent):
    OWN: ClassVar[tuple[tuple[str, str], ...]] = (("event", "event"), ("name", "name"))

    event: Any = None
    name: Any = None


@record(kw_only=True)
class Group(RudderEvent):
    EXTRA_SCALARS: ClassVar[tuple[str, ...]] = ("groupId",)
    OWN: ClassVar[tuple[tuple[str, str], ...]] = (("groupId", "group_id"),)

    group_id: Any = None


Event = Identify | Track | Screen | Group
