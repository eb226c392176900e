"""Reading Klaviyo's answers (``klaviyo/answers.py``): which answer is a rejection, which is
transient, what the error says."""

from __future__ import annotations

import httpx
import pytest
import respx

from klaviyo_destination import planned
from klaviyo_destination.errors import KlaviyoRejected
from klaviyo_destination.klaviyo import KlaviyoAnswer, KlaviyoClient
from tests.klaviyo.helpers import PROFILE_BODY, deliver, error_body, event, send

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "invalid", "klaviyo_rejected"),
        (401, "not_authenticated", "klaviyo_auth_rejected"),
        (403, "permission_denied", "klaviyo_auth_rejected"),
        (404, "not_found", "klaviyo_rejected"),
    ],
)
async def test_json_4xx_is_not_retried(
    client: KlaviyoClient, router: respx.MockRouter, status: int, code: str, expected: str
) -> None:
    route = router.post("/api/events").respond(status, json=error_body(status, code, "nope"))
    outcome = await deliver(client, [event()])
    assert outcome.status == "rejected"
    assert outcome.error is not None
    assert outcome.error["code"] == expected
    assert "nope" in outcome.error["message"]
    assert route.call_count == 1


async def test_html_403_is_transient(client: KlaviyoClient, router: respx.MockRouter) -> None:
    page = httpx.Response(
        403, html="<html>Just a moment...</html>", headers={"cf-mitigated": "challenge"}
    )
    route = router.post("/api/events").mock(side_effect=[page, httpx.Response(202)])
    assert (await deliver(client, [event()])).status == "delivered"
    assert route.call_count == 2


async def test_410_means_the_revision_is_retired(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    router.post("/api/events").respond(410, json=error_body(410, "gone", "Gone"))
    outcome = await deliver(client, [event()])
    assert outcome.status == "rejected"
    assert outcome.error is not None
    assert outcome.error["code"] == "klaviyo_revision_retired"
    assert "2023-02-22 is retired" in outcome.error["message"]
    assert "emulator" in outcome.error["message"]


async def test_rejection_carries_klaviyos_errors(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    pointer = "/data/attributes/phone_number"
    body = error_body(400, "invalid", "Invalid phone number format", pointer)
    router.post("/api/profiles").respond(400, json=body)
    outcome = await deliver(client, [planned.create_profile(PROFILE_BODY)])
    assert outcome.error == {
        "code": "klaviyo_rejected",
        "message": "Klaviyo rejected the request (400 invalid): Invalid phone number format",
        "field": pointer,
        "klaviyo_status": 400,
        "klaviyo_errors": [
            {
                "id": "err-400",
                "code": "invalid",
                "detail": "Invalid phone number format",
                "source": {"pointer": pointer},
            }
        ],
    }


async def test_send_raises_rejected(client: KlaviyoClient, router: respx.MockRouter) -> None:
    router.post("/api/events").respond(400, json=error_body(400, "invalid", "bad"))
    with pytest.raises(KlaviyoRejected, match="bad"):
        await send(client, event())


async def test_a_redirect_is_not_followed_and_fails_retryably(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    elsewhere = "https://elsewhere.example/api/events"
    route = router.post("/api/events").respond(302, headers={"Location": elsewhere})
    outcome = await deliver(client, [event()])
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert (outcome.error["code"], outcome.error["klaviyo_status"]) == ("klaviyo_unavailable", 302)
    assert f"redirect to {elsewhere} not followed" in outcome.error["message"]
    assert route.call_count == 1  # the same request would meet the same redirect
    assert {call.request.url.host for call in router.calls} == {"klaviyo.test"}


async def test_an_answer_in_an_undecodable_charset_is_still_read(
    client: KlaviyoClient, router: respx.MockRouter
) -> None:
    page = httpx.Response(
        400, headers={"Content-Type": "text/plain; charset=utf-32"}, content=b"\xff\xfe bad"
    )
    router.post("/api/events").mock(return_value=page)
    outcome = await deliver(client, [event()])
    assert outcome.status == "rejected"
    assert outcome.error is not None
    assert "bad" in outcome.error["message"]


@pytest.mark.parametrize(
    ("content", "body"),
    [
        (b'{"data": {"id": "P1"}}', {"data": {"id": "P1"}}),
        (b"<html>Just a moment...</html>", "<html>Just a moment...</html>"),
        (b"\xff\xfe bad", "\ufffd\ufffd bad"),
        (b"", ""),
    ],
    ids=["json", "html", "not-utf-8", "empty"],
)
def test_an_answer_is_read_once_into_its_body(content: bytes, body: object) -> None:
    answer = KlaviyoAnswer.read(200, httpx.Headers(), content)
    assert (answer.status, answer.body, answer.is_success) == (200, body, True)
