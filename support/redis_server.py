"""A real ``redis-server`` on a free loopback port, for the tests and the benchmarks.

Debian's ``redis-server`` package (``.ci/run`` installs it when missing). Nothing is saved to
disk (no RDB, no AOF): a restart is an empty Redis, the harder case for the shared limiter.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Final, Self

from support.processes import LOOPBACK, STARTUP_DEADLINE, free_port, stop_process

#: The binary, or ``None`` on a machine without the package (tests that need it skip).
REDIS_SERVER: Final = shutil.which("redis-server")
MISSING: Final = "redis-server is not installed (apt-get install -y redis-server; .ci/run does)"


def ping(port: int, timeout: float = 1.0) -> bool:
    """Whether a Redis on ``LOOPBACK:port`` answers ``PING``."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on a fixed port, which :meth:`stop` and :meth:`start`
    take down and bring back (empty) on the same port."""

    def __init__(self, logs: Path, port: int | None = None) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError(MISSING)
        self.port = port or free_port()
        self.url = f"redis://{LOOPBACK}:{self.port}/0"
        self._logs = logs
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        argv = [
            *(str(REDIS_SERVER), "--port", str(self.port), "--bind", LOOPBACK),
            *("--save", "", "--appendonly", "no", "--dir", str(self._logs)),
        ]
        with (self._logs / "redis.log").open("ab") as log:
            self._process = subprocess.Popen(argv, stdout=log, stderr=log)  # noqa: S603
        deadline = time.monotonic() + STARTUP_DEADLINE
        while not ping(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                output = (self._logs / "redis.log").read_text("utf-8", "replace")
                raise RuntimeError(f"redis-server did not start:\n{output}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)
            self._process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
