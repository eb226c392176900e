"""The service and the emulator as real uvicorn servers on 127.0.0.1, talking over sockets.

Each test sends RudderStack events to ``POST /v1/events`` and reads what arrived through the
emulator's control surface (``/__emulator/state`` and ``/__emulator/requests``). Faults are
injected in the emulator; the claim is "nothing accepted is lost or duplicated".
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import pytest

from support.compose import (
    EMULATOR_COMMAND,
    EMULATOR_SERVICE,
    LIST_ID,
    PRIVATE_KEY,
    compose_service,
    dockerfile_instructions,
    option,
)
from support.emulator_control import EmulatorControl, Json
from support.servers import Server, own_service

EMAIL: Final = "ada@example.com"
PHONE: Final = "+14155550100"
SUBSCRIBE_LIST: Final = "XUepkK"
GROUP_LIST: Final = "GroupList9"

#: Identify as on RudderStack's Klaviyo page: traits plus ``properties`` for the subscription.
IDENTIFY: Final[Json] = {
    "type": "identify",
    "userId": "user-1",
    "messageId": "identify-1",
    "traits": {
        "email": EMAIL,
        "firstName": "Ada",
        "lastName": "Lovelace",
        "phone": PHONE,
        "city": "London",
        "properties": {"subscribe": True, "listId": SUBSCRIBE_LIST, "consent": ["email", "sms"]},
    },
}
PRODUCT: Final[Json] = {
    "product_id": "p-1",
    "sku": "ENG-1",
    "name": "Analytical Engine",
    "price": 21.25,
    "quantity": 2,
}


def _track(event: str, message_id: str, properties: Json, **extra: Any) -> Json:
    return {
        "type": "track",
        "event": event,
        "userId": "user-1",
        "messageId": message_id,
        "properties": properties,
        "context": {"traits": {"email": EMAIL}},
        **extra,
    }


def _send(service: httpx.Client, body: Any) -> httpx.Response:
    return service.post("/v1/events", json=body)


def _calls(recorded: list[Json]) -> list[tuple[str, str, int | None]]:
    """(method, path, status) of each recorded Klaviyo request, profile ids made generic."""
    calls = []
    for request in recorded:
        path = request["path"]
        if request["method"] == "PATCH":
            path = path.rsplit("/", 1)[0] + "/{id}"
        calls.append((request["method"], path, request["status"]))
    return calls


def _delivered(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == ["delivered"]


def _profile_attributes(profile: Json) -> Json:
    """A stored profile's attributes minus the emulator's clock readings and consent records."""
    volatile = {"created", "updated", "last_event_date", "subscriptions"}
    return {k: v for k, v in profile["attributes"].items() if k not in volatile}


def _consent(profile: Json) -> dict[str, str | None]:
    subscriptions = profile["attributes"]["subscriptions"]
    return {
        channel: (subscriptions[channel] or {}).get("marketing", {}).get("consent")
        for channel in ("email", "sms")
    }


def _location(**given: str) -> Json:
    fields = ("address1", "address2", "city", "country", "latitude", "longitude")
    return dict.fromkeys((*fields, "region", "zip", "timezone")) | given


def _events(state: Json) -> list[Json]:
    """Stored events as (metric, profile, unique_id, value, properties) records."""
    return [
        {
            "metric": e["attributes"]["metric_name"],
            "profile_id": e["attributes"]["profile_id"],
            "unique_id": e["attributes"]["unique_id"],
            "value": e["attributes"]["value"],
            "properties": e["attributes"]["event_properties"],
        }
        for e in state["events"]
    ]


ADA: Final[Json] = {
    "email": EMAIL,
    "phone_number": PHONE,
    "external_id": "user-1",
    "anonymous_id": None,
    "first_name": "Ada",
    "last_name": "Lovelace",
    "organization": None,
    "title": None,
    "image": None,
    "location": _location(city="London"),
    "properties": {},
}


# --- identify ---------------------------------------------------------------------------------


def test_identify_new_profile_is_created_and_subscribed(
    service: httpx.Client, emulator: EmulatorControl
) -> None:
    _delivered(_send(service, IDENTIFY))

    state = emulator.state()
    [profile] = state["profiles"]
    assert _profile_attributes(profile) == ADA
    assert _consent(profile) == {"email": "SUBSCRIBED", "sms": "SUBSCRIBED"}
    [member] = state["lists"][SUBSCRIBE_LIST]
    assert member["profile_id"] == profile["id"]
    assert member["channels"] == ["email", "sms"]
    assert _calls(emulator.requests()) == [
        ("POST", "/api/profiles", 201),
        ("POST", "/api/profile-subscription-bulk-create-jobs", 202),
    ]  # a new profile needs no PATCH


def test_identify_existing_profile_is_patched_after_409(
    service: httpx.Client, emulator: EmulatorControl
) -> None:
    _delivered(_send(service, IDENTIFY))
    [created] = emulator.state()["profiles"]
    emulator.forget_requests()
    update = {
        "type": "identify",
        "userId": "user-1",
        "messageId": "identify-2",
        "traits": {"email": EMAIL, "firstName": "Augusta", "title": "Countess"},
    }

    _delivered(_send(service, update))

    [profile] = emulator.state()["profiles"]
    assert profile["id"] == created["id"]
    assert _profile_attributes(profile) == ADA | {"first_name": "Augusta", "title": "Countess"}
    recorded = emulator.requests()
    assert _calls(recorded) == [
        ("POST", "/api/profiles", 409),
        ("PATCH", "/api/profiles/{id}", 200),
    ]
    assert recorded[1]["path"] == f"/api/profiles/{created['id']}"
    assert recorded[1]["body"]["data"]["id"] == created["id"]


# --- track, screen ----------------------------------------------------------------------------


def test_track_is_stored_once_even_when_resent(
    service: httpx.Client, emulator: EmulatorControl
) -> None:
    event = _track("Signed Up", "track-1", {"plan": "pro", "trial": True})

    _delivered(_send(service, event))
    _delivered(_send(service, event))  # a replay, as rudder-server sends after a lost answer

    state = emulator.state()
    [profile] = state["profiles"]
    assert _events(state) == [
        {
            "metric": "Signed Up",
            "profile_id": profile["id"],
            "unique_id": "track-1",
            "value": None,
            "properties": {"plan": "pro", "trial": True},
        }
    ]
    assert profile["attributes"]["email"] == EMAIL
    assert profile["attributes"]["external_id"] == "user-1"
    assert _calls(emulator.requests()) == [("POST", "/api/events", 202)] * 2


def test_order_completed_carries_revenue_as_value(
    service: httpx.Client, emulator: EmulatorControl
) -> None:
    properties = {"order_id": "o-1", "revenue": 42.5, "currency": "USD", "products": [PRODUCT]}
    order = _track("Order Completed", "order-1", properties, timestamp="2024-05-01T12:00:00Z")

    _delivered(_send(service, order))

    state = emulator.state()
    [profile] = state["profiles"]
    assert _events(state) == [
        {
            "metric": "Order Completed",
            "profile_id": profile["id"],
            "unique_id": "order-1",
            "value": 42.5,
            "properties": {"order_id": "o-1", "currency": "USD", "products": [PRODUCT]},
        }
    ]
    assert state["events"][0]["attributes"]["datetime"] == "2024-05-01T12:00:00+00:00"


def test_product_added_maps_items_and_value(
    service: httpx.Client, emulator: EmulatorControl
) -> None:
    properties = {**PRODUCT, "value": 42.5, "products": [PRODUCT]}

    _delivered(_send(service, _track("Product Added", "cart-1", properties)))

    state = emulator.state()
    [profile] = state["profiles"]
    item = {
        "ProductID": "p-1",
        "SKU": "ENG-1",
        "ProductName": "Analytical Engine",
        "Quantity": 2,
        "ItemPrice": 21.25,
    }
    assert _events(state) == [
        {
            "metric": "Added to Cart",
            "profile_id": profile["id"],
            "unique_id": "cart-1",
            "value": None,
            "properties": {
                "$value": 42.5,
                "AddedItemProductName": "Analytical Engine",
                "AddedItemProductID": "p-1",
                "AddedItemSKU": "ENG-1",
                "AddedItemPrice": 21.25,
                "AddedItemQuantity": 2,
                "items": [item],
            },
        }
    ]


def test_screen_is_stored_as_an_event(service: httpx.Client, emulator: EmulatorControl) -> None:
    screen = {  # as the mobile SDKs send it: the screen's name in name and properties.name
        "type": "screen",
        "name": "Home Screen",
        "userId": "user-1",
        "messageId": "screen-1",
        "properties": {"name": "Home Screen", "section": "top"},
        "context": {"traits": {"email": EMAIL}},
    }

    _delivered(_send(service, screen))

    state = emulator.state()
    [profile] = state["profiles"]
    assert _events(state) == [
        {
            "metric": "Home Screen",
            "profile_id": profile["id"],
            "unique_id": "screen-1",
            "value": None,
            "properties": {"name": "Home Screen", "section": "top"},
        }
    ]


# --- group ------------------------------------------------------------------------------------


def test_group_subscribes_to_the_list_with_consent(
    service: httpx.Client, emulator: EmulatorControl
) -> None:
    group = {
        "type": "group",
        "groupId": GROUP_LIST,
        "userId": "user-1",
        "messageId": "group-1",
        "traits": {"subscribe": True, "email": EMAIL, "phone": PHONE},
    }

    _delivered(_send(service, group))

    state = emulator.state()
    [profile] = state["profiles"]
    # Consent comes from KLAVIYO_CONSENT=email,sms, the service's dashboard setting.
    assert _consent(profile) == {"email": "SUBSCRIBED", "sms": "SUBSCRIBED"}
    [member] = state["lists"][GROUP_LIST]
    assert member | {"added": None} == {
        "profile_id": profile["id"],
        "email": EMAIL,
        "phone_number": PHONE,
        "channels": ["email", "sms"],
        "custom_source": None,
        "added": None,
    }
    assert set(state["lists"]) == {GROUP_LIST}


def test_batch_is_delivered_in_order(service: httpx.Client, emulator: EmulatorControl) -> None:
    batch = {"batch": [IDENTIFY, _track("Signed Up", "track-2", {"plan": "pro"})]}

    response = _send(service, batch)

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [(r["messageId"], r["status"]) for r in results] == [
        ("identify-1", "delivered"),
        ("track-2", "delivered"),
    ]
    state = emulator.state()
    assert len(state["profiles"]) == 1
    assert [e["metric"] for e in _events(state)] == ["Signed Up"]
    assert LIST_ID not in state["lists"]  # the event's listId wins over KLAVIYO_LIST_ID


# --- faults -----------------------------------------------------------------------------------


def test_503s_are_retried_until_delivered(service: httpx.Client, emulator: EmulatorControl) -> None:
    emulator.fault(status=503, count=2, path="/api/events")

    _delivered(_send(service, _track("Signed Up", "retry-1", {"plan": "pro"})))

    assert len(emulator.state()["events"]) == 1
    recorded = emulator.requests()
    assert _calls(recorded) == [("POST", "/api/events", s) for s in (503, 503, 202)]
    assert [r["fault"] for r in recorded] == ["status:503", "status:503", None]


def test_lost_answer_is_retried_without_a_duplicate(
    service: httpx.Client, emulator: EmulatorControl
) -> None:
    """Klaviyo stored the event but the answer never arrived: the retry must not double it."""
    emulator.fault(drop_connection=True, after_processing=True, path="/api/events")

    _delivered(_send(service, _track("Signed Up", "dropped-1", {"plan": "pro"})))

    assert [e["unique_id"] for e in _events(emulator.state())] == ["dropped-1"]
    assert _calls(emulator.requests()) == [
        ("POST", "/api/events", None),
        ("POST", "/api/events", 202),
    ]


@pytest.fixture
def fresh_service(emulator_server: Server, tmp_path: Path) -> Iterator[httpx.Client]:
    """A service of its own: a long 429 pauses a process's deliveries to that endpoint class."""
    with own_service(emulator_server.url, tmp_path) as client:
        yield client


