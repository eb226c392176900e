"""The session (``klaviyo/session.py``): the protocol's inline create call, and the key masked in
everything that leaves the session."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest
import respx
from pydantic import SecretStr

from klaviyo_destination import planned
from klaviyo_destination.errors import KlaviyoRejected, KlaviyoUnavailable
from klaviyo_destination.klaviyo import KlaviyoClient
from klaviyo_destination.protocol import klaviyo_lookup
from tests.klaviyo.helpers import (
    BOTH_IDS_BODY,
    KEY,
    PROFILE_BODY,
    conflict,
    corrupt_gzip,
    deliver,
    error_body,
    event,
    send,
    subscription,
)

pytestmark = pytest.mark.anyio


async def test_create_profile_once_returns_status_and_body(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    router.post("/api/profiles").respond(201, json={"data": {"id": "P1"}})
    assert await klaviyo_lookup(client)(PROFILE_BODY, SecretStr(KEY)) == (
        201,
        {"data": {"id": "P1"}},
    )


async def test_create_profile_once_does_not_retry(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    route = router.post("/api/profiles").respond(503)
    assert await klaviyo_lookup(client)(PROFILE_BODY, SecretStr(KEY)) == (503, "")
    assert route.call_count == 1


REFUSED = (500, "[ECONNREFUSED] :: Connection refused")


NOT_FOUND = (400, "[ENOTFOUND] :: DNS lookup failed")


AGAIN = (500, "[EAI_AGAIN] :: Temporary failure in name resolution")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), REFUSED),
        (httpx.ConnectError("[Errno -2] Name or service not known"), NOT_FOUND),
        (httpx.ConnectError("[Errno -3] Temporary failure in name resolution"), AGAIN),
        (httpx.ConnectTimeout("timed out"), (500, "[ETIMEDOUT] :: Operation timed out")),
        (httpx.ReadTimeout("timed out"), (500, "[ECONNABORTED] :: Connection aborted")),
        (httpx.ReadError("reset"), (500, "[ECONNRESET] :: Connection reset by peer")),
    ],
)
async def test_create_profile_once_maps_socket_errors(
    client: KlaviyoClient,
    router: respx.MockRouter,
    error: Exception,
    expected: tuple[int, str],
) -> None:
    router.post("/api/profiles").mock(side_effect=error)
    assert await klaviyo_lookup(client)(PROFILE_BODY, SecretStr(KEY)) == expected


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (lambda: httpx.Response(301, headers={"Location": "https://elsewhere.example/"}), "301"),
        (lambda: corrupt_gzip(201), "DecodingError"),
        (lambda: httpx.Response(201, content=b" " * 5 * 2**20), "MAX_ANSWER_BYTES"),
    ],
    ids=["redirect", "corrupt-gzip", "over-the-cap"],
)
async def test_the_protocols_create_call_reports_an_odd_answer_as_retryable(
    client: KlaviyoClient,
    router: respx.MockRouter,
    answer: Callable[[], httpx.Response],
    why: str,
) -> None:
    router.post("/api/profiles").mock(side_effect=lambda _: answer())
    status, reason = await klaviyo_lookup(client)(PROFILE_BODY, SecretStr(KEY))
    assert status == 500  # rudder-server retries 5xx; it drops a 3xx and a 400
    assert reason.startswith("[ERR_BAD_RESPONSE] :: Klaviyo's answer could not be read (")
    assert why in reason


async def test_api_key_never_in_logs_errors_or_outcomes(
    client: KlaviyoClient, router: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "stamina", "klaviyo_destination"):
        caplog.set_level(logging.DEBUG, logger=name)
    router.post("/api/profiles").mock(return_value=conflict("P9"))
    router.patch("/api/profiles/P9").mock(side_effect=[httpx.Response(503), conflict(None)])
    echo = error_body(400, "invalid", f"bad key {KEY}")
    router.post("/api/events").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "0"}),
            httpx.Response(400, json=echo),
        ]
    )
    router.post("/api/profile-subscription-bulk-create-jobs").mock(
        side_effect=httpx.ConnectError("refused")
    )
    outcomes = [
        await deliver(client, [planned.create_profile(BOTH_IDS_BODY)]),
        await deliver(client, [event()]),
        await deliver(client, [subscription("L1", "a@b.co")]),
    ]
    caught: list[KlaviyoRejected | KlaviyoUnavailable] = []
    for request in (event(), subscription("L1", "x")):
        router.post("/api/events").respond(401, json=error_body(401, "not_authenticated", KEY))
        try:
            await send(client, request)
        except (KlaviyoRejected, KlaviyoUnavailable) as exc:
            caught.append(exc)
    assert len(caught) == 2
    assert caplog.records, "the client logged nothing: the check would prove nothing"
    texts = [caplog.text, repr(outcomes), *(f"{e!s} {e!r} {e.to_dict()}" for e in caught)]
    texts += [repr(vars(record)) for record in caplog.records]
    for text in texts:
        assert KEY not in text
