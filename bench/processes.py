"""Start the emulator and the service as subprocesses on loopback, and read their peak RSS."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
from tests.processes import free_port, stop_process, wait_healthy

BIN = Path(sys.executable).parent
HOST = "127.0.0.1"


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    if not wait_healthy(url, process, timeout):
        raise RuntimeError(f"{process.args!r} not ready at {url} (exit code {process.poll()})")


@contextlib.contextmanager
def _running(
    command: list[str], ready_url: str, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(  # noqa: S603 -- our own console scripts
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_ready(ready_url, process)
        yield process
    finally:
        stop_process(process)


@contextlib.contextmanager
def emulator() -> Iterator[str]:
    """``klaviyo-destination emulator`` on a free port; yields its base URL."""
    port = free_port()
    url = f"http://{HOST}:{port}"
    command = [str(BIN / "klaviyo-destination"), "emulator", "--host", HOST, "--port", str(port)]
    with _running(command, f"{url}/__emulator/health", dict(os.environ)):
        yield url


@dataclass(frozen=True, slots=True)
class Service:
    url: str
    port: int
    pid: int

    def workers(self) -> list[psutil.Process]:
        """The processes that serve requests: the children with ``--workers``, else the one."""
        process = psutil.Process(self.pid)
        # uvicorn --workers spawns each worker through multiprocessing's spawn_main; the
        # resource tracker is a child too, but serves nothing.
        children = [c for c in process.children() if "spawn_main" in _cmdline(c)]
        return children or [process]

    def reset_peak_rss(self) -> None:
        """Linux: writing 5 to clear_refs resets VmHWM, so each scenario gets its own peak."""
        for worker in self.workers():
            with contextlib.suppress(OSError):
                Path(f"/proc/{worker.pid}/clear_refs").write_text("5")

    def peak_rss_mb(self) -> float:
        """The largest VmHWM (peak resident set) among the worker processes, in MB."""
        peaks = []
        for worker in self.workers():
            for line in Path(f"/proc/{worker.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks.append(int(line.split()[1]) / 1024)
        return max(peaks)


def _cmdline(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(process.cmdline())
    return ""


@contextlib.contextmanager
def service(
    klaviyo_url: str, *, workers: int = 1, env_overrides: dict[str, str] | None = None
) -> Iterator[Service]:
    """The service under uvicorn with uvloop and httptools, delivering to ``klaviyo_url``.

    Started the way ``klaviyo-destination serve`` starts it (the app factory), with the access
    log off: at thousands of requests a second one log line each is a cost of its own.
    """
    port = free_port()
    env = {
        **os.environ,
        "KLAVIYO_PRIVATE_API_KEY": "pk_bench_not_a_real_key",
        "KLAVIYO_BASE_URL": klaviyo_url,
        **(env_overrides or {}),
    }
    command = [
        str(BIN / "uvicorn"),
        "klaviyo_destination.app:create_app",
        "--factory",
        "--host", HOST,
        "--port", str(port),
        "--loop", "uvloop",
        "--http", "httptools",
        "--no-access-log",
        "--log-level", "warning",
        "--workers", str(workers),
    ]  # fmt: skip
    url = f"http://{HOST}:{port}"
    with _running(command, f"{url}/ready", env) as process:
        if workers > 1:  # /ready answered from one worker; give the others time to start
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if len(Service(url, port, process.pid).workers()) >= workers:
                    break
                time.sleep(0.2)
            time.sleep(1.0)
        yield Service(url, port, process.pid)


@contextlib.contextmanager
def canned_server() -> Iterator[int]:
    """The do-nothing HTTP server of ``bench.loadgen`` in its own process; yields its port."""
    port = free_port()
    code = (
        "import asyncio, sys, uvloop; sys.path.insert(0, sys.argv[2]); "
        "from bench.loadgen import serve_canned; uvloop.run(serve_canned(int(sys.argv[1])))"
    )
    root = str(Path(__file__).resolve().parent.parent)
    process = subprocess.Popen([sys.executable, "-c", code, str(port), root])  # noqa: S603
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((HOST, port), 0.2):
                break
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)
