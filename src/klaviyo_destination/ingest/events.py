"""Inbound models: RudderStack events (identify, track, screen, group), typed for the mapping.

Only what the mapping reads is typed and checked; unknown fields are kept (``extra="allow"``),
because RudderStack sends many. ``traits``, ``properties`` and ``context`` stay JSON objects:
the mapping reads them with the reference's path semantics (``mapping/paths.py``,
docs/mapping.md §1).
"""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
)

from ..js import JsonObject


def _scalar(value: Any) -> Any:
    if isinstance(value, dict | list):
        raise ValueError("must be a string or a number, not an object or array")
    return value


#: An identifier RudderStack may send as a string or a number; objects and arrays are refused.
Scalar = Annotated[Any, AfterValidator(_scalar)]


class Model(BaseModel):
    """Frozen, camelCase-aliased, and keeping the fields it does not name."""

    model_config = ConfigDict(
        extra="allow", frozen=True, validate_by_name=True, validate_by_alias=True
    )


class RudderEvent(Model):
    """The fields of RudderStack's event spec that the Klaviyo mapping reads."""

    type: str
    user_id: Scalar | None = Field(default=None, alias="userId")
    anonymous_id: Scalar | None = Field(default=None, alias="anonymousId")
    message_id: Scalar | None = Field(default=None, alias="messageId")
    timestamp: Any = None
    traits: JsonObject | None = None
    context: JsonObject | None = None
    properties: JsonObject | None = None
    integrations: JsonObject | None = None
    #: the JSON object this event was parsed from, untouched (``type`` in its original case)
    _received: JsonObject = PrivateAttr(default_factory=dict)

    @classmethod
    def parse(cls, data: JsonObject) -> Self:
        """Validate ``data`` and keep it as :attr:`received` (a reference, not a copy: nothing
        mutates an event). Not a wrap validator: that costs a Python call per event."""
        event = cls.model_validate(data)
        event._received = data
        return event

    @property
    def received(self) -> JsonObject:
        """The event exactly as it arrived: what a resend repeats (its ``unique_id``, §8.7)."""
        return self._received

    @field_validator("type", mode="before")
    @classmethod
    def _lower_type(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("context")
    @classmethod
    def _context_shape(cls, value: JsonObject | None) -> JsonObject | None:
        if value is not None:
            if value.get("traits") is not None and not isinstance(value["traits"], dict):
                raise ValueError("context.traits must be a JSON object")
            if value.get("externalId") is not None and not isinstance(value["externalId"], list):
                raise ValueError("context.externalId must be a JSON array")
        return value

    @property
    def context_traits(self) -> JsonObject | None:
        traits = (self.context or {}).get("traits")
        return traits if isinstance(traits, dict) else None

    @cached_property
    def roots(self) -> dict[str, Any]:
        """The top-level values lookup paths start from (``traits`` in ``traits.email``).

        ``context.traits`` is offered as a root of its own when no key of ``context`` contains
        a dot, because only then is it certain that a path into it cannot match a dotted key.
        """
        roots = {name: getattr(self, attribute, None) for name, attribute in _ROOTS.items()}
        context = self.context
        if context is not None and not any("." in key for key in context):
            roots["context.traits"] = self.context_traits
        return roots

    def root(self, name: str) -> Any:
        return self.roots.get(name)


class Identify(RudderEvent):
    type: Literal["identify"]


class Track(RudderEvent):
    type: Literal["track"]
    event: Any = None


class Screen(RudderEvent):
    type: Literal["screen"]
    event: Any = None
    name: Any = None


class Group(RudderEvent):
    type: Literal["group"]
    group_id: Scalar | None = Field(default=None, alias="groupId")


Event = Identify | Track | Screen | Group

_ROOTS: Final = {
    "userId": "user_id",
    "anonymousId": "anonymous_id",
    "traits": "traits",
    "context": "context",
    "properties": "properties",
    "event": "event",
}
