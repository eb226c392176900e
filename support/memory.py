"""A server's memory from ``/proc`` (Linux): resident set now, and peak per worker process."""

from __future__ import annotations

import contextlib
from pathlib import Path

import psutil


def _status_kib(pid: int, field: str) -> int:
    """A ``/proc/<pid>/status`` field given in kB (``VmRSS``, ``VmHWM``), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` (``VmRSS``), in KiB."""
    return _status_kib(pid, "VmRSS")


def _cmdline(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(process.cmdline())
    return ""


def workers(pid: int) -> list[psutil.Process]:
    """The processes that serve requests: the children with ``--workers``, else ``pid`` itself."""
    process = psutil.Process(pid)
    # uvicorn --workers spawns each worker through multiprocessing's spawn_main; the
    # resource tracker is a child too, but serves nothing.
    children = [c for c in process.children() if "spawn_main" in _cmdline(c)]
    return children or [process]


def reset_peak_rss(pid: int) -> None:
    """Writing 5 to ``clear_refs`` resets ``VmHWM`` of each worker: a new peak from now on."""
    for worker in workers(pid):
        with contextlib.suppress(OSError):
            Path(f"/proc/{worker.pid}/clear_refs").write_text("5")


def peak_rss_mb(pid: int) -> float:
    """The largest ``VmHWM`` (peak resident set) among the worker processes, in MB."""
    return max(_status_kib(worker.pid, "VmHWM") / 1024 for worker in workers(pid))
