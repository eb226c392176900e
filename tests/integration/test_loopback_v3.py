"""``KLAVIYO_API_VERSION=v3`` (and v2) over sockets: the service and the emulator as real
processes on 127.0.0.1. What arrives at the emulator for ``/v1/events`` is what the same
service's protocol routes answer for the same events; the state page shows the newer shape;
start-up says which revision is delivered, and warns at Klaviyo's own host at a retired one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from support.emulator_control import EmulatorControl, Json
from support.servers import TOKEN_AUTH, Server, start_service, start_service_with
from tests.helpers import delivery
from tests.helpers.delivery import GROUP_LIST, LIST, group, identify, track

RETIRED_LINE: Final = "Klaviyo retired API revision 2023-02-22 (KLAVIYO_API_VERSION=v1)"


@pytest.fixture(scope="module", params=["v2", "v3"])
def api_version(request: pytest.FixtureRequest) -> str:
    version: str = request.param
    return version


@pytest.fixture(scope="module")
def server(
    emulator_server: Server, api_version: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    logs = tmp_path_factory.mktemp(f"service-{api_version}")
    env = {"KLAVIYO_API_VERSION": api_version, "KLAVIYO_CONSENT": "email"}
    with start_service(emulator_server.url, logs, env) as started:
        yield started


@pytest.fixture
def service(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=TOKEN_AUTH, timeout=30) as client:
        yield client


def deliver(service: httpx.Client, events: Any) -> httpx.Response:
    answer = service.post("/v1/events", json=events)
    assert answer.status_code == 200, answer.text
    return answer


def processor(service: httpx.Client, events: list[Json], api_version: str) -> list[Json]:
    answer = service.post(
        "/v0/destinations/klaviyo", json=delivery.processor_body(events, api_version)
    )
    assert answer.status_code == 200, answer.text
    items: list[Json] = answer.json()
    return items


def test_every_kind_arrives_as_the_processor_route_answers_it(
    service: httpx.Client, emulator: EmulatorControl, api_version: str
) -> None:
    for event in delivery.every_kind():
        deliver(service, event)
        arrived = delivery.from_emulator(emulator.requests())
        emulator.forget_requests()
        assert arrived == delivery.from_processor(processor(service, [event], api_version))


def test_a_batch_arrives_as_the_router_route_answers_it(
    service: httpx.Client, emulator: EmulatorControl, api_version: str
) -> None:
    events = [identify(f"u{n}") for n in range(5)]
    events += [identify("u5", subscribe=False), track("u0"), track("u1", kind="screen")]
    deliver(service, events)
    routed = service.post("/routerTransform", json=delivery.router_body(events, api_version))
    assert routed.status_code == 200
    expected = delivery.from_router(routed.json()["output"])
    arrived = delivery.from_emulator(emulator.requests())
    assert delivery.unordered(arrived) == delivery.unordered(expected)


def test_the_state_page_shows_the_newer_shape(
    service: httpx.Client, emulator: EmulatorControl
) -> None:
    first = deliver(service, [identify("ada"), group("ada"), track("ada")])
    again = deliver(service, identify("ada"))
    statuses = [r["status"] for r in first.json()["results"][0]["requests"]]
    assert statuses == [201, 202]
    assert [r["status"] for r in again.json()["results"][0]["requests"]] == [200, 202]
    state = emulator.state()
    [profile] = state["profiles"]
    for list_id in (LIST, GROUP_LIST):
        assert state["consent"][list_id][profile["id"]]["email"]["consent"] == "SUBSCRIBED"
    deliver(service, [identify("ada", subscribe=False)])
    consent = emulator.state()["consent"][LIST][profile["id"]]["email"]["consent"]
    assert consent == "UNSUBSCRIBED"


def test_ready_names_the_revision(service: httpx.Client, api_version: str) -> None:
    ready = service.get("/ready").json()
    assert ready["api_version"] == api_version
    assert ready["revision"] == {"v2": "2024-10-15", "v3": "2026-04-15"}[api_version]
    assert "warning" not in ready  # the emulator is not Klaviyo's own host


# --- start-up ---------------------------------------------------------------------------------


def test_start_up_at_klaviyos_host_at_v1_says_how_to_move_to_v3(tmp_path: Path) -> None:
    """Nothing is sent at start-up: the warning comes from the settings alone."""
    env = {
        "KLAVIYO_PRIVATE_API_KEY": "pk_never_used",
        "KLAVIYO_BASE_URL": "https://a.klaviyo.com",
    }
    with start_service_with(env, tmp_path) as server:
        ready = httpx.get(server.url + "/ready").json()
        output = server.output()
    [line] = [line for line in output.splitlines() if RETIRED_LINE in line]
    assert "Set KLAVIYO_API_VERSION=v3 (revision 2026-04-15)" in line
    assert "Delivering to https://a.klaviyo.com at revision 2023-02-22" in output
    assert ready["warning"] in line
    assert ready["revision"] == "2023-02-22"


def test_start_up_at_klaviyos_host_at_v3_has_no_warning(tmp_path: Path) -> None:
    env = {
        "KLAVIYO_PRIVATE_API_KEY": "pk_never_used",
        "KLAVIYO_BASE_URL": "https://a.klaviyo.com",
        "KLAVIYO_API_VERSION": "v3",
    }
    with start_service_with(env, tmp_path) as server:
        ready = httpx.get(server.url + "/ready").json()
        output = server.output()
    assert "retired" not in output
    assert "at revision 2026-04-15 (KLAVIYO_API_VERSION=v3)" in output
    assert ready["revision"] == "2026-04-15"
    assert "warning" not in ready
