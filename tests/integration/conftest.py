"""Loopback fixtures: the emulator and the service as real uvicorn subprocesses on 127.0.0.1.

Both are started with the commands ``docker-compose.yml`` runs, read from that file and moved to
loopback by :func:`local_argv` (``klaviyo-destination`` → ``python -m klaviyo_destination``,
``--host``/``--port`` replaced), so compose and these tests cannot drift apart;
``tests/test_packaging.py`` checks the mapping. Servers start once per session; each test gets
an emptied emulator.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from ruamel.yaml import YAML

from tests.processes import (
    LOOPBACK,
    clean_env,
    free_port,
    stop_process,
    wait_healthy,
)

ROOT: Final = Path(__file__).resolve().parents[2]
COMPOSE_FILE: Final = ROOT / "docker-compose.yml"
DOCKERFILE: Final = ROOT / "Dockerfile"
CONSOLE_SCRIPT: Final = "klaviyo-destination"
EMULATOR_SERVICE: Final = "emulator"
DESTINATION_SERVICE: Final = "klaviyo-destination"

#: The paths the fixtures poll; compose's and the Dockerfile's healthchecks use the same.
EMULATOR_HEALTH: Final = "/__emulator/health"
SERVICE_HEALTH: Final = "/health"

PRIVATE_KEY: Final = "pk_test"
WEBHOOK_TOKEN: Final = "loopback-webhook-token"
LIST_ID: Final = "LoopList1"
#: Short enough that a Retry-After of a minute is beyond it; long enough for a few retries.
DELIVERY_DEADLINE: Final = 5


Json = dict[str, Any]


def load_compose() -> Json:
    document = YAML(typ="safe").load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(document, dict), f"{COMPOSE_FILE} is not a mapping"
    return document


def compose_service(name: str) -> Json:
    service = load_compose()["services"][name]
    assert isinstance(service, dict)
    return service


def compose_command(name: str) -> list[str]:
    command = compose_service(name)["command"]
    assert isinstance(command, list), f"{name}: command must be an exec-form list"
    return [str(part) for part in command]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` per Dockerfile instruction, continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


#: What compose runs; the fixtures below run exactly these, moved to loopback.
EMULATOR_COMMAND: Final = compose_command(EMULATOR_SERVICE)
SERVICE_COMMAND: Final = compose_command(DESTINATION_SERVICE)


def option(argv: Sequence[str], name: str) -> str | None:
    """The value after ``name`` in ``argv``, if given."""
    args = list(argv)
    return args[args.index(name) + 1] if name in args else None


def local_argv(command: Sequence[str], *, host: str, port: int) -> list[str]:
    """A compose ``command`` run from this interpreter, bound to ``host:port``."""
    program, *args = command
    if program != CONSOLE_SCRIPT:
        raise ValueError(f"compose command must start with {CONSOLE_SCRIPT!r}: {command!r}")
    for name, value in (("--host", host), ("--port", str(port))):
        if name in args:
            args[args.index(name) + 1] = value
        else:
            args += [name, value]
    return [sys.executable, "-m", "klaviyo_destination", *args]


def local_service_env(emulator_url: str) -> dict[str, str]:
    """The service's environment on loopback: compose's variables (and tuning for speed)."""
    return {
        "KLAVIYO_BASE_URL": emulator_url,
        "KLAVIYO_PRIVATE_API_KEY": PRIVATE_KEY,
        "WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "KLAVIYO_LIST_ID": LIST_ID,
        "KLAVIYO_CONSENT": "email,sms",
        "DELIVERY_DEADLINE": str(DELIVERY_DEADLINE),
        "BACKOFF_INITIAL": "0.05",
        "BACKOFF_MAX": "0.2",
    }


@dataclass
class Server:
    """One subprocess and the files its stdout and stderr go to."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> str:
        return "".join(p.read_text("utf-8", "replace") for p in (self.stdout, self.stderr))

    def stop(self) -> None:
        stop_process(self.process)


def _wait_healthy(server: Server, path: str) -> None:
    if not wait_healthy(server.url + path, server.process):
        server.stop()
        pytest.fail(f"{server.name} did not become healthy; its output:\n{server.output()}")


def _start(
    name: str, argv: list[str], env: Mapping[str, str], port: int, logs: Path, health: str
) -> Server:
    stdout, stderr = logs / f"{name}.stdout", logs / f"{name}.stderr"
    # Files, not pipes: a chatty server cannot block on a full pipe nobody reads.
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err, env=clean_env(env), cwd=logs)  # noqa: S603 -- our own argv
    server = Server(name, f"http://{LOOPBACK}:{port}", process, stdout, stderr)
    _wait_healthy(server, health)
    return server


@pytest.fixture(scope="session")
def emulator_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    argv = local_argv(EMULATOR_COMMAND, host=LOOPBACK, port=port)
    logs = tmp_path_factory.mktemp("emulator")
    server = _start("emulator", argv, {}, port, logs, EMULATOR_HEALTH)
    yield server
    server.stop()


def start_service(emulator: Server, logs: Path) -> Server:
    """The service as compose runs it, delivering to ``emulator``; output goes under ``logs``."""
    port = free_port()
    argv = local_argv(SERVICE_COMMAND, host=LOOPBACK, port=port)
    return _start("service", argv, local_service_env(emulator.url), port, logs, SERVICE_HEALTH)


@pytest.fixture(scope="session")
def service_server(
    emulator_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    server = start_service(emulator_server, tmp_path_factory.mktemp("service"))
    yield server
    server.stop()
    assert PRIVATE_KEY not in server.output(), "the private key reached the service's output"


class Emulator:
    """The emulator's control surface (``/__emulator/...``)."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def reset(self) -> None:
        self.client.post("/__emulator/reset").raise_for_status()

    def state(self) -> Json:
        response = self.client.get("/__emulator/state")
        response.raise_for_status()
        state: Json = response.json()
        return state

    def requests(self, path: str | None = None) -> list[Json]:
        params = {} if path is None else {"path": path}
        response = self.client.get("/__emulator/requests", params=params)
        response.raise_for_status()
        recorded: list[Json] = response.json()["requests"]
        return recorded

    def forget_requests(self) -> None:
        self.client.delete("/__emulator/requests").raise_for_status()

    def fault(self, **spec: Any) -> None:
        self.client.post("/__emulator/faults", json=spec).raise_for_status()


@pytest.fixture(scope="session")
def emulator_client(emulator_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator_server.url, timeout=10) as client:
        yield client


@pytest.fixture
def emulator(emulator_client: httpx.Client) -> Emulator:
    """The emulator, emptied (data, recordings, faults, rate-limit windows) for this test."""
    control = Emulator(emulator_client)
    control.reset()
    return control


@pytest.fixture(scope="session")
def service(service_server: Server) -> Iterator[httpx.Client]:
    """A client of the service that presents the webhook token."""
    headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    with httpx.Client(base_url=service_server.url, headers=headers, timeout=30) as client:
        yield client
