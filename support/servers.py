"""The emulator and the service as real processes on 127.0.0.1: start, wait healthy, stop.

One wrapper for the integration tests, the reliability runs and the benchmarks. The emulator
and the service start as compose starts them (:mod:`support.compose`); the benchmarks' service
runs the app factory under uvicorn with uvloop and httptools instead. Each server's stdout and
stderr go to files under a ``logs`` directory (files, not pipes: a chatty server cannot block
on a full pipe nobody reads).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self
from urllib.parse import urlsplit

import httpx
import psutil

from support import memory
from support.compose import (
    EMULATOR_COMMAND,
    EMULATOR_HEALTH,
    PRIVATE_KEY,
    SERVICE_COMMAND,
    SERVICE_HEALTH,
    WEBHOOK_TOKEN,
    local_argv,
    local_service_env,
)
from support.processes import (
    LOOPBACK,
    STARTUP_DEADLINE,
    clean_env,
    free_port,
    stop_process,
    wait_healthy,
)

REPOSITORY: Final = Path(__file__).resolve().parents[1]
#: The benchmarks' service key: the emulator checks the header's shape, not the value.
BENCH_PRIVATE_KEY: Final = "pk_bench_not_a_real_key"


class StartupError(RuntimeError):
    """A server did not become healthy; the message carries its output."""


@dataclass
class Server:
    """One server process, its base URL, and the files its stdout and stderr go to."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        if port is None:
            raise ValueError(f"no port in {self.url}")
        return port

    def output(self) -> str:
        return "".join(p.read_text("utf-8", "replace") for p in (self.stdout, self.stderr))

    def stop(self) -> None:
        stop_process(self.process)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def rss_kib(self) -> int:
        """Resident set size of the server process (``VmRSS``), in KiB."""
        return memory.rss_kib(self.pid)

    def workers(self) -> list[psutil.Process]:
        return memory.workers(self.pid)

    def reset_peak_rss(self) -> None:
        memory.reset_peak_rss(self.pid)

    def peak_rss_mb(self) -> float:
        return memory.peak_rss_mb(self.pid)


def start(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    logs: Path,
    health: str,
    env: Mapping[str, str] | None = None,
    deadline: float = STARTUP_DEADLINE,
) -> Server:
    """Run ``argv`` (listening on ``LOOPBACK:port``) in a clean environment plus ``env``, and
    wait until ``health`` answers 200; raises :class:`StartupError` with its output if not."""
    stdout, stderr = logs / f"{name}.stdout", logs / f"{name}.stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(  # noqa: S603 -- our own argv
            list(argv), stdout=out, stderr=err, env=clean_env(env or {}), cwd=logs
        )
    server = Server(name, f"http://{LOOPBACK}:{port}", process, stdout, stderr)
    if wait_healthy(server.url + health, process, deadline):
        return server
    server.stop()
    raise StartupError(f"{name} did not become healthy; its output:\n{server.output()}")


def start_emulator(logs: Path) -> Server:
    """The emulator as compose runs it, on a free loopback port."""
    port = free_port()
    argv = local_argv(EMULATOR_COMMAND, host=LOOPBACK, port=port)
    return start("emulator", argv, port=port, logs=logs, health=EMULATOR_HEALTH)


def start_service(emulator_url: str, logs: Path, env: Mapping[str, str] | None = None) -> Server:
    """The service as compose runs it, delivering to ``emulator_url``; ``env`` overrides
    :func:`~support.compose.local_service_env`."""
    port = free_port()
    argv = local_argv(SERVICE_COMMAND, host=LOOPBACK, port=port)
    settings = local_service_env(emulator_url) | dict(env or {})
    return start("service", argv, port=port, logs=logs, health=SERVICE_HEALTH, env=settings)


