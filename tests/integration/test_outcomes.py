"""Delivery outcomes over real sockets: what the respx unit tests check, against the emulator.

Permanent answers are not retried and carry Klaviyo's reason; transient ones are retried.
"""

from __future__ import annotations

import json
from typing import Any, Final

import httpx
import pytest

from support.emulator_control import EmulatorControl, Json

EVENT: Final[Json] = {
    "type": "track",
    "event": "Signed Up",
    "userId": "user-9",
    "messageId": "outcome-1",
    "properties": {"plan": "pro"},
    "context": {"traits": {"email": "nine@example.com"}},
}


def _identify(message_id: str, **traits: Any) -> Json:
    return {"type": "identify", "userId": None, "messageId": message_id, "traits": traits}


def _result(response: httpx.Response) -> Json:
    [result] = response.json()["results"]
    assert isinstance(result, dict)
    return result


def _statuses(emulator: EmulatorControl) -> list[int | None]:
    return [request["status"] for request in emulator.requests("/api/")]


def test_identifiers_of_two_profiles_are_a_permanent_conflict(
    service: httpx.Client, emulator: EmulatorControl
) -> None:
    service.post("/v1/events", json=_identify("c-1", email="a@example.com")).raise_for_status()
    service.post("/v1/events", json=_identify("c-2", phone="+14155550111")).raise_for_status()
    emulator.forget_requests()

    both = _identify("c-3", email="a@example.com", phone="+14155550111")
    response = service.post("/v1/events", json=both)

    assert response.status_code == 400
    error = _result(response)["error"]
    assert error["code"] == "klaviyo_profile_conflict"
    assert "two different" in error["message"]
    assert _statuses(emulator) == [409, 409]  # create, then the PATCH: no retries
    assert len(emulator.state()["profiles"]) == 2


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        pytest.param(
            400,
            {"errors": [{"id": "e1", "status": 400, "code": "invalid", "title": "Invalid input.",
                         "detail": "bad", "source": {"pointer": "/data/attributes/metric"}}]},
            "klaviyo_rejected",
            id="400",
        ),
        pytest.param(
            401,
            {"errors": [{"id": "e2", "status": 401, "code": "not_authenticated",
                         "title": "Authentication credentials were not provided.",
                         "detail": "Missing or invalid private key.", "source": {"pointer": "/"}}]},
            "klaviyo_auth_rejected",
            id="401",
        ),
        pytest.param(410, {"errors": []}, "klaviyo_revision_retired", id="410-retired-revision"),
    ],
)  # fmt: skip
def test_permanent_answers_are_rejected_once_with_the_reason(
    service: httpx.Client, emulator: EmulatorControl, status: int, body: Json, code: str
) -> None:
    raw = json.dumps(body)
    emulator.fault(status=status, body=raw, content_type="application/vnd.api+json", path="/api/")

    response = service.post("/v1/events", json=EVENT)

    assert response.status_code == 400
    error = _result(response)["error"]
    assert (error["code"], error["klaviyo_status"]) == (code, status)
    assert _statuses(emulator) == [status]
    assert emulator.state()["events"] == []


def test_html_403_from_a_proxy_is_retried(service: httpx.Client, emulator: EmulatorControl) -> None:
    page = "<html><body>Attention Required! | Cloudflare</body></html>"
    emulator.fault(status=403, count=1, body=page, content_type="text/html", path="/api/events")

    response = service.post("/v1/events", json=EVENT)

    assert response.status_code == 200, response.text
    assert _statuses(emulator) == [403, 202]
    assert [e["attributes"]["unique_id"] for e in emulator.state()["events"]] == ["outcome-1"]
