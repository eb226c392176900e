"""Subprocesses on loopback: a free port, a clean environment, a health probe and a sure stop."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Mapping
from typing import Final

import httpx

LOOPBACK: Final = "127.0.0.1"
STARTUP_DEADLINE: Final = 20.0
STOP_TIMEOUT: Final = 10.0
#: What the subprocesses inherit from this one (coverage's ``COVERAGE_*`` too).
_PASSED_ENV: Final = frozenset({"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT"})


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """A minimal environment plus ``extra``: no setting leaks in from the developer's shell."""
    kept = {k: v for k, v in os.environ.items() if k in _PASSED_ENV or k.startswith("COVERAGE_")}
    return kept | {"PYTHONUNBUFFERED": "1"} | dict(extra)


def wait_healthy(
    url: str, process: subprocess.Popen[bytes], deadline: float = STARTUP_DEADLINE
) -> bool:
    """Poll ``url`` until it answers 200 (True), or the process dies or time runs out (False)."""
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up and process.poll() is None:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        time.sleep(0.05)
    return False


def wait_listening(port: int, deadline: float = 10.0) -> bool:
    """Wait until something accepts TCP connections on ``LOOPBACK:port`` (True) or time runs out."""
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up:
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.2):
            return True
        time.sleep(0.05)
    return False


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate, wait, and kill if it does not go: no server outlives its run."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
