"""The emulator and the service as subprocesses on loopback, started as compose starts them.

The commands and the service's base environment come from ``tests/integration/conftest.py``
(which reads ``docker-compose.yml``), so these runs and the loopback tests cannot drift apart.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tests.integration.conftest import (
    EMULATOR_COMMAND,
    EMULATOR_HEALTH,
    SERVICE_COMMAND,
    SERVICE_HEALTH,
    WEBHOOK_TOKEN,
    local_argv,
    local_service_env,
)
from tests.processes import LOOPBACK, clean_env, free_port, stop_process, wait_healthy

#: Service settings for fast fault runs: short timeouts and backoff, limits far above the load.
FAST_SERVICE_ENV: Final[Mapping[str, str]] = {
    "DELIVERY_DEADLINE": "3",
    "READ_TIMEOUT": "0.5",
    "CONNECT_TIMEOUT": "1",
    "BACKOFF_INITIAL": "0.02",
    "BACKOFF_MAX": "0.2",
    "MAX_ATTEMPTS": "5",
    "DELIVERY_CONCURRENCY": "50",
    "PROFILES_RATE_BURST": "100000",
    "PROFILES_RATE_STEADY": "1000000",
    "EVENTS_RATE_BURST": "100000",
    "EVENTS_RATE_STEADY": "1000000",
}


class StartupError(RuntimeError):
    """A server did not become healthy; the message carries its output."""


@dataclass
class Process:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text("utf-8", "replace")

    def rss_kib(self) -> int:
        """Resident set size from ``/proc/<pid>/status`` (``VmRSS``), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"no VmRSS for pid {self.pid}")

    def stop(self) -> None:
        stop_process(self.process)


@dataclass(frozen=True)
class Servers:
    emulator: Process
    service: Process

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


def _start(
    name: str, command: list[str], env: Mapping[str, str], logs: Path, health: str
) -> Process:
    port = free_port()
    argv = local_argv(command, host=LOOPBACK, port=port)
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 -- our own argv
            argv, stdout=out, stderr=subprocess.STDOUT, env=clean_env(env), cwd=logs
        )
    server = Process(name, f"http://{LOOPBACK}:{port}", process, log)
    if wait_healthy(server.url + health, process):
        return server
    server.stop()
    raise StartupError(f"{name} did not become healthy; its output:\n{server.output()}")


@contextlib.contextmanager
def running(service_env: Mapping[str, str], logs: Path | None = None) -> Iterator[Servers]:
    """Emulator and service (compose's env plus ``service_env``); both stopped on exit."""
    with contextlib.ExitStack() as stack:
        if logs is None:
            logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reliability-")))
        emulator = _start("emulator", EMULATOR_COMMAND, {}, logs, EMULATOR_HEALTH)
        stack.callback(emulator.stop)
        env = local_service_env(emulator.url) | dict(service_env)
        service = _start("service", SERVICE_COMMAND, env, logs, SERVICE_HEALTH)
        stack.callback(service.stop)
        yield Servers(emulator, service)