def start_upstream_transformer(logs: Path) -> Server:
    """The stand-in rudder-transformer (:mod:`support.upstream_transformer`)."""
    port = free_port()
    argv = [sys.executable, "-m", "support.upstream_transformer", "--host", LOOPBACK]
    argv += ["--port", str(port)]
    env = {"PYTHONPATH": str(REPOSITORY)}
    return start("upstream", argv, port=port, logs=logs, health="/health", env=env)


def start_service_with(env: Mapping[str, str], logs: Path, *, module: str | None = None) -> Server:
    """The service as compose runs it, with exactly ``env`` (no compose defaults): e.g. no
    Klaviyo settings at all, for the embedded emulator. ``module``: a module of this
    repository run in its place with the same arguments (``bench.without_handler``)."""
    port = free_port()
    if module is None:
        argv = local_argv(SERVICE_COMMAND, host=LOOPBACK, port=port)
        return start("service", argv, port=port, logs=logs, health=SERVICE_HEALTH, env=env)
    argv = local_argv(SERVICE_COMMAND, host=LOOPBACK, port=port, module=module)
    env = {**env, "PYTHONPATH": str(REPOSITORY)}
    return start(module, argv, port=port, logs=logs, health=SERVICE_HEALTH, env=env)


def start_uvicorn_service(
    klaviyo_url: str, logs: Path, *, workers: int = 1, env: Mapping[str, str] | None = None
) -> Server:
    """The service under uvicorn with uvloop and httptools, delivering to ``klaviyo_url``.

    The app factory with the default settings and the access log off (at thousands of
    requests a second one log line each is a cost of its own): how the benchmarks run it.
    Returns once ``/ready`` answers and all ``workers`` are up.
    """
    port = free_port()
    argv = [
        sys.executable, "-m", "uvicorn",
        "klaviyo_destination.app:create_app",
        "--factory",
        "--host", LOOPBACK,
        "--port", str(port),
        "--loop", "uvloop",
        "--http", "httptools",
        "--no-access-log",
        "--log-level", "warning",
        "--workers", str(workers),
    ]  # fmt: skip
    settings = {"KLAVIYO_PRIVATE_API_KEY": BENCH_PRIVATE_KEY, "KLAVIYO_BASE_URL": klaviyo_url}
    settings |= dict(env or {})
    server = start(
        "service", argv, port=port, logs=logs, health="/ready", env=settings, deadline=30
    )
    if workers > 1:  # /ready answered from one worker; give the others time to start
        give_up = time.monotonic() + 20
        while time.monotonic() < give_up and len(server.workers()) < workers:
            time.sleep(0.2)
        time.sleep(1.0)
    return server


#: The header that presents the service's webhook token.
TOKEN_AUTH: Final = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}


@contextlib.contextmanager
def own_service(
    emulator_url: str, logs: Path, env: Mapping[str, str] | None = None
) -> Iterator[httpx.Client]:
    """A service process of its own (compose's env plus ``env``) and a client of it that
    presents the webhook token; the private key must not have reached the service's output."""
    with (
        start_service(emulator_url, logs, env) as server,
        httpx.Client(base_url=server.url, headers=TOKEN_AUTH, timeout=30) as client,
    ):
        yield client
    if PRIVATE_KEY in server.output():
        raise AssertionError("the private key reached the service's output")


@dataclass(frozen=True)
class Servers:
    emulator: Server
    service: Server

    @property
    def auth(self) -> dict[str, str]:
        """The header that presents the service's webhook token."""
        return dict(TOKEN_AUTH)


@contextlib.contextmanager
def running(service_env: Mapping[str, str], logs: Path | None = None) -> Iterator[Servers]:
    """Emulator and service (compose's env plus ``service_env``); both stopped on exit.

    Without ``logs`` the output goes to a temporary directory removed afterwards.
    """
    with contextlib.ExitStack() as stack:
        if logs is None:
            logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loopback-")))
        emulator = stack.enter_context(start_emulator(logs))
        service = stack.enter_context(start_service(emulator.url, logs, service_env))
        yield Servers(emulator, service)
