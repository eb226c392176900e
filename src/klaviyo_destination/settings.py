"""Service settings, read once from the environment by ``create_app`` (never at import).

Where a value comes from, first found wins: arguments to ``Settings(...)``, then the process's
environment, then a ``.env`` file in the working directory, then the defaults below
(pydantic-settings' order). A value that cannot work (a Klaviyo URL that is not http(s), the
compose file's placeholder key aimed at a real Klaviyo) fails start-up, not every event.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, Self
from urllib.parse import urlsplit

import phonenumbers
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .klaviyo.facts import DEFAULT_BASE_URL, REVISIONS, ApiVersion, Revision

#: ``KLAVIYO_BASE_URL``'s word for the in-process emulator.
EMBEDDED: Final = "embedded"
#: docker-compose.yml's stand-in key for its emulator: never to be sent anywhere else.
EMULATOR_PLACEHOLDER_KEY: Final = "emulator-key"


class Settings(BaseSettings):
    """Every knob of the service. Names are the environment variables, upper-cased."""

    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=False,
        extra="ignore",
        env_file=".env",
        env_file_encoding="utf-8",
    )

    # --- destination config for /v1/events and /v1/transform (RudderStack dashboard names) ---
    klaviyo_private_api_key: SecretStr | None = None
    klaviyo_public_api_key: str | None = None
    klaviyo_list_id: str | None = None
    klaviyo_consent: Annotated[list[Literal["email", "sms"]], NoDecode] = Field(
        default_factory=lambda: ["email"]  # type: ignore[arg-type]
    )
    klaviyo_enforce_email_as_primary: bool = False
    klaviyo_flatten_properties: bool = False
    #: the revision /v1/events, the SDK routes and the dry run deliver at (``apiVersion``):
    #: v1 = 2023-02-22 (retired by Klaviyo), v2 = 2024-10-15, v3 = 2026-04-15
    klaviyo_api_version: ApiVersion = ApiVersion.V1
    #: Unset, and no private key either: the embedded emulator (``embedded`` asks for it too).
    klaviyo_base_url: str = DEFAULT_BASE_URL
    #: ISO 3166-1 alpha-2 region of national phone numbers (``phones.py``); unset: no guessing
    default_phone_region: str | None = None

    # --- operation ---
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- inbound ---
    webhook_token: SecretStr | None = None
    host: str | None = None
    port: int = Field(default=8080, ge=1, le=65535)
    enable_rudder_protocol: bool = True
    max_body_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    max_batch_events: int = Field(default=1000, gt=0)
    max_json_depth: int = Field(default=64, gt=0)
    #: the hot routes served by raw ASGI lanes in front of FastAPI (serving/lanes.py); "off":
    #: every request goes FastAPI's whole way (its middleware, tracing), at a cost per request
    serve_lanes: Literal["on", "off"] = "on"
    # --- inbound: the HTTP edge (docs/operations.md, "Running it safely"; api/edge.py and
    # serving/connection.py)
    #: bytes of a request's line and headers; more is refused with 431
    max_header_bytes: int = Field(default=32 * 1024, gt=0)
    #: seconds from connecting (or a request's first byte) to the end of its headers
    header_timeout: float = Field(default=10.0, gt=0)
    #: seconds from the end of the headers to the end of the body
    body_timeout: float = Field(default=10.0, gt=0)
    #: seconds an idle keep-alive connection is kept (uvicorn's timeout_keep_alive)
    keepalive_timeout: int = Field(default=5, ge=1)
    #: open client connections per process; beyond it the oldest idle ones are closed
    max_inbound_connections: int = Field(default=1000, ge=1)
    #: bytes past MAX_BODY_BYTES read and discarded so the sender can read the 413
    max_drain_bytes: int = Field(default=16 * 1024 * 1024, ge=0)
    #: seconds in-flight requests get to finish after SIGTERM (> BODY_TIMEOUT + DELIVERY_DEADLINE)
    shutdown_timeout: int = Field(default=40, ge=1)

    @field_validator("webhook_token", "redis_url", mode="after")
    @classmethod
    def _blank_token_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        # "WEBHOOK_TOKEN=" would otherwise let "Authorization: Bearer " in on every interface.
        return value if value is not None and value.get_secret_value().strip() else None

    # --- the rudder-server front ---
    #: Where every transformer request this service does not serve itself is passed through.
    rudder_transformer_url: str | None = None
    #: seconds for one whole exchange with it: connect, request, the answer's headers and body
    rudder_transformer_timeout: float = Field(default=300.0, gt=0)
    #: bytes of an answer of its read whole here (its /features document); more is a 502.
    #: Passed-through answers are streamed, never held, so this does not limit them.
    rudder_transformer_max_answer_bytes: int = Field(default=1024 * 1024, gt=0)
    #: rudder-server's own transformer takes bodies of up to 200 MB.
    max_protocol_body_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    #: One event larger than this (Klaviyo's ingestion limit) gets its own error output.
    max_event_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    #: A gzip or deflate protocol body is refused once it decodes past this: rudder-server
    #: sends plain JSON, so only other callers compress, and a few KB must not become 200 MB.
    max_protocol_decoded_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    #: Jobs in one processor or router request. rudder-server sends at most its batch size:
    #: Processor.transformBatchSize (100) and Router.noOfJobsToBatchInAWorker (20) by default.
    max_protocol_jobs: int = Field(default=1000, gt=0)
    #: A router job's destination larger than this (as JSON) is echoed in its outputs without
    #: its Config: rudder-server reads only its ids and names there (docs/mapping.md §12).
    max_echoed_destination_bytes: int = Field(default=16 * 1024, gt=0)

    # --- delivery ---
    connect_timeout: float = Field(default=3.0, gt=0)
    read_timeout: float = Field(default=10.0, gt=0)
    write_timeout: float = Field(default=10.0, gt=0)
    pool_timeout: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=100, gt=0)
    #: No longer applies: aiohttp's pool (klaviyo/transport.py) keeps idle connections up to
    #: MAX_CONNECTIONS, 5 s each (docs/architecture.md, "The HTTP client"); still accepted.
    max_keepalive_connections: int = Field(default=20, ge=0)
    max_attempts: int = Field(default=5, ge=1)
    delivery_deadline: float = Field(default=25.0, gt=0)
    backoff_initial: float = Field(default=0.2, gt=0)
    backoff_max: float = Field(default=5.0, gt=0)
    delivery_concurrency: int = Field(default=16, ge=1)
    #: client-side limits; unset: the tier of KLAVIYO_API_VERSION's revision for each endpoint
    #: class (``klaviyo/ratelimit.py``). PROFILES_* covers profile writes and both list jobs.
    profiles_rate_burst: int | None = Field(default=None, ge=1)
    profiles_rate_steady: int | None = Field(default=None, ge=1)
    events_rate_burst: int | None = Field(default=None, ge=1)
    events_rate_steady: int | None = Field(default=None, ge=1)
    # --- delivery: several processes on one Klaviyo account (klaviyo/shared_limits.py) ---
    #: redis://[:password@]host:port/db: every process given the same URL draws on one budget
    #: per account and endpoint class; unset: each process has its own (klaviyo/ratelimit.py)
    redis_url: SecretStr | None = None
    #: seconds one Redis round trip may take; past it (or Redis down) limits turn local
    redis_timeout: float = Field(default=0.25, gt=0)
    #: processes delivering for the account; when the limits are local (no REDIS_URL, or Redis
    #: unreachable) each process takes this share of the budget. Unset: the whole budget
    replicas: int | None = Field(default=None, ge=1)
    # --- delivery: odd answers from Klaviyo ---
    #: An answer body longer than this is not read on: a retryable failure.
    max_answer_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    #: The longest Retry-After honoured; a longer one fails the events with it at once.
    max_retry_after: float = Field(default=60.0, gt=0)

    @property
    def revision(self) -> Revision:
        """The revision ``KLAVIYO_API_VERSION`` names: what the webhook path delivers at."""
        return REVISIONS[self.klaviyo_api_version]

    @property
    def embedded(self) -> bool:
        """Deliver to the in-process emulator: nothing names a Klaviyo to reach."""
        if self.klaviyo_base_url == EMBEDDED:
            return True
        return self.klaviyo_private_api_key is None and "klaviyo_base_url" not in (
            self.model_fields_set
        )

    @field_validator(
        "rudder_transformer_url",
        "profiles_rate_burst",
        "profiles_rate_steady",
        "events_rate_burst",
        "events_rate_steady",
        "replicas",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("klaviyo_base_url", mode="after")
    @classmethod
    def _klaviyo_url(cls, value: str) -> str:
        # A URL that cannot be reached would start "ready" and fail every event with a
        # retryable 503, for ever. The reason never quotes the value: it may hold credentials.
        value = value.strip()
        if value == EMBEDDED:
            return value
        if not _has_host(value, ("http", "https")):
            reason = "must be an http:// or https:// URL with a host (or 'embedded')"
            raise PydanticCustomError("klaviyo_base_url", reason)
        return value

    @field_validator("rudder_transformer_url", mode="after")
    @classmethod
    def _upstream_url(cls, value: str | None) -> str | None:
        # The same trap as KLAVIYO_BASE_URL: every pass-through request would be a 502.
        if value is not None and not _has_host(value.strip(), ("http", "https")):
            reason = "must be an http:// or https:// URL with a host"
            raise PydanticCustomError("rudder_transformer_url", reason)
        return None if value is None else value.strip()

    @field_validator("redis_url", mode="after")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        # Otherwise the limits would quietly stay local for ever, one warning at start-up.
        if value is None:
            return None
        url = value.get_secret_value().strip()
        if urlsplit(url).scheme == "unix" or _has_host(url, ("redis", "rediss")):
            return value
        reason = "must be a redis://, rediss:// or unix:// URL"
        raise PydanticCustomError("redis_url", reason)

    @model_validator(mode="after")
    def _placeholder_key_stays_with_the_emulator(self) -> Self:
        # docker-compose.yml defaults the key to its emulator's placeholder: overriding only
        # KLAVIYO_BASE_URL would send it to a real Klaviyo (or a proxy to one), which is
        # HTTPS. The emulator is plain HTTP, so that is the only scheme the placeholder may use.
        key = self.klaviyo_private_api_key
        if key is None or key.get_secret_value() != EMULATOR_PLACEHOLDER_KEY:
            return self
        if self.klaviyo_base_url == EMBEDDED or urlsplit(self.klaviyo_base_url).scheme == "http":
            return self
        reason = (
            f"KLAVIYO_PRIVATE_API_KEY is the emulator's placeholder ({EMULATOR_PLACEHOLDER_KEY}) "
            "but KLAVIYO_BASE_URL is not a plain-http emulator: set your Klaviyo private key "
            "too, or leave KLAVIYO_BASE_URL to the emulator"
        )
        raise PydanticCustomError("placeholder_key", reason)

    @field_validator("default_phone_region", mode="before")
    @classmethod
    def _region_code(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        region = value.strip().upper()
        if not region:
            return None
        if region not in phonenumbers.SUPPORTED_REGIONS:
            reason = "must be an ISO 3166-1 alpha-2 code libphonenumber knows, such as US or GB"
            raise PydanticCustomError("phone_region", reason)
        return region

    @field_validator("serve_lanes", "klaviyo_api_version", mode="before")
    @classmethod
    def _lower_switch(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("klaviyo_consent", mode="before")
    @classmethod
    def _split_consent(cls, value: object) -> object:
        # The environment gives "email,sms"; code and tests may pass a list.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


def _has_host(url: str, schemes: tuple[str, ...]) -> bool:
    """Whether ``url`` has one of ``schemes``, a host and, if any, a port in range."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:
        return False
    return parts.scheme in schemes and bool(parts.hostname)
