"""Sends planned requests to Klaviyo: auth, revision, timeouts, limits, retries, 409 → PATCH.

One :class:`KlaviyoClient` per app (the lifespan opens and closes it). Retries come from
stamina with a backoff hook: it retries transport errors, 408, 429, 5xx and HTML 403s (a proxy
or Cloudflare page, not Klaviyo), never another 4xx. The hook returns the wait itself, so
``Retry-After`` (or the "Expected available in N seconds" of a 429 without it) is honoured,
other waits get full jitter, and no wait runs past the delivery deadline: when Klaviyo asks
for longer than is left, the client gives up at once with ``retry_after``, so the caller
(rudder-server waits 10 s per request) gets a 429 in time instead of timing out and re-sending.

Deadlines are absolute ``time.monotonic()`` instants; ``deliver`` gives each event
``settings.delivery_deadline`` seconds and ``deliver_batch`` gives that to the whole batch,
because the caller waits for the whole response.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import httpx
import orjson
import stamina
from pydantic import SecretStr

from .batch_delivery import Batch
from .errors import (
    ConfigurationError,
    KlaviyoError,
    KlaviyoProfileConflict,
    KlaviyoUnavailable,
    klaviyo_errors,
    klaviyo_rejection,
    redact,
    redact_json,
)
from .klaviyo import (
    REVISION,
    Endpoint,
    JsonObject,
    PlannedRequest,
    auth_headers,
    create_profile,
    patch_profile,
)
from .metrics import DeliveryMetrics
from .outcomes import EventPlan, Outcome, SentRequest
from .profile_lookup import created_id, duplicate_id
from .ratelimit import RateLimited, RateLimiter, retry_after
from .settings import Settings

logger = logging.getLogger(__name__)

#: Retry-After to suggest when a delivery ran out of time while Klaviyo was throttling.
DEFAULT_THROTTLE_WAIT = 1
# Klaviyo's "Expected available in 0 seconds" still means "not this instant".
_MIN_SERVER_WAIT = 0.1
_IDENTIFIERS = ("email", "phone_number", "external_id")
_SOCKET_ERRORS = {
    "ECONNREFUSED": (500, "[ECONNREFUSED] :: Connection refused"),
    "ECONNRESET": (500, "[ECONNRESET] :: Connection reset by peer"),
    "ETIMEDOUT": (500, "[ETIMEDOUT] :: Operation timed out"),
    "EAI_AGAIN": (500, "[EAI_AGAIN] :: Temporary failure in name resolution"),
    "ECONNABORTED": (500, "[ECONNABORTED] :: Connection aborted"),
    "ENOTFOUND": (400, "[ENOTFOUND] :: DNS lookup failed"),
}


#: The four headers of every Klaviyo call (one definition, shared with the dry run).
headers = auth_headers


class KlaviyoClient:
    """The process's one connection pool to Klaviyo, with limits, retries and metrics."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        metrics: DeliveryMetrics | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else DeliveryMetrics()
        self.limits = (
            rate_limiter if rate_limiter is not None else RateLimiter.from_settings(settings)
        )
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._connections = asyncio.Semaphore(settings.max_connections)

    async def __aenter__(self) -> Self:
        s = self.settings
        self._http = httpx.AsyncClient(
            base_url=s.klaviyo_base_url,
            timeout=httpx.Timeout(
                connect=s.connect_timeout,
                read=s.read_timeout,
                write=s.write_timeout,
                pool=s.pool_timeout,
            ),
            limits=httpx.Limits(
                max_connections=s.max_connections,
                max_keepalive_connections=s.max_keepalive_connections,
            ),
            headers={
                "revision": REVISION,
                "accept": "application/json",
                "content-type": "application/json",
            },
            transport=self._transport,
            # The reference's HTTP client follows up to 5 redirects; httpx drops
            # Authorization on a cross-origin one.
            follow_redirects=True,
            max_redirects=5,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    @property
    def is_open(self) -> bool:
        """Between ``__aenter__`` and ``__aexit__`` (the health check reads it)."""
        return self._http is not None and not self._http.is_closed

    # --- one request -------------------------------------------------------------------------

    async def send(
        self,
        request: PlannedRequest,
        *,
        api_key: SecretStr | None = None,
        deadline: float | None = None,
    ) -> httpx.Response:
        """One logical request with retries; 2xx (or a 409 of an upsert) comes back, else raises.

        Raises :class:`KlaviyoRejected` for permanent answers and :class:`KlaviyoUnavailable`
        when retries or the deadline (a ``time.monotonic()`` instant) ran out.
        """
        key = self._key(api_key)
        if deadline is None:
            deadline = time.monotonic() + self.settings.delivery_deadline
        response = await self._exchange(request, key, deadline)
        if response.is_success or (request.upsert and response.status_code == 409):
            return response
        raise klaviyo_rejection(response.status_code, _body(response), secret=key)

    async def create_profile_once(self, body: JsonObject, *, api_key: SecretStr) -> tuple[int, Any]:
        """The rudder-server protocol's inline create call: one try, ``(status, body)`` (§6.7).

        No retries here because rudder-server retries the whole job; still rate-limited.
        """
        request = create_profile(body)
        limiter = self.limits[request.endpoint]
        try:
            async with limiter.slot(max_wait=self.settings.delivery_deadline), self._connections:
                response = await self._request(request, api_key)
        except RateLimited as exc:
            detail = f"Client-side rate limit. Expected available in {exc.wait:.0f} seconds."
            return 429, {"errors": [{"status": 429, "code": "throttled", "detail": detail}]}
        except httpx.TransportError as exc:
            return _socket_error(exc)
        # Returned into the protocol's error messages: a key Klaviyo echoes must not be in them.
        body_out = redact_json(_body(response), api_key)
        self._note_throttle(request, response, body_out)
        return response.status_code or 500, "" if body_out in (None, "", False, 0) else body_out

    async def _request(self, request: PlannedRequest, key: SecretStr) -> httpx.Response:
        if self._http is None:
            msg = "KlaviyoClient is not open: use `async with KlaviyoClient(...)`"
            raise RuntimeError(msg)
        endpoint = request.endpoint
        with self.metrics.timed(endpoint.value):
            try:
                response = await self._http.request(
                    request.method,
                    request.path,
                    content=orjson.dumps(request.body),
                    headers={"Authorization": f"Klaviyo-API-Key {key.get_secret_value()}"},
                )
            except httpx.TransportError as exc:
                self.metrics.answered(endpoint.value, type(exc).__name__)
                raise
        self.metrics.answered(endpoint.value, response.status_code)
        self.limits[endpoint].observe(response.headers)
        logger.debug("klaviyo %s %s -> %d", request.method, request.path, response.status_code)
        return response

    async def _attempt(
        self, request: PlannedRequest, key: SecretStr, deadline: float
    ) -> httpx.Response:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        # The rate-limit slot spans the whole exchange (so a late departure cannot crowd one of
        # Klaviyo's windows); the connection semaphore keeps requests from queueing inside
        # httpcore's pool, whose bookkeeping grows with its queue.
        limiter = self.limits[request.endpoint]
        try:
            async with (
                asyncio.timeout(remaining),
                limiter.slot(max_wait=remaining),
                self._connections,
            ):
                response = await self._request(request, key)
        except RateLimited as exc:
            raise KlaviyoUnavailable(
                f"client-side rate limit for {request.endpoint.value}",
                retry_after=exc.wait,
                throttled=True,
            ) from None
        body = _body(response)
        self._note_throttle(request, response, body)
        if (error := _transient(response, body, key)) is not None:
            raise error
        return response

    async def _exchange(
        self, request: PlannedRequest, key: SecretStr, deadline: float
    ) -> httpx.Response:
        """Retries until a final answer; raises :class:`KlaviyoUnavailable` when out of budget."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._out_of_time(request, None, "delivery deadline reached before sending")
        hook = _RetryHook(self, request.endpoint, deadline)
        s = self.settings
        try:
            async for attempt in stamina.retry_context(
                on=hook,
                attempts=s.max_attempts,
                timeout=remaining,
                wait_initial=s.backoff_initial,
                wait_max=s.backoff_max,
                wait_jitter=s.backoff_initial,
            ):
                with attempt:
                    return await self._attempt(request, key, deadline)
        except httpx.TransportError as exc:
            raise KlaviyoUnavailable(f"Klaviyo unreachable: {_socket_error(exc)[1]}") from None
        except TimeoutError:
            raise self._out_of_time(
                request, hook.last_unavailable, "delivery deadline reached waiting for Klaviyo"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _out_of_time(
        self, request: PlannedRequest, last: KlaviyoUnavailable | None, message: str
    ) -> KlaviyoUnavailable:
        """The deadline ran out. Still a throttle if rate limits were the reason (Klaviyo's
        429s during this delivery's time, or our limiter holding the endpoint): callers retry
        429 far longer than 5xx."""
        limited = self.limits[request.endpoint].throttling()
        if limited is None and self.limits.held_within(self.settings.delivery_deadline):
            limited = float(DEFAULT_THROTTLE_WAIT)
        if last is not None and last.throttled:
            return KlaviyoUnavailable(
                f"{message} (throttled)",
                retry_after=last.retry_after or limited,
                throttled=True,
                klaviyo_status=last.klaviyo_status,
            )
        if limited is not None:
            return KlaviyoUnavailable(
                f"{message} (rate limited)", retry_after=limited, throttled=True
            )
        return KlaviyoUnavailable(message, klaviyo_status=last.klaviyo_status if last else None)

    def _note_throttle(self, request: PlannedRequest, response: httpx.Response, body: Any) -> None:
        wait = retry_after(response.headers, body) if response.status_code == 429 else None
        if wait is not None:
            # Concurrent deliveries to this endpoint wait too, instead of earning more 429s.
            self.limits[request.endpoint].hold(wait)

    # --- one event ---------------------------------------------------------------------------

    async def deliver(
        self, requests: Sequence[PlannedRequest], *, api_key: SecretStr | None = None
    ) -> Outcome:
        """One event's requests in order, stopping at the first failure; never raises for them."""
        sent: list[SentRequest] = []
        try:
            key = self._key(api_key)
            deadline = time.monotonic() + self.settings.delivery_deadline
            for request in requests:
                await self.run_one(request, key, deadline, sent)
        except (KlaviyoError, ConfigurationError) as exc:
            return Outcome.of(exc, sent)
        return Outcome("delivered", sent)

    async def deliver_batch(
        self, events: Sequence[EventPlan], *, api_key: SecretStr | None = None
    ) -> list[Outcome]:
        """Several events: one outcome per event, in input order (see ``batch_delivery.Batch``)."""
        try:
            key = self._key(api_key)
        except ConfigurationError as exc:
            return [Outcome.of(event.error or exc, []) for event in events]
        deadline = time.monotonic() + self.settings.delivery_deadline
        return await Batch(self, events, key, deadline).run()

    async def run_one(
        self, request: PlannedRequest, key: SecretStr, deadline: float, sent: list[SentRequest]
    ) -> None:
        response = await self._recorded(request, key, deadline, sent)
        if request.upsert:
            follow_up = _upsert_follow_up(request, response, key)
            if follow_up is not None:
                patched = await self._recorded(follow_up, key, deadline, sent)
                if patched.status_code == 409:
                    raise _conflict(request, patched, key)
                response = patched
        if not response.is_success:
            raise klaviyo_rejection(response.status_code, _body(response), secret=key)

    async def _recorded(
        self, request: PlannedRequest, key: SecretStr, deadline: float, sent: list[SentRequest]
    ) -> httpx.Response:
        try:
            response = await self._exchange(request, key, deadline)
        except KlaviyoUnavailable as exc:
            sent.append(SentRequest(request.method, request.path, exc.klaviyo_status))
            raise
        sent.append(SentRequest(request.method, request.path, response.status_code))
        return response

    def _key(self, api_key: SecretStr | None) -> SecretStr:
        key = api_key if api_key is not None else self.settings.klaviyo_private_api_key
        if key is None or not key.get_secret_value():
            msg = "no Klaviyo private API key: set KLAVIYO_PRIVATE_API_KEY or send one"
            raise ConfigurationError(msg, field="privateApiKey")
        return key


class _RetryHook:
    """stamina backoff hook for one logical request: whether to retry, and after how long."""

    def __init__(self, client: KlaviyoClient, endpoint: Endpoint, deadline: float) -> None:
        self._settings = client.settings
        self._metrics = client.metrics
        self._endpoint = endpoint
        self._deadline = deadline
        self._retries = 0
        self.last_unavailable: KlaviyoUnavailable | None = None

    def __call__(self, exc: Exception) -> bool | float:
        wait, reason = self._wait(exc)
        if wait is None:
            return False
        self._retries += 1
        self._metrics.retried(self._endpoint.value, reason)
        logger.info(
            "klaviyo retry scheduled",
            extra={"endpoint": self._endpoint.value, "reason": reason, "retry_wait": wait},
        )
        return wait

    def _wait(self, exc: Exception) -> tuple[float | None, str]:
        remaining = self._deadline - time.monotonic()
        if isinstance(exc, KlaviyoUnavailable):
            self.last_unavailable = exc
            reason = str(exc.klaviyo_status or "rate_limiter")
            if exc.retry_after is not None:
                # Klaviyo named the wait: take it, or stop now if it outlasts the deadline.
                wait = max(exc.retry_after, _MIN_SERVER_WAIT)
                return (wait if wait <= remaining else None), reason
        elif isinstance(exc, httpx.TransportError):
            reason = type(exc).__name__
        else:
            return None, ""
        s = self._settings
        cap = min(s.backoff_max, s.backoff_initial * 2**self._retries)
        # Full jitter spreads the retries of concurrent deliveries after a shared blip.
        wait = random.uniform(0, cap)  # noqa: S311 -- jitter, not cryptography
        return (wait if wait < remaining else None), reason


def _body(response: httpx.Response) -> Any:
    """The answer's JSON, its text when it is not JSON (an HTML page), ``""`` when empty."""
    if not response.content:
        return ""
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text


def _transient(response: httpx.Response, body: Any, key: SecretStr) -> KlaviyoUnavailable | None:
    status = response.status_code
    errors = klaviyo_errors(body, secret=key)
    # A 403 without Klaviyo's JSON:API errors is a proxy or Cloudflare page, not a verdict.
    html_403 = status == 403 and not errors
    if not (status in (408, 429) or status >= 500 or html_403):
        return None
    detail = errors[0]["detail"] if errors and errors[0]["detail"] else None
    if detail is None:
        detail = "a non-JSON page (proxy or Cloudflare challenge)" if html_403 else "no detail"
    return KlaviyoUnavailable(
        redact(f"Klaviyo answered {status}: {detail}", key),
        retry_after=retry_after(response.headers, body),
        throttled=status == 429,
        klaviyo_status=status,
        klaviyo_errors=errors,
    )


def _upsert_follow_up(
    create: PlannedRequest, response: httpx.Response, key: SecretStr
) -> PlannedRequest | None:
    """The PATCH that completes an upsert, or ``None`` when there is nothing to follow up."""
    status, body = response.status_code, _body(response)
    if response.is_success:
        if created_id(status, body) is not None:
            return None
        # The reference retries a create answered without an id; a retry meets 409 → PATCH.
        msg = f"Klaviyo answered {status} to create-profile without data.id"
        raise KlaviyoUnavailable(msg, klaviyo_status=status)
    if status != 409:
        return None
    profile_id = duplicate_id(status, body)
    if profile_id is None:
        raise KlaviyoProfileConflict(
            "Klaviyo answered 409 to create-profile without meta.duplicate_profile_id, so there "
            "is no profile to update; check the email, phone_number and external_id sent",
            klaviyo_status=409,
            klaviyo_errors=klaviyo_errors(body, secret=key),
        )
    return patch_profile(create, profile_id)


def _conflict(create: PlannedRequest, patched: httpx.Response, key: SecretStr) -> KlaviyoError:
    attributes = create.body.get("data", {}).get("attributes", {})
    present = [name for name in _IDENTIFIERS if attributes.get(name)]
    who = " and ".join(present) if len(present) > 1 else "the identifiers of this profile"
    return KlaviyoProfileConflict(
        f"{who} belong to two different Klaviyo profiles; merge those profiles in Klaviyo, "
        "or send only the identifier of the profile to update",
        klaviyo_status=409,
        klaviyo_errors=klaviyo_errors(_body(patched), secret=key),
    )


def _socket_error(exc: httpx.TransportError) -> tuple[int, str]:
    """A transport failure as the reference's ``(status, "[CODE] :: text")`` pair (§6.7)."""
    text = str(exc).lower()
    if isinstance(exc, httpx.ConnectTimeout):
        code = "ETIMEDOUT"
    elif isinstance(exc, httpx.TimeoutException):
        code = "ECONNABORTED"
    elif isinstance(exc, httpx.ConnectError):
        code = "ECONNREFUSED"
        if "temporary failure in name resolution" in text:
            code = "EAI_AGAIN"
        elif any(
            hint in text
            for hint in (
                "name or service not known",
                "nodename nor servname",
                "no address associated",
                "getaddrinfo failed",
            )
        ):
            code = "ENOTFOUND"
    elif isinstance(exc, httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError):
        code = "ECONNRESET"
    else:
        return 400, f"[{type(exc).__name__}]"
    return _SOCKET_ERRORS[code]


__all__ = [
    "EventPlan",
    "KlaviyoClient",
    "Outcome",
    "SentRequest",
    "headers",
]
