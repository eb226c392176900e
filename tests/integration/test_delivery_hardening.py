"""Issue 15's delivery items over real sockets, against the emulator.

One subscription Klaviyo refuses never sinks other users' subscriptions; odd answers (a corrupt
gzip body after the request was applied, a redirect, an answer too large to read) are retryable
failures per event, never a 500; a long ``Retry-After`` holds an endpoint no longer than
``MAX_RETRY_AFTER``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from support.emulator_control import EmulatorControl, Json
from support.servers import Server, own_service

LIST: Final = "HardeningList"
#: RudderStack's Klaviyo page writes its sample phone number this way.
SEED_PAGE_PHONE: Final = "+12 345 678 900"


def _group(n: int, email: Any, **traits: Any) -> Json:
    return {
        "type": "group",
        "groupId": LIST,
        "userId": f"user-h{n}",
        "messageId": f"group-h{n}",
        "traits": {"subscribe": True, "email": email, **traits},
    }


def _track(message_id: str) -> Json:
    return {
        "type": "track",
        "event": "Signed Up",
        "userId": "user-h1",
        "messageId": message_id,
        "properties": {"plan": "pro"},
        "context": {"traits": {"email": "h1@example.com"}},
    }


def _members(emulator: EmulatorControl) -> list[str]:
    return sorted(member["email"] for member in emulator.state()["lists"].get(LIST, []))


def _statuses(emulator: EmulatorControl, path: str) -> list[int | None]:
    return [request["status"] for request in emulator.requests(path)]


# --- item 1: one refused subscription --------------------------------------------------------


def test_ten_group_events_with_one_bad_email_subscribe_the_nine(
    service: httpx.Client, emulator: EmulatorControl
) -> None:
    emails = [f"h{n}@example.com" for n in range(10)]
    emails[6] = "not-an-email"

    response = service.post("/v1/events", json=[_group(n, e) for n, e in enumerate(emails)])

    assert response.status_code == 207, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["delivered"] * 6 + ["rejected"] + ["delivered"] * 3
    error = results[6]["error"]
    assert (error["code"], error["field"]) == (
        "invalid_event",
        "/data/attributes/subscriptions/0/email",
    )
    assert _members(emulator) == sorted(e for e in emails if "@" in e)
    assert _statuses(emulator, "/api/profile-subscription-bulk-create-jobs") == [202]


def test_the_seed_pages_phone_number_is_subscribed(
    service: httpx.Client, emulator: EmulatorControl
) -> None:
    events = [_group(1, "h1@example.com", phone=SEED_PAGE_PHONE), _group(2, "h2@example.com")]

    response = service.post("/v1/events", json=events)

    assert response.status_code == 200, response.text
    phones = [m["phone_number"] for m in emulator.state()["lists"][LIST]]
    assert phones == ["+12345678900", None]


def test_an_entry_klaviyo_refuses_is_rejected_and_the_job_resent_without_it(
    service: httpx.Client, emulator: EmulatorControl
) -> None:
    # A number is no email: nothing refuses it before sending, the emulator's 400 points at it.
    events = [_group(n, email) for n, email in enumerate(["h0@example.com", 12345, "h2@x.org"])]

    response = service.post("/v1/events", json=events)

    assert response.status_code == 207, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["delivered", "rejected", "delivered"]
    error = results[1]["error"]
    assert (error["code"], error["klaviyo_status"]) == ("klaviyo_rejected", 400)
    assert error["field"] == "/data/attributes/subscriptions/0/email"
    assert _members(emulator) == ["h0@example.com", "h2@x.org"]
    assert _statuses(emulator, "/api/profile-subscription-bulk-create-jobs") == [400, 202]


# --- item 5: odd answers ---------------------------------------------------------------------


def test_a_corrupt_gzip_answer_after_klaviyo_applied_the_request_is_retried(
    service: httpx.Client, emulator: EmulatorControl
) -> None:
    emulator.fault(
        status=202,
        after_processing=True,
        body="this is not gzip",
        headers={"Content-Encoding": "gzip"},
        path="/api/events",
    )

    response = service.post("/v1/events", json=_track("corrupt-1"))

    assert response.status_code == 200, response.text
    assert _statuses(emulator, "/api/events") == [202, 202]  # applied twice, stored once
    assert [e["attributes"]["unique_id"] for e in emulator.state()["events"]] == ["corrupt-1"]


def test_a_redirect_is_not_followed_and_answered_503(
    service: httpx.Client, emulator: EmulatorControl
) -> None:
    elsewhere = "http://127.0.0.1:9/api/events"
    emulator.fault(status=302, headers={"Location": elsewhere}, path="/api/events")

    first = service.post("/v1/events", json=_track("redirected-1"))
    second = service.post("/v1/events", json=_track("redirected-1"))

    assert (first.status_code, first.headers["Retry-After"]) == (503, "5"), first.text
    [result] = first.json()["results"]
    assert result["error"]["klaviyo_status"] == 302
    assert second.status_code == 200, second.text
    assert _statuses(emulator, "/api/events") == [302, 202]


def test_an_answer_over_the_cap_is_not_read_and_retried(
    service: httpx.Client, emulator: EmulatorControl
) -> None:
    emulator.fault(status=202, body_size=64 * 1024 * 1024, path="/api/events")

    response = service.post("/v1/events", json=_track("huge-1"))

    assert response.status_code == 200, response.text
    assert _statuses(emulator, "/api/events") == [202, 202]


# --- item 6: a long Retry-After --------------------------------------------------------------

SHORT_CAP: Final = 1.0


@pytest.fixture
def capped_service(emulator_server: Server, tmp_path: Path) -> Iterator[httpx.Client]:
    """A service of its own (a 429 holds the process's endpoint), with a short cap."""
    with own_service(emulator_server.url, tmp_path, {"MAX_RETRY_AFTER": str(SHORT_CAP)}) as client:
        yield client


def test_a_day_long_retry_after_is_handed_back_and_holds_only_for_the_cap(
    capped_service: httpx.Client, emulator: EmulatorControl
) -> None:
    emulator.fault(status=429, retry_after=86400, path="/api/events")

    throttled = capped_service.post("/v1/events", json=_track("day-1"))
    time.sleep(SHORT_CAP + 0.2)
    later = capped_service.post("/v1/events", json=_track("day-1"))

    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "86400")
    assert later.status_code == 200, later.text
    assert _statuses(emulator, "/api/events") == [429, 202]