def test_429_beyond_the_deadline_is_handed_back_with_retry_after(
    fresh_service: httpx.Client, emulator: EmulatorControl
) -> None:
    emulator.fault(status=429, retry_after=60, path="/api/events")

    response = _send(fresh_service, _track("Signed Up", "throttled-1", {"plan": "pro"}))

    assert response.status_code == 429, response.text
    assert response.headers["Retry-After"] == "60"
    [result] = response.json()["results"]
    assert result["status"] == "failed"
    assert result["retry_after"] == 60
    assert emulator.state()["events"] == []
    assert _calls(emulator.requests()) == [("POST", "/api/events", 429)]  # no wait past deadline


# --- inbound auth and secrets -----------------------------------------------------------------


def test_webhook_without_token_is_401(service_server: Server, emulator: EmulatorControl) -> None:
    event = _track("Signed Up", "anon-1", {"plan": "pro"})

    missing = httpx.post(f"{service_server.url}/v1/events", json=event, timeout=10)
    wrong = httpx.post(
        f"{service_server.url}/v1/events",
        json=event,
        headers={"Authorization": "Bearer not-the-token"},
        timeout=10,
    )

    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert missing.json()["error"]["code"] == "unauthorized"
    assert emulator.requests() == []


def test_private_key_never_reaches_the_service_output(
    service: httpx.Client, service_server: Server, emulator: EmulatorControl
) -> None:
    emulator.fault(status=401, path="/api/events")  # Klaviyo refusing the key: an error path

    response = _send(service, _track("Signed Up", "refused-1", {"plan": "pro"}))

    assert response.status_code == 400, response.text
    [recorded] = emulator.requests()
    assert recorded["headers"]["authorization"] == "Klaviyo-API-Key ***"
    output = service_server.output()
    assert "/api/events" in output  # the capture works: the request was logged
    assert PRIVATE_KEY not in output
    assert PRIVATE_KEY not in response.text


