"""What ``docker-compose.yml`` and the ``Dockerfile`` run, and the same moved to loopback.

The servers on loopback are started with the commands compose runs, read from that file and
moved by :func:`local_argv` (``klaviyo-destination`` → ``python -m klaviyo_destination``,
``--host``/``--port`` replaced), so compose and the loopback runs cannot drift apart;
``tests/test_packaging.py`` checks the mapping.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from ruamel.yaml import YAML

ROOT: Final = Path(__file__).resolve().parents[1]
COMPOSE_FILE: Final = ROOT / "docker-compose.yml"
DOCKERFILE: Final = ROOT / "Dockerfile"
CONSOLE_SCRIPT: Final = "klaviyo-destination"
EMULATOR_SERVICE: Final = "emulator"
DESTINATION_SERVICE: Final = "klaviyo-destination"
#: Started with ``--profile replicas`` only: the shared rate limits' store.
REDIS_SERVICE: Final = "redis"

#: The paths the servers are polled on; compose's and the Dockerfile's healthchecks use the same.
EMULATOR_HEALTH: Final = "/__emulator/health"
SERVICE_HEALTH: Final = "/health"

PRIVATE_KEY: Final = "pk_test"
WEBHOOK_TOKEN: Final = "loopback-webhook-token"  # noqa: S105 -- loopback servers only
LIST_ID: Final = "LoopList1"
#: Short enough that a Retry-After of a minute is beyond it; long enough for a few retries.
DELIVERY_DEADLINE: Final = 5

Json = dict[str, Any]


def load_compose() -> Json:
    document = YAML(typ="safe").load(COMPOSE_FILE.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise TypeError(f"{COMPOSE_FILE} is not a mapping")
    return document


def compose_service(name: str) -> Json:
    service = load_compose()["services"][name]
    if not isinstance(service, dict):
        raise TypeError(f"{COMPOSE_FILE}: service {name!r} is not a mapping")
    return service


def compose_command(name: str) -> list[str]:
    command = compose_service(name)["command"]
    if not isinstance(command, list):
        raise TypeError(f"{name}: command must be an exec-form list")
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


#: What compose runs; the loopback servers run exactly these, moved to loopback.
EMULATOR_COMMAND: Final = compose_command(EMULATOR_SERVICE)
SERVICE_COMMAND: Final = compose_command(DESTINATION_SERVICE)


def option(argv: Sequence[str], name: str) -> str | None:
    """The value after ``name`` in ``argv``, if given."""
    args = list(argv)
    return args[args.index(name) + 1] if name in args else None


def local_argv(
    command: Sequence[str], *, host: str, port: int, module: str = "klaviyo_destination"
) -> list[str]:
    """A compose ``command`` run from this interpreter, bound to ``host:port``; ``module``
    runs it in the package's place (a benchmark's instrument taking the same arguments)."""
    program, *args = command
    if program != CONSOLE_SCRIPT:
        raise ValueError(f"compose command must start with {CONSOLE_SCRIPT!r}: {command!r}")
    for name, value in (("--host", host), ("--port", str(port))):
        if name in args:
            args[args.index(name) + 1] = value
        else:
            args += [name, value]
    return [sys.executable, "-m", module, *args]


def local_service_env(emulator_url: str) -> dict[str, str]:
    """The service's environment on loopback: compose's variables (and tuning for speed)."""
    return {
        "KLAVIYO_BASE_URL": emulator_url,
        "KLAVIYO_PRIVATE_API_KEY": PRIVATE_KEY,
        "WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "KLAVIYO_LIST_ID": LIST_ID,
        "KLAVIYO_API_VERSION": "v1",  # compose's default
        "KLAVIYO_CONSENT": "email,sms",
        "RUDDER_TRANSFORMER_URL": "",  # compose's default: no upstream transformer
        "REDIS_URL": "",  # compose's default: limits per process (one replica)
        "REPLICAS": "",
        "DELIVERY_DEADLINE": str(DELIVERY_DEADLINE),
        "BACKOFF_INITIAL": "0.05",
        "BACKOFF_MAX": "0.2",
    }
