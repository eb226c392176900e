"""Loopback fixtures: the emulator and the service as real uvicorn subprocesses on 127.0.0.1,
started as compose starts them (``support/servers.py``; one that does not become healthy fails
the setup with its output). Servers start once per session; each test gets an emptied emulator.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from support.compose import PRIVATE_KEY
from support.emulator_control import EmulatorControl
from support.servers import TOKEN_AUTH, Server, start_emulator, start_service


@pytest.fixture(scope="session")
def emulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    logs = tmp_path_factory.mktemp("emulator")
    with start_emulator(logs) as server:
        yield server


@pytest.fixture(scope="session")
def service_server(
    emulator_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    logs = tmp_path_factory.mktemp("service")
    with start_service(emulator_server.url, logs) as server:
        yield server
    assert PRIVATE_KEY not in server.output(), "the private key reached the service's output"


@pytest.fixture(scope="session")
def emulator_client(emulator_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator_server.url, timeout=10) as client:
        yield client


@pytest.fixture
def emulator(emulator_client: httpx.Client) -> EmulatorControl:
    """The emulator, emptied (data, recordings, faults, rate-limit windows) for this test."""
    control = EmulatorControl(emulator_client)
    control.reset()
    return control


@pytest.fixture(scope="session")
def service(service_server: Server) -> Iterator[httpx.Client]:
    """A client of the service that presents the webhook token."""
    with httpx.Client(base_url=service_server.url, headers=TOKEN_AUTH, timeout=30) as client:
        yield client
