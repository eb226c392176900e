"""Request bodies of revision 2023-02-22, written from the OAS schemas, and their parsing.

Schemas: ``ProfileCreateQuery``, ``ProfilePartialUpdateQuery``, ``EventCreateQuery`` and
``SubscriptionCreateJobCreateQuery`` (``components.schemas`` of Klaviyo's 2023-02-22 OAS).
The OAS declares no ``additionalProperties``, but Klaviyo rejects fields a resource does not
have ("'x' is not a valid field for the resource 'profile'."), so resource objects and their
attributes forbid extras; the free-form ``properties`` and event ``profile`` objects do not.
Nulls are accepted for optional attributes: revision 2023-02-22 made PATCH null a field out.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, Self, TypeVar

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from klaviyo_destination.emulator.errors import (
    ApiError,
    ErrorObject,
    invalid_object,
    invalid_payload,
    unsupported_media_type,
)

EMAIL_DETAIL: Final = "Invalid email address"
PHONE_DETAIL: Final = "Invalid phone number format (Example of a valid format: +12345678901)"
MAX_SUBSCRIPTIONS: Final = 100
MAX_EVENT_PROPERTIES: Final = 300
MAX_NESTING: Final = 10
MAX_ARRAY_ITEMS: Final = 4000
MAX_STRING_BYTES: Final = 100 * 1024

_EMAIL: Final = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")
_PHONE_NOISE: Final = re.compile(r"[\s\-.()]")
_E164: Final = re.compile(r"^\+\d{8,15}$")
_JSON_TYPES: Final = frozenset({"application/json", "application/vnd.api+json"})


def is_email(value: str) -> bool:
    return bool(_EMAIL.match(value))


def normalize_phone(value: str) -> str | None:
    """E.164 form once spaces, dashes, dots and parentheses are removed; ``None`` if not E.164."""
    compact = _PHONE_NOISE.sub("", value)
    return compact if _E164.match(compact) else None


def _email(value: str) -> str:
    if not is_email(value):
        raise PydanticCustomError("invalid_email", EMAIL_DETAIL)
    return value


def _phone(value: str) -> str:
    normalized = normalize_phone(value)
    if normalized is None:
        raise PydanticCustomError("invalid_phone", PHONE_DETAIL)
    return normalized


def _time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise PydanticCustomError("invalid_time", "Event time must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        detail = "Invalid datetime: '{value}'"
        raise PydanticCustomError("invalid_time", detail, {"value": value}) from None
    # Klaviyo truncates event time to the second; naive times are UTC.
    return parsed.replace(microsecond=0, tzinfo=parsed.tzinfo or UTC).astimezone(UTC)


def _event_properties(value: dict[str, Any]) -> dict[str, Any]:
    """The OAS's ingestion limits for event properties (the 5 MB total is left out)."""
    if len(value) > MAX_EVENT_PROPERTIES:
        detail = f"Event properties must not exceed {MAX_EVENT_PROPERTIES} properties."
        raise PydanticCustomError("too_many_properties", detail)
    _check_nested(value, depth=1)
    return value


def _check_nested(value: Any, depth: int) -> None:
    if depth > MAX_NESTING:
        detail = f"Event properties cannot contain more than {MAX_NESTING} nested levels."
        raise PydanticCustomError("too_deep", detail)
    if isinstance(value, str) and len(value.encode()) > MAX_STRING_BYTES:
        raise PydanticCustomError("too_long", "A single string cannot be larger than 100 KB.")
    if isinstance(value, list):
        if len(value) > MAX_ARRAY_ITEMS:
            detail = f"Each array must not exceed {MAX_ARRAY_ITEMS} elements."
            raise PydanticCustomError("too_many_items", detail)
        for item in value:
            _check_nested(item, depth + 1)
    if isinstance(value, dict):
        for item in value.values():
            _check_nested(item, depth + 1)


def _subscriptions(value: list[SubscriptionEntry]) -> list[SubscriptionEntry]:
    if len(value) > MAX_SUBSCRIPTIONS:
        detail = f"A maximum of {MAX_SUBSCRIPTIONS} profiles can be subscribed per request."
        raise PydanticCustomError("too_many", detail)
    return value


M = TypeVar("M", bound=BaseModel)
#: Members pydantic adds to ``loc`` for the branches of a union; not part of the JSON document.
_UNION_TAGS: Final = frozenset({"str", "int", "float"})

Email = Annotated[StrictStr, AfterValidator(_email)]
Phone = Annotated[StrictStr, AfterValidator(_phone)]
Number = StrictInt | StrictFloat


