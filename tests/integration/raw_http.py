"""HTTP/1.1 over raw sockets, for the tests that check the bytes a client reads from the real
``serve`` process; and the processor request they send."""

from __future__ import annotations

import socket
import time
from typing import Final

import orjson

from support.events import signed_up

LANE: Final = "/v0/destinations/klaviyo"
TWIN: Final = "/v0/destinations/KLAVIYO"  # FastAPI's route of the same handler, not a lane


def processor_body(count: int = 1) -> bytes:
    jobs = [
        {
            "message": signed_up(f"lane-{index}"),
            "metadata": {"jobId": index + 1, "destinationId": "d1"},
            "destination": {"ID": "d1", "Config": {"privateApiKey": "pk_lane_test"}},
        }
        for index in range(count)
    ]
    return orjson.dumps(jobs)


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, bool]:
    """What the server sends before it closes, and whether it closed within ``limit`` s."""
    received = b""
    give_up = time.monotonic() + limit
    while time.monotonic() < give_up:
        sock.settimeout(max(give_up - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionError:
            return received, True
        if not chunk:
            return received, True
        received += chunk
    return received, False


def read_answer(sock: socket.socket) -> bytes:
    """The one whole answer to the one request sent, however the server's writes arrive."""
    answers = Answers(sock)
    answer = answers.next()
    assert answers.buffer == b"", f"more than one answer: {answers.buffer[:200]!r}"
    return answer


class Answers:
    """The answers on one connection in order (pipelined ones may arrive in one read), each
    with a Content-Length."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def next(self) -> bytes:
        while b"\r\n\r\n" not in self.buffer:
            self._receive()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )
        while len(rest) < length:
            self._receive()
            rest = self.buffer.partition(b"\r\n\r\n")[2]
        self.buffer = rest[length:]
        return head + b"\r\n\r\n" + rest[:length]

    def _receive(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a whole answer; received {self.buffer[:500]!r}")
        self.buffer += chunk


def parsed(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers by lower-case name, and body."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers, body
