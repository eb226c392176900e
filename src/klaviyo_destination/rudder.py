"""Inbound models: RudderStack events (identify, track, screen, group) and the destination config.

Only what the mapping reads is typed and checked; unknown fields are kept (``extra="allow"``),
because RudderStack sends many. ``traits``, ``properties`` and ``context`` stay JSON objects:
the mapping reads them with the reference's path semantics (``mapping/paths.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from .errors import ConfigurationError, InvalidEvent, UnsupportedEvent
from .mapping.js import truthy

JsonObject = dict[str, Any]


def _scalar(value: Any) -> Any:
    if isinstance(value, dict | list):
        raise ValueError("must be a string or a number, not an object or array")
    return value


#: An identifier RudderStack may send as a string or a number; objects and arrays are refused.
Scalar = Annotated[Any, AfterValidator(_scalar)]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="allow", frozen=True, validate_by_name=True, validate_by_alias=True
    )


class RudderEvent(_Model):
    """The fields of RudderStack's event spec that the Klaviyo mapping reads."""

    type: str
    user_id: Scalar | None = Field(default=None, alias="userId")
    anonymous_id: Scalar | None = Field(default=None, alias="anonymousId")
    message_id: Scalar | None = Field(default=None, alias="messageId")
    timestamp: Any = None
    original_timestamp: Any = Field(default=None, alias="originalTimestamp")
    sent_at: Any = Field(default=None, alias="sentAt")
    traits: JsonObject | None = None
    context: JsonObject | None = None
    properties: JsonObject | None = None
    integrations: JsonObject | None = None

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
EVENT_MODELS: Final[Mapping[str, type[Event]]] = {
    "identify": Identify,
    "track": Track,
    "screen": Screen,
    "group": Group,
}


class DestinationConfig(_Model):
    """``destination.Config`` with RudderStack's dashboard names and defaults."""

    private_api_key: SecretStr | None = Field(default=None, alias="privateApiKey")
    public_api_key: str | None = Field(default=None, alias="publicApiKey")
    api_version: Any = Field(default=None, alias="apiVersion")
    list_id: Scalar | None = Field(default=None, alias="listId")
    consent: str | list[Any] | None = None
    # Accepted for compatibility and deliberately unused: see decision D2 in the README.
    sms_consent: Any = Field(default=None, alias="smsConsent")
    enforce_email_as_primary: bool = Field(default=False, alias="enforceEmailAsPrimary")
    flatten_properties: bool = Field(default=False, alias="flattenProperties")


def _first_error(exc: ValidationError, prefix: str = "") -> tuple[str, str]:
    error = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in error["loc"])
    return prefix + field, error["msg"]


def parse_config(config: Mapping[str, Any]) -> DestinationConfig:
    try:
        return DestinationConfig.model_validate(config)
    except ValidationError as exc:
        field, reason = _first_error(exc)
        raise ConfigurationError(
            f"Invalid destination config {field}: {reason}", field=field
        ) from None


def check_api_version(config: DestinationConfig) -> None:
    """§2 step 1: only the v1 (2023-02-22) flow exists here."""
    version = config.api_version
    if version is None or version == "v1":
        return
    if version in ("v2", "v3"):
        raise ConfigurationError(
            f"Klaviyo apiVersion {version} is not supported by this service, which implements "
            "revision 2023-02-22 (apiVersion v1)",
            field="apiVersion",
        )
    raise ConfigurationError(f"Unsupported Klaviyo apiVersion: {version}", field="apiVersion")


def event_type_as_sent(message: Mapping[str, Any]) -> Any:
    """§2 step 2: the raw ``type``, or the reference's error when it is not truthy."""
    event_type = message.get("type")
    if not truthy(event_type):
        raise InvalidEvent("Event type is required", field="type")
    return event_type


def parse_event(message: Mapping[str, Any]) -> Event:
    """Validate one event into its typed model (§2 step 4), with the reference's messages."""
    event_type = event_type_as_sent(message)
    lowered = event_type.lower() if isinstance(event_type, str) else str(event_type).lower()
    model = EVENT_MODELS.get(lowered) if isinstance(event_type, str) else None
    if model is None:
        raise UnsupportedEvent(f"Event type {lowered} is not supported", field="type")
    try:
        return model.model_validate(message)
    except ValidationError as exc:
        field, reason = _first_error(exc)
        raise InvalidEvent(f"Invalid event field {field}: {reason}", field=field) from None