class _Resource(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Location(_Resource):
    address1: StrictStr | None = None
    address2: StrictStr | None = None
    city: StrictStr | None = None
    country: StrictStr | None = None
    latitude: StrictStr | Number | None = None
    longitude: StrictStr | Number | None = None
    region: StrictStr | None = None
    zip: StrictStr | None = None
    timezone: StrictStr | None = None


class ProfileAttributes(_Resource):
    email: Email | None = None
    phone_number: Phone | None = None
    external_id: StrictStr | None = None
    first_name: StrictStr | None = None
    last_name: StrictStr | None = None
    organization: StrictStr | None = None
    title: StrictStr | None = None
    image: StrictStr | None = None
    location: Location | None = None
    properties: dict[str, Any] | None = None


class ProfileUpdateAttributes(ProfileAttributes):
    anonymous_id: StrictStr | None = None


class _ProfileCreateData(_Resource):
    type: Literal["profile"]
    attributes: ProfileAttributes


class ProfileCreateQuery(_Resource):
    data: _ProfileCreateData


class _ProfileUpdateData(_Resource):
    type: Literal["profile"]
    id: StrictStr
    attributes: ProfileUpdateAttributes


class ProfilePartialUpdateQuery(_Resource):
    data: _ProfileUpdateData


class Metric(_Resource):
    name: StrictStr = Field(min_length=1, max_length=127)  # "Must be less than 128 characters"
    service: StrictStr | None = None


class EventAttributes(_Resource):
    profile: dict[str, Any]
    metric: Metric
    properties: Annotated[dict[str, Any], AfterValidator(_event_properties)]
    time: Annotated[datetime, BeforeValidator(_time)] | None = None
    value: Number | None = None
    unique_id: StrictStr | None = None


class _EventData(_Resource):
    type: Literal["event"]
    attributes: EventAttributes


class EventCreateQuery(_Resource):
    data: _EventData


class Channels(_Resource):
    email: list[Literal["MARKETING"]] | None = None
    sms: list[Literal["MARKETING"]] | None = None


class SubscriptionEntry(_Resource):
    email: Email | None = None
    phone_number: Phone | None = None
    profile_id: StrictStr | None = None
    channels: Channels | None = None

    @model_validator(mode="after")
    def _has_identifier(self) -> Self:
        if self.email is None and self.phone_number is None and self.profile_id is None:
            detail = "Each subscription needs an email, a phone_number or a profile_id."
            raise PydanticCustomError("no_identifier", detail)
        return self


class SubscriptionJobAttributes(_Resource):
    list_id: StrictStr = Field(min_length=1)
    custom_source: StrictStr | None = None
    subscriptions: Annotated[list[SubscriptionEntry], AfterValidator(_subscriptions)]


class _SubscriptionJobData(_Resource):
    type: Literal["profile-subscription-bulk-create-job"]
    attributes: SubscriptionJobAttributes


class SubscriptionCreateJobCreateQuery(_Resource):
    data: _SubscriptionJobData


def decode_body(raw: bytes, content_type: str | None) -> dict[str, Any]:
    """One request body as a JSON object, or Klaviyo's 415 or 400 (every revision)."""
    media_type = (content_type or "application/json").split(";")[0].strip().lower()
    if media_type not in _JSON_TYPES:
        raise unsupported_media_type(media_type)
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid_payload() from None
    if not isinstance(document, dict):
        raise invalid_payload()
    return document


def parse_body(model: type[M], raw: bytes, content_type: str | None) -> M:
    """Decode and validate one request body; every problem becomes a Klaviyo 400 (or 415)."""
    document = decode_body(raw, content_type)
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise validation_error(exc, _resource_name(document)) from None


def validation_error(exc: ValidationError, resource: str) -> ApiError:
    """One Klaviyo error object per pydantic error, pointing at the offending member."""
    objects: dict[str, ErrorObject] = {}
    for error in exc.errors(include_url=False):
        location = [str(part) for part in error["loc"] if part not in _UNION_TAGS]
        pointer = "/" + "/".join(location)
        name = location[-1] if location else "data"
        match error["type"]:
            case "missing":
                detail = f"'{name}' is a required field for the resource '{resource}'."
            case "extra_forbidden":
                detail = f"'{name}' is not a valid field for the resource '{resource}'."
                pointer = "/" + "/".join(location[:-1])
            case _:
                detail = error["msg"]
        # A union reports once per branch; one object per member is what a reader wants.
        objects.setdefault("/".join(location), invalid_object(detail, pointer=pointer))
    return ApiError(*objects.values())


def _resource_name(document: dict[str, Any]) -> str:
    data = document.get("data")
    kind = data.get("type") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else "unknown"


def utc_now(clock_seconds: float) -> datetime:
    return datetime.fromtimestamp(clock_seconds, UTC)
