"""The destination config (``destination.Config``): model, parsing, version gate.

Its fields are docs/mapping.md §3.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError

from ..errors import ConfigurationError, InvalidEvent
from ..js import JSON_CONTAINERS, js_string
from ..klaviyo.facts import REVISIONS, V1, ApiVersion, Revision
from ..settings import Settings
from .events import NOT_SCALAR


def _scalar(value: Any) -> Any:
    if isinstance(value, JSON_CONTAINERS):
        raise ValueError(NOT_SCALAR)
    return value


#: A value RudderStack may send as a string or a number; objects and arrays are refused.
Scalar = Annotated[Any, AfterValidator(_scalar)]


class DestinationConfig(BaseModel):
    """``destination.Config`` with RudderStack's dashboard names and defaults; frozen, and
    keeping the fields it does not name."""

    model_config = ConfigDict(
        extra="allow", frozen=True, validate_by_name=True, validate_by_alias=True
    )

    private_api_key: SecretStr | None = Field(default=None, alias="privateApiKey")
    public_api_key: str | None = Field(default=None, alias="publicApiKey")
    api_version: Any = Field(default=None, alias="apiVersion")
    list_id: Scalar | None = Field(default=None, alias="listId")
    consent: str | list[Any] | None = None
    # Accepted for compatibility and deliberately unused: see D2 in docs/mapping.md.
    sms_consent: Any = Field(default=None, alias="smsConsent")
    enforce_email_as_primary: bool = Field(default=False, alias="enforceEmailAsPrimary")
    flatten_properties: bool = Field(default=False, alias="flattenProperties")

    @property
    def has_key(self) -> bool:
        return self.private_api_key is not None and bool(self.private_api_key.get_secret_value())


def first_error(exc: ValidationError, prefix: str = "") -> tuple[str, str]:
    """The first problem pydantic found, as ``(dotted field, reason)``."""
    error = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in error["loc"])
    return prefix + field, error["msg"]


def parse_config(config: Mapping[str, Any]) -> DestinationConfig:
    try:
        return DestinationConfig.model_validate(config)
    except ValidationError as exc:
        field, reason = first_error(exc)
        raise ConfigurationError(
            f"Invalid destination config {field}: {reason}", field=field
        ) from None


def from_settings(settings: Settings) -> DestinationConfig:
    """The service's settings as the destination config of ``/v1/events``, the SDK routes and
    the dry run: ``KLAVIYO_API_VERSION`` is its ``apiVersion``, so they map and deliver at that
    revision as the protocol routes do for a destination configured the same way."""
    return DestinationConfig.model_validate(
        {
            "privateApiKey": settings.klaviyo_private_api_key,
            "publicApiKey": settings.klaviyo_public_api_key,
            "apiVersion": settings.klaviyo_api_version.value,
            "listId": settings.klaviyo_list_id,
            "consent": list(settings.klaviyo_consent),
            "enforceEmailAsPrimary": settings.klaviyo_enforce_email_as_primary,
            "flattenProperties": settings.klaviyo_flatten_properties,
        }
    )


#: The ``apiVersion`` values that name a revision (absent or null names v1 too).
_VERSIONS: Final = frozenset(ApiVersion)


def revision_of(config: DestinationConfig) -> Revision:
    """docs/mapping.md §2 step 1 and §16.1: the revision ``apiVersion`` names, as the reference
    reads it: absent or null is v1; ``"v1"``, ``"v2"``, ``"v3"`` name theirs; anything else
    (``""``, ``"V2"``, numbers) is refused with the reference's text and tags."""
    version = config.api_version
    if version is None:
        return V1
    if isinstance(version, str) and version in _VERSIONS:
        return REVISIONS[ApiVersion(version)]
    raise InvalidEvent(f"Unsupported Klaviyo apiVersion: {js_string(version)}", field="apiVersion")