# --- the images' healthchecks, run against the live servers ----------------------------------


def _exec_form(test: list[str]) -> list[str]:
    """A ``["CMD", "python", ...]`` healthcheck as argv for this interpreter."""
    kind, program, *args = test
    assert (kind, program) == ("CMD", "python"), test
    return [sys.executable, *args]


def test_compose_emulator_healthcheck_passes(emulator_server: Server) -> None:
    port = urlsplit(emulator_server.url).port
    argv = _exec_form(compose_service(EMULATOR_SERVICE)["healthcheck"]["test"])
    compose_port = option(EMULATOR_COMMAND, "--port")
    argv = [part.replace(f"127.0.0.1:{compose_port}/", f"127.0.0.1:{port}/") for part in argv]

    run = subprocess.run(argv, capture_output=True, timeout=10, check=False)  # noqa: S603

    assert run.returncode == 0, run.stderr.decode()


def test_dockerfile_healthcheck_passes(service_server: Server) -> None:
    [arguments] = [args for name, args in dockerfile_instructions() if name == "HEALTHCHECK"]
    test = ["CMD", *json.loads(arguments.partition(" CMD ")[2])]
    env = {"PORT": str(urlsplit(service_server.url).port)}

    run = subprocess.run(_exec_form(test), capture_output=True, env=env, timeout=10, check=False)  # noqa: S603

    assert run.returncode == 0, run.stderr.decode()
