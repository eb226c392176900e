"""The project's error tree: every exception the service defines lives here.

Every ``DestinationError`` states an HTTP-like ``status``, a stable ``code``, whether the caller
may send the same thing again later (``retryable``: rudder-server retries 5xx, 408 and 429),
RudderStack's stat-tag ``category``/``error_type`` (so the rudder-server protocol can report
them) and the offending ``field``. An error that relays another server's status (the
protocol's profile look-up, the upstream transformer) carries that status instead of its
class's. Messages of mapping errors are the reference transformer's exact texts.

    DestinationError
    ├── InvalidEvent              400 dataValidation/instrumentation
    │   ├── UnsupportedEvent      400 (an event type this destination does not handle)
    │   └── EventTooLarge         413 one protocol job over MAX_EVENT_BYTES
    ├── ConfigurationError        400 dataValidation/configuration
    ├── RequestError              the HTTP request as a whole, before any event is read
    │   ├── BadRequest            400 invalid JSON or UTF-8, too deep, wrong shape
    │   ├── Unauthorized          401 missing or wrong webhook token
    │   ├── NotFound              404 an endpoint that is switched off
    │   ├── NotServed             501 not served here, and no RUDDER_TRANSFORMER_URL (retryable)
    │   ├── UnsupportedEncoding   415 a Content-Encoding other than gzip or deflate
    │   ├── RequestTimeout        408 the body did not arrive within BODY_TIMEOUT (retryable)
    │   ├── PayloadTooLarge       413 body or batch over its limit
    │   ├── UnsupportedMediaType  415 not JSON, without a token (cross-site forms)
    │   ├── MisdirectedRequest    421 not a loopback Host, without a token (DNS rebinding)
    │   ├── HeadersTooLarge       431 request line and headers over MAX_HEADER_BYTES
    │   └── TooManyConnections    503 MAX_INBOUND_CONNECTIONS reached, none idle (retryable)
    ├── KlaviyoError              Klaviyo answered, or could not be reached
    │   ├── KlaviyoRejected       400 permanent: 4xx other than 408/429, or an unresolved 409
    │   │   ├── KlaviyoAuthRejected     401, or 403 with Klaviyo's JSON (key or scope)
    │   │   ├── KlaviyoRevisionRetired  410: Klaviyo no longer serves our revision
    │   │   └── KlaviyoProfileConflict  409 that no PATCH can resolve
    │   └── KlaviyoUnavailable    503 retryable: 5xx, 408, 429, HTML 403, transport errors, deadline
    │       ├── KlaviyoRedirected 3xx, not followed: retryable by the caller, not retried here
    │       └── RateLimited       our limiter would wait longer than the caller allows
    ├── ProfileLookupError        the protocol's create-profile call gave no id; Klaviyo's status
    │   ├── ProfileLookupRetryable  5xx network/retryable (a 2xx or 409 without an id: 500)
    │   ├── ProfileLookupThrottled  429 network/throttled
    │   └── ProfileLookupAborted    other 4xx network/aborted
    └── UpstreamError             502 the upstream transformer unreachable, or its answer unusable
        ├── UpstreamTimeout       504 it did not answer in time
        └── UpstreamFailed        its own 5xx, relayed (503 for its 408 or 429)

    httpx.TransportError
    └── UnusableAnswer            Klaviyo's answer came but could not be used

``UnusableAnswer`` is a transport error, not a ``DestinationError``: like a dropped connection
it leaves unknown whether Klaviyo acted, so every path that retries a dropped connection retries
it too (delivery turns it into ``KlaviyoUnavailable``, the protocol's look-up into a 500).
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx


class DestinationError(Exception):
    #: The class's status; an instance relaying another server's answer sets its own.
    status: int = 500
    code: ClassVar[str] = "internal_error"
    #: Whether the same request may succeed later (rudder-server retries 5xx, 408 and 429).
    retryable: ClassVar[bool] = False
    category: ClassVar[str] = "transformation"
    error_type: ClassVar[str | None] = None

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

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


class EventTooLarge(InvalidEvent):
    status = 413
    code = "event_too_large"


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
    retryable = True
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


class KlaviyoRedirected(KlaviyoUnavailable):
    """A 3xx, which is not followed: the key must go nowhere but ``KLAVIYO_BASE_URL``, and
    Klaviyo's API does not redirect, so it comes from a proxy or a wrong base URL. Retryable
    for the caller (the events are fine and deliverable once that is fixed), but not retried
    here: the same request would meet the same redirect."""


class RateLimited(KlaviyoUnavailable):
    """The client-side limiter would have to wait ``wait`` seconds, longer than allowed."""

    def __init__(self, wait: float) -> None:
        message = f"client-side rate limit: next slot in {wait:.3f} s"
        super().__init__(message, retry_after=wait, throttled=True)
        self.wait = wait


class ProfileLookupError(DestinationError):
    """The protocol's create-profile call gave no profile id: the reference's network error,
    with Klaviyo's status; :meth:`of` picks the class of that status's family."""

    code = "profile_lookup_failed"
    category = "network"

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status

    @staticmethod
    def of(status: int, message: str) -> ProfileLookupError:
        if 500 <= status < 600:
            return ProfileLookupRetryable(message, status=status)
        if status == 429:
            return ProfileLookupThrottled(message, status=status)
        return ProfileLookupAborted(message, status=status)


class ProfileLookupRetryable(ProfileLookupError):
    status = 500
    retryable = True
    error_type = "retryable"


class ProfileLookupThrottled(ProfileLookupError):
    status = 429
    retryable = True
    error_type = "throttled"


class ProfileLookupAborted(ProfileLookupError):
    status = 400
    error_type = "aborted"


class UpstreamError(DestinationError):
    """The upstream transformer could not be reached, or its answer could not be used;
    rudder-server retries the request, so nothing it sent is lost while it is away."""

    status = 502
    code = "upstream_unavailable"
    retryable = True
    category = "network"
    error_type = "retryable"


class UpstreamTimeout(UpstreamError):
    status = 504


class UpstreamFailed(UpstreamError):
    """The upstream answered a status rudder-server retries; relayed as a 5xx."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status if status >= 500 else 503


class UnusableAnswer(httpx.TransportError):
    """Klaviyo's answer could not be used: its body did not decode (a corrupt gzip), was over
    ``MAX_ANSWER_BYTES``, or it redirected the protocol's look-up (see the tree above)."""


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
    retryable = True


class UnsupportedEncoding(RequestError):
    status = 415
    code = "unsupported_encoding"


class RequestTimeout(RequestError):
    status = 408
    code = "request_timeout"
    retryable = True


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
    retryable = True
