"""Sending with one private key: retries, batches, the protocol's look-up; the key masked once.

A :class:`KlaviyoSession` binds a key to the app's :class:`KlaviyoClient` once: ``/v1/events``
holds one for the app's life, the rudder-server protocol makes one per job's destination.
Deadlines are absolute ``time.monotonic()`` instants; a batch gets
``settings.delivery_deadline`` seconds as a whole, because its caller waits for all of it.

The key is masked in one place, where things leave the session: an error raised by
:meth:`KlaviyoSession.run_one` and the answer :meth:`KlaviyoSession.create_profile_once`
returns (Klaviyo may echo the key). What decides on answers (``answers.py``, ``upsert.py``,
``bulk.py``) never sees the key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence

import httpx
from pydantic import SecretStr

from ..errors import KlaviyoError, KlaviyoUnavailable, RateLimited, UnusableAnswer
from ..js import JsonObject
from ..planned import PlannedEvent, PlannedRequest, create_profile
from ..redact import redact, redact_json
from . import upsert
from .answers import KlaviyoAnswer, SentRequest, redirect, rejection, transient, transport_error
from .batch import Batch, Outcome
from .client import KlaviyoClient, RequestHeaders
from .facts import Revision, klaviyo_headers
from .ratelimit import account_of
from .retry import RetryHook, out_of_time


class KlaviyoSession:
    """The client bound to one private key; the key appears only in the headers built here."""

    def __init__(self, client: KlaviyoClient, api_key: SecretStr) -> None:
        self.client = client
        self._key = api_key
        # Hashed only for shared limits: the protocol binds a session per job's destination.
        self._account = account_of(api_key) if client.limits.per_account else ""
        # One set per revision, built on first use: each request carries its own revision.
        self._headers: dict[str, RequestHeaders] = {}

    def _headers_for(self, revision: Revision) -> RequestHeaders:
        """The headers of a request written for ``revision`` (its ``revision`` header)."""
        found = self._headers.get(revision.name)
        if found is None:
            sent = klaviyo_headers(self._key, revision.name)
            found = self._headers[revision.name] = self.client.request_headers(sent)
        return found

    async def deliver_batch(self, events: Sequence[PlannedEvent]) -> list[Outcome]:
        """One outcome per event, in input order (see :class:`Batch`); never raises for them."""
        s = self.client.settings
        deadline = time.monotonic() + s.delivery_deadline
        batch = Batch(self.run_one, events, deadline, concurrency=s.delivery_concurrency)
        return await batch.run()

    async def run_one(
        self, request: PlannedRequest, deadline: float, sent: list[SentRequest]
    ) -> None:
        """One planned request to a final answer (an upsert's PATCH included); raises
        ``KlaviyoRejected`` or ``KlaviyoUnavailable``, the key masked, when it did not succeed."""
        try:
            if request.upsert:
                answer = await upsert.run(self._recorded, request, deadline, sent)
            else:
                answer = await self._recorded(request, deadline, sent)
            if not answer.is_success:
                raise rejection(answer, request.revision)
        except KlaviyoError as error:
            _mask(error, self._key)
            raise

    async def create_profile_once(self, body: JsonObject) -> KlaviyoAnswer:
        """The protocol's inline create call: one try, still rate-limited (no retries, because
        rudder-server retries the whole job). Raises ``RateLimited`` or ``httpx.TransportError``.
        """
        request = create_profile(body)
        client, account = self.client, self._account
        async with client.slot(request.endpoint, client.settings.delivery_deadline, account):
            answer = await client.call(request, self._headers_for(request.revision), account)
        if redirected := redirect(answer):
            # rudder-server drops a job answered 3xx but retries a transport error's 500.
            raise UnusableAnswer(redact(redirected.message, self._key))
        # It goes into the protocol's error messages: a key Klaviyo echoes must not.
        return dataclasses.replace(answer, body=redact_json(answer.body, self._key))

    async def _recorded(
        self, request: PlannedRequest, deadline: float, sent: list[SentRequest]
    ) -> KlaviyoAnswer:
        try:
            answer = await self._send(request, deadline)
        except KlaviyoUnavailable as exc:
            sent.append(SentRequest(request.method, request.path, exc.klaviyo_status))
            raise
        sent.append(SentRequest(request.method, request.path, answer.status))
        return answer

    async def _send(self, request: PlannedRequest, deadline: float) -> KlaviyoAnswer:
        """Retries until a final answer; raises :class:`KlaviyoUnavailable` when out of budget."""
        client = self.client
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._out_of_time(request, None, "delivery deadline reached before sending")
        hook: RetryHook | None = None  # made once a try failed: most requests need none
        try:
            try:
                return await self._attempt(request, deadline)
            except Exception as exc:  # the hook decides on it, in stamina's loop
                first = exc  # retried outside this handler: no failure chained to the next
            hook = RetryHook(client.settings, client.metrics, request.endpoint, deadline)
            return await hook.after_first(first, lambda: self._attempt(request, deadline))
        except UnusableAnswer as exc:
            raise KlaviyoUnavailable(f"Klaviyo's answer could not be read: {exc}") from None
        except httpx.TransportError as exc:
            raise KlaviyoUnavailable(f"Klaviyo unreachable: {transport_error(exc)[1]}") from None
        except TimeoutError:
            last = hook.last_unavailable if hook is not None else None
            raise self._out_of_time(
                request, last, "delivery deadline reached waiting for Klaviyo"
            ) from None

    async def _attempt(self, request: PlannedRequest, deadline: float) -> KlaviyoAnswer:
        """One try under the time left: ``asyncio.timeout`` bounds the slot and the exchange
        (and a try past the deadline does not start: a spent timeout fires only at the first
        suspension, which may come after the request went out)."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        client, account = self.client, self._account
        slot = client.slot(request.endpoint, remaining, account)
        try:
            async with asyncio.timeout(remaining), slot:
                answer = await client.call(request, self._headers_for(request.revision), account)
        except RateLimited as exc:
            raise KlaviyoUnavailable(
                f"client-side rate limit for {request.endpoint.value}",
                retry_after=exc.wait,
                throttled=True,
            ) from None
        error = transient(answer) or redirect(answer)
        if error is not None:
            raise error
        return answer

    def _out_of_time(
        self, request: PlannedRequest, last: KlaviyoUnavailable | None, message: str
    ) -> KlaviyoUnavailable:
        window = self.client.settings.delivery_deadline
        return out_of_time(self.client.limits, request.endpoint, last, message, window=window)


def _mask(error: KlaviyoError, key: SecretStr) -> None:
    """The key, and any ``Authorization`` value, masked in all the error carries from Klaviyo:
    its message, field and errors (any member of which may echo the key)."""
    error.message = redact(error.message, key)
    error.args = (error.message,)
    if error.field is not None:
        error.field = redact(error.field, key)
    error.klaviyo_errors = redact_json(error.klaviyo_errors, key)
