"""Sending with one private key: retries, identify's upsert, batches, the protocol's look-up.

A :class:`KlaviyoSession` binds a key to the app's :class:`KlaviyoClient` once: ``/v1/events``
holds one for the app's life, the rudder-server protocol makes one per job's destination.
Deadlines are absolute ``time.monotonic()`` instants; a batch gets
``settings.delivery_deadline`` seconds as a whole, because its caller waits for all of it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import httpx
import stamina
from pydantic import SecretStr

from ..errors import KlaviyoUnavailable, RateLimited, UnusableAnswer
from ..js import JsonObject
from ..planned import PlannedEvent, PlannedRequest, create_profile
from . import upsert
from .answers import body_of, redirect, rejection, transient, transport_error
from .batch import Batch
from .client import KlaviyoClient
from .facts import klaviyo_headers
from .outcomes import Outcome, SentRequest
from .retry import RetryHook, out_of_time


class KlaviyoSession:
    """The client bound to one private key; the key appears only in the headers built here."""

    def __init__(self, client: KlaviyoClient, api_key: SecretStr) -> None:
        self.client = client
        self._key = api_key
        self._headers = klaviyo_headers(api_key)

    async def deliver_batch(self, events: Sequence[PlannedEvent]) -> list[Outcome]:
        """One outcome per event, in input order (see :class:`Batch`); never raises for them."""
        s = self.client.settings
        deadline = time.monotonic() + s.delivery_deadline
        return await Batch(self, events, deadline, concurrency=s.delivery_concurrency).run()

    async def run_one(
        self, request: PlannedRequest, deadline: float, sent: list[SentRequest]
    ) -> None:
        """One planned request to a final answer (an upsert's PATCH included); raises
        ``KlaviyoRejected`` or ``KlaviyoUnavailable`` when it did not succeed."""
        response = await self._recorded(request, deadline, sent)
        if request.upsert:
            patch = upsert.follow_up(
                request, response.status_code, body_of(response), secret=self._key
            )
            if patch is not None:
                response = await self._recorded(patch, deadline, sent)
                if response.status_code == 409:
                    raise upsert.conflict(request, body_of(response), secret=self._key)
        if not response.is_success:
            raise rejection(response.status_code, body_of(response), secret=self._key)

    async def create_profile_once(self, body: JsonObject) -> httpx.Response:
        """The protocol's inline create call: one try, still rate-limited (no retries, because
        rudder-server retries the whole job). Raises ``RateLimited`` or ``httpx.TransportError``.
        """
        request = create_profile(body)
        async with self.client.slot(request.endpoint, self.client.settings.delivery_deadline):
            response = await self.client.call(request, self._headers)
        self.client.note_throttle(request.endpoint, response, body_of(response))
        if redirected := redirect(response.status_code, response.headers, secret=self._key):
            # rudder-server drops a job answered 3xx but retries a transport error's 500.
            raise UnusableAnswer(redirected.message)
        return response

    async def _recorded(
        self, request: PlannedRequest, deadline: float, sent: list[SentRequest]
    ) -> httpx.Response:
        try:
            response = await self.send(request, deadline)
        except KlaviyoUnavailable as exc:
            sent.append(SentRequest(request.method, request.path, exc.klaviyo_status))
            raise
        sent.append(SentRequest(request.method, request.path, response.status_code))
        return response

    async def send(self, request: PlannedRequest, deadline: float) -> httpx.Response:
        """Retries until a final answer; raises :class:`KlaviyoUnavailable` when out of budget."""
        client, s = self.client, self.client.settings
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self._out_of_time(request, None, "delivery deadline reached before sending")
        hook = RetryHook(s, client.metrics, request.endpoint, deadline)
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
                    return await self._attempt(request, deadline)
        except UnusableAnswer as exc:
            raise KlaviyoUnavailable(f"Klaviyo's answer could not be read: {exc}") from None
        except httpx.TransportError as exc:
            raise KlaviyoUnavailable(f"Klaviyo unreachable: {transport_error(exc)[1]}") from None
        except TimeoutError:
            raise self._out_of_time(
                request, hook.last_unavailable, "delivery deadline reached waiting for Klaviyo"
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, request: PlannedRequest, deadline: float) -> httpx.Response:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        client = self.client
        try:
            async with asyncio.timeout(remaining), client.slot(request.endpoint, remaining):
                response = await client.call(request, self._headers)
        except RateLimited as exc:
            raise KlaviyoUnavailable(
                f"client-side rate limit for {request.endpoint.value}",
                retry_after=exc.wait,
                throttled=True,
            ) from None
        body = body_of(response)
        client.note_throttle(request.endpoint, response, body)
        error = transient(response.status_code, response.headers, body, secret=self._key)
        if error is None:
            error = redirect(response.status_code, response.headers, secret=self._key)
        if error is not None:
            raise error
        return response

    def _out_of_time(
        self, request: PlannedRequest, last: KlaviyoUnavailable | None, message: str
    ) -> KlaviyoUnavailable:
        window = self.client.settings.delivery_deadline
        return out_of_time(self.client.limits, request.endpoint, last, message, window=window)
