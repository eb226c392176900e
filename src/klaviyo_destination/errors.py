"""The project's error tree.

Every class carries an HTTP-like ``status``, a stable ``code``, RudderStack's stat-tag
``category``/``error_type`` (so the rudder-server protocol can report them) and the offending
``field``. Messages of mapping errors are the reference transformer's exact texts.

    DestinationError
    ├── InvalidEvent            400 dataValidation/instrumentation
    │   └── UnsupportedEvent    400 (an event type this destination does not handle)
    ├── ConfigurationError      400 dataValidation/configuration
    ├── RequestError            the HTTP request as a whole, before any event is read
    │   ├── BadRequest          400 invalid JSON or UTF-8, too deep, wrong shape
    │   ├── Unauthorized        401 missing or wrong webhook token
    │   ├── NotFound            404 an endpoint that is switched off
    │   ├── NotServed           501 not served here, and no RUDDER_TRANSFORMER_URL
    │   ├── UnsupportedEncoding 415 a Content-Encoding other than gzip or deflate
    │   ├── RequestTimeout      408 the body did not arrive within BODY_TIMEOUT
    │   ├── PayloadTooLarge     413 body or batch over its limit
    │   ├── UnsupportedMediaType 415 not JSON, without a token (cross-site forms)
    │   ├── MisdirectedRequest  421 not a loopback Host, without a token (DNS rebinding)
    │   ├── HeadersTooLarge     431 request line and headers over MAX_HEADER_BYTES
    │   └── TooManyConnections  503 MAX_INBOUND_CONNECTIONS reached, none of them idle
    └── KlaviyoError            Klaviyo answered, or could not be reached
        ├── KlaviyoRejected     permanent: 4xx other than 408/429, or an unresolved 409
        │   ├── KlaviyoAuthRejected     401, or 403 with Klaviyo's JSON (key or scope)
        │   ├── KlaviyoRevisionRetired  410: Klaviyo no longer serves revision 2023-02-22
        │   └── KlaviyoProfileConflict  409 that no PATCH can resolve
        └── KlaviyoUnavailable  retryable: 5xx, 408, 429, HTML 403, transport errors, deadline
"""

from __future__ import annotations

from typing import Any, ClassVar


class DestinationError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    category: ClassVar[str] = "transformation"
    error_type: ClassVar[str | None] = None

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    @property
    def http_status(self) -> int:
        """This error's status; the class's, unless the instance carries another (look-ups)."""
        return self.status

    @property
    def error_kind(self) -> str | None:
        """RudderStack's ``statTags.errorType`` for this error."""
        return self.error_type

    def to_dict(self) -> dict[str, Any]:
        """The JSON error object the HTTP API renders: ``{"code", "message", "field"}``."""
        return {"code": self.code, "message": self.message, "field": self.field}


class InvalidEvent(DestinationError):
    status = 400
    code = "invalid_event"
    category = "dataValidation"
    error_type = "instrumentation"


class UnsupportedEvent(InvalidEvent):
    code = "unsupported_event"


class ConfigurationError(DestinationError):
    status = 400
    code = "configuration_error"
    category = "dataValidation"
    error_type = "configuration"


class KlaviyoError(DestinationError):
    """Klaviyo answered with an error, or could not be reached; never carries the API key."""

    category = "network"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        klaviyo_status: int | None = None,
        klaviyo_errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message, field=field)
        self.klaviyo_status = klaviyo_status
        self.klaviyo_errors = klaviyo_errors or []

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["klaviyo_status"] = self.klaviyo_status
        out["klaviyo_errors"] = self.klaviyo_errors
        return out


class KlaviyoRejected(KlaviyoError):
    status = 400
    code = "klaviyo_rejected"
    error_type = "aborted"


class KlaviyoAuthRejected(KlaviyoRejected):
    code = "klaviyo_auth_rejected"
    category = "dataValidation"
    error_type = "configuration"


class KlaviyoRevisionRetired(KlaviyoRejected):
    code = "klaviyo_revision_retired"
    category = "dataValidation"
    error_type = "configuration"


class KlaviyoProfileConflict(KlaviyoRejected):
    code = "klaviyo_profile_conflict"


class KlaviyoUnavailable(KlaviyoError):
    """Retry later: ``retry_after`` is Klaviyo's (or our limiter's) wait when one is known.

    ``throttled`` marks a rate limit (429 from Klaviyo or the client-side limiter): the HTTP
    API answers 429 for those, because rudder-server retries 429 until the job expires but
    gives up on 5xx after 180 minutes.
    """

    status = 503
    code = "klaviyo_unavailable"
    error_type = "retryable"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        throttled: bool = False,
        klaviyo_status: int | None = None,
        klaviyo_errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message, klaviyo_status=klaviyo_status, klaviyo_errors=klaviyo_errors)
        self.retry_after = retry_after
        self.throttled = throttled


class RequestError(DestinationError):
    category = "dataValidation"
    error_type = "instrumentation"


class BadRequest(RequestError):
    status = 400
    code = "invalid_request"


class Unauthorized(RequestError):
    status = 401
    code = "unauthorized"


class NotFound(RequestError):
    status = 404
    code = "not_found"


class NotServed(RequestError):
    """A transformer request this service does not serve and has no upstream for; a 5xx, so
    rudder-server keeps the events and retries while the operator sets one."""

    status = 501
    code = "not_served"


class UnsupportedEncoding(RequestError):
    status = 415
    code = "unsupported_encoding"


class RequestTimeout(RequestError):
    status = 408
    code = "request_timeout"


class PayloadTooLarge(RequestError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(RequestError):
    status = 415
    code = "unsupported_media_type"


class MisdirectedRequest(RequestError):
    status = 421
    code = "misdirected_request"


class HeadersTooLarge(RequestError):
    status = 431
    code = "headers_too_large"


class TooManyConnections(RequestError):
    status = 503
    code = "too_many_connections"
