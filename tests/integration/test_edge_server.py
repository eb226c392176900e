"""The HTTP edge of the real ``serve`` process on 127.0.0.1, over raw sockets: header size and
time limits, stalled bodies, the connection cap, keep-alive, a 413 an ordinary client can read,
and the drain on SIGTERM. Small numbers, so it runs in ``make test``; the big ones (128 MB
headers, thousands of connections) are ``reliability/edge.py``.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import psutil
import pytest

from support.compose import WEBHOOK_TOKEN
from support.emulator_control import EmulatorControl
from support.events import signed_up
from support.servers import TOKEN_AUTH, Server, start_service

from .raw_http import Answers, read_answer, read_until_closed

#: Short limits, so that each is reached within a test.
EDGE_ENV: Final = {
    "HEADER_TIMEOUT": "1",
    "BODY_TIMEOUT": "1",
    "KEEPALIVE_TIMEOUT": "1",
    "MAX_INBOUND_CONNECTIONS": "40",
}
AUTH: Final = f"Authorization: Bearer {WEBHOOK_TOKEN}\r\n"
TRACK: Final = signed_up("edge-1")


@pytest.fixture(scope="module")
def edge(emulator_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with start_service(emulator_server.url, tmp_path_factory.mktemp("edge"), EDGE_ENV) as server:
        yield server


def connect(server: Server, timeout: float = 5) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)


def status_and_body(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def post_head(server: Server, length: int, *, extra: str = "") -> bytes:
    return (
        f"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{AUTH}"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


def health(server: Server) -> httpx.Response:
    return httpx.get(f"{server.url}/health", timeout=3)


# --- item 8: header size, header time, stalled bodies, the connection cap, keep-alive ----------


def test_a_huge_header_is_refused_before_it_costs_memory(edge: Server) -> None:
    edge.reset_peak_rss()
    before = edge.peak_rss_mb()
    sent, refused = 0, False
    with connect(edge) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        chunk = b"a" * 65536
        while sent < 16 * 1024 * 1024:  # 16 MB of one header value
            try:
                sock.sendall(chunk)
            except ConnectionError:
                refused = True
                break
            sent += len(chunk)
        answer, closed = read_until_closed(sock, 5)
    growth = edge.peak_rss_mb() - before
    assert refused or closed, "the server took a 16 MB header"
    assert growth < 8, f"peak RSS grew {growth:.1f} MB for a refused header"
    if answer:  # the 431 may be lost to the reset of a socket still being written
        assert status_and_body(answer)[0] == 431
    assert health(edge).status_code == 200


def test_a_large_but_allowed_header_passes(edge: Server) -> None:
    response = httpx.get(f"{edge.url}/health", headers={"X-Pad": "a" * 20_000}, timeout=3)
    assert response.status_code == 200


def test_half_sent_headers_are_closed_after_header_timeout(edge: Server) -> None:
    with connect(edge) as silent, connect(edge) as partial:
        partial.sendall(b"POST /v1/events HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        started = time.monotonic()
        answer, closed = read_until_closed(partial, 5)
        assert closed, "a request whose headers never end is held open"
        assert 0.5 < time.monotonic() - started < 3
        status, body = status_and_body(answer)
        assert status == 408
        assert body["error"] == {
            "code": "request_timeout",
            "message": "the request headers did not arrive in time (HEADER_TIMEOUT)",
            "field": "headers",
        }
        nothing, closed = read_until_closed(silent, 2)
        assert closed, "a connection that sends nothing is held open"
        assert nothing == b""  # nothing was asked: no answer


def test_each_request_on_a_connection_gets_its_own_header_timeout(edge: Server) -> None:
    """The header deadline runs from each request's first byte, however the requests before it
    on the same connection were timed."""
    get = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{edge.port}\r\n\r\n".encode()
    with connect(edge) as sock:
        for pause in (0.0, 0.45):  # two whole requests, the second within the first's second
            time.sleep(pause)
            sock.sendall(get)
            assert read_answer(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(0.3)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        started = time.monotonic()
        answer, closed = read_until_closed(sock, 5)
    assert closed
    assert 0.8 < time.monotonic() - started < 3, "not HEADER_TIMEOUT from this request's start"
    assert status_and_body(answer)[0] == 408


def get_head(server: Server, extra: str = "") -> bytes:
    return f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n{extra}".encode()


def post_track(server: Server, message_id: str) -> bytes:
    body = json.dumps(signed_up(message_id)).encode()
    return post_head(server, len(body)) + body


#: What a pipelining client sends after a request that waits on Klaviyo: the next request's
#: first bytes, or a whole request and the first bytes of a third.
PIPELINED: Final = {
    "next request begun": [],
    "a whole request, then a third begun": ["GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"],
}


@pytest.mark.parametrize("between", list(PIPELINED.values()), ids=list(PIPELINED))
def test_pipelined_headers_do_not_cost_the_answers_before_them(
    edge: Server, emulator: EmulatorControl, between: list[str]
) -> None:
    """Issue 27 A5: the header clock of a request waiting behind an answer owed starts when
    that answer is written; uvicorn reads no further meanwhile, so the client could not finish
    those headers (plain uvicorn answers the earlier requests too)."""
    emulator.fault(latency_ms=1500)  # longer than HEADER_TIMEOUT (1 s)
    with connect(edge) as sock:
        sock.sendall(
            post_track(edge, "a5") + "".join(between).encode() + get_head(edge, "X-Slow: ")
        )
        answers = Answers(sock)
        delivered = answers.next()
        others = [answers.next() for _ in between]
        rest, closed = read_until_closed(sock, 5)
    assert status_and_body(delivered)[0] == 200, delivered
    assert [status_and_body(a)[0] for a in others] == [200] * len(others)
    assert closed
    assert status_and_body(answers.buffer + rest)[0] == 408  # the unfinished one, afterwards
    assert len(emulator.requests()) == 1


def test_a_408_for_headers_begun_in_the_same_read_as_the_request_before(edge: Server) -> None:
    """Issue 27 K1: the next request's first bytes came with the previous request."""
    with connect(edge) as sock:
        sock.sendall(get_head(edge, "\r\n") + get_head(edge, "X-Slow: "))
        answers = Answers(sock)
        first = answers.next()
        rest, closed = read_until_closed(sock, 5)
    assert status_and_body(first)[0] == 200
    assert closed
    status, body = status_and_body(answers.buffer + rest)
    assert status == 408
    assert body["error"]["field"] == "headers"


@pytest.mark.parametrize("kib", [33, 64, 100])
def test_headers_over_max_header_bytes_in_one_write_get_a_431(edge: Server, kib: int) -> None:
    """Issue 27 C1: a head that arrives whole in one read is never seen unfinished."""
    with connect(edge) as sock:
        sock.sendall(get_head(edge, f"X-Big: {'a' * (kib * 1024)}\r\n\r\n"))
        answer, closed = read_until_closed(sock, 5)
    assert closed
    status, body = status_and_body(answer)
    assert status == 431
    assert body["error"]["code"] == "headers_too_large"


def test_an_oversized_pipelined_head_is_refused_after_the_answer_before_it(edge: Server) -> None:
    big = get_head(edge, f"X-Big: {'a' * 40_000}\r\n\r\n")
    with connect(edge) as sock:
        sock.sendall(get_head(edge, "\r\n") + big)
        answers = Answers(sock)
        first = answers.next()
        rest, closed = read_until_closed(sock, 5)
    assert status_and_body(first)[0] == 200
    assert closed
    assert status_and_body(answers.buffer + rest)[0] == 431


def test_a_websocket_handshake_gets_a_404_and_no_traceback(edge: Server) -> None:
    """Issue 27 C2, on the real ``serve`` (tests/api/test_edge.py: every way of serving)."""
    upgrade = (
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Request-ID: ws-c2\r\n\r\n"
    )
    with connect(edge) as sock:
        sock.sendall(get_head(edge, upgrade))
        answer, closed = read_until_closed(sock, 5)
    assert closed
    status, body = status_and_body(answer)
    assert (status, body["error"]["field"]) == (404, "Upgrade")
    lines = [line for line in edge.output().splitlines() if "ws-c2" in line]
    assert len(lines) == 1, lines
    assert "Traceback" not in edge.output()


def test_a_stalled_body_is_cut_after_body_timeout(edge: Server) -> None:
    with connect(edge) as sock:
        sock.sendall(post_head(edge, 1000) + b'[{"type": "track"')
        started = time.monotonic()
        answer, closed = read_until_closed(sock, 5)
    assert closed, "the stalled body is still being waited for"
    assert time.monotonic() - started < 3
    status, body = status_and_body(answer)
    assert status == 408
    assert body["error"] == {
        "code": "request_timeout",
        "message": "the request body did not arrive in time (BODY_TIMEOUT)",
        "field": "body",
    }
    assert b"connection: close" in answer.lower()


def _established(server: Server) -> int:
    connections = psutil.Process(server.pid).net_connections(kind="tcp")
    return sum(
        1
        for c in connections
        if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == server.port
    )


def test_idle_connections_beyond_the_cap_do_not_stop_health(edge: Server) -> None:
    with contextlib.ExitStack() as stack:
        for _ in range(200):
            sock = stack.enter_context(connect(edge))
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")  # and never the end
        started = time.monotonic()
        assert health(edge).status_code == 200
        assert time.monotonic() - started < 1
        held = _established(edge)
    assert held <= 40 + 1, f"{held} connections held, MAX_INBOUND_CONNECTIONS is 40"


def test_busy_connections_at_the_cap_get_a_503(edge: Server) -> None:
    with contextlib.ExitStack() as stack:
        for _ in range(45):  # every one inside a request: its body is on its way
            sock = stack.enter_context(connect(edge))
            sock.sendall(post_head(edge, 1000) + b"[")
        time.sleep(0.2)
        response = health(edge)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "too_many_connections"
    time.sleep(1.2)  # the stalled bodies are cut (BODY_TIMEOUT): room again
    assert health(edge).status_code == 200


def test_an_idle_keep_alive_connection_is_closed_after_keepalive_timeout(edge: Server) -> None:
    with connect(edge) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        _, closed = read_until_closed(sock, 3)
    assert closed
    assert time.monotonic() - started < 2


# --- item 9: a 413 that an ordinary client can read ---------------------------------------------


def test_urllib_reads_the_413_of_a_7_mb_body(edge: Server, emulator: EmulatorControl) -> None:
    """urllib writes the whole body before it reads: the service must read it too."""
    body = json.dumps([TRACK | {"pad": "x" * (7 * 1024 * 1024)}]).encode()
    request = urllib.request.Request(  # noqa: S310 -- http on loopback
        f"{edge.url}/v1/events",
        data=body,
        headers={"Content-Type": "application/json", **TOKEN_AUTH},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310 -- http on loopback
    assert refused.value.code == 413
    error = json.loads(refused.value.read())["error"]
    assert error["code"] == "payload_too_large"
    assert emulator.requests() == []


def test_a_body_far_beyond_the_drain_bound_is_refused_at_once(edge: Server) -> None:
    with connect(edge) as sock:
        sock.sendall(post_head(edge, 500 * 1024 * 1024) + b"[" * 1000)
        answer, closed = read_until_closed(sock, 3)
    assert closed
    assert status_and_body(answer)[0] == 413
    assert b"connection: close" in answer.lower()


# --- item 12: SIGTERM drains what is in flight, within SHUTDOWN_TIMEOUT -------------------------


def _post_in_thread(server: Server) -> tuple[threading.Thread, list[httpx.Response | Exception]]:
    answers: list[httpx.Response | Exception] = []

    def post() -> None:
        try:
            answers.append(
                httpx.post(f"{server.url}/v1/events", json=TRACK, headers=TOKEN_AUTH, timeout=30)
            )
        except httpx.HTTPError as exc:
            answers.append(exc)

    thread = threading.Thread(target=post)
    thread.start()
    return thread, answers


def _terminate_during_delivery(server: Server, emulator: EmulatorControl) -> float:
    """SIGTERM once the delivery is waiting on Klaviyo; seconds until the process exited."""
    for _ in range(200):
        if emulator.requests():
            break
        time.sleep(0.02)
    server.process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    with contextlib.suppress(Exception):
        server.process.wait(timeout=15)
    return time.monotonic() - started


def test_sigterm_lets_a_delivery_in_flight_finish(
    emulator_server: Server, emulator: EmulatorControl, tmp_path: Path
) -> None:
    emulator.fault(latency_ms=1500)
    with start_service(emulator_server.url, tmp_path, {"SHUTDOWN_TIMEOUT": "10"}) as server:
        thread, answers = _post_in_thread(server)
        waited = _terminate_during_delivery(server, emulator)
        thread.join(10)
    [answer] = answers
    assert isinstance(answer, httpx.Response), answer
    assert answer.status_code == 200, answer.text
    assert waited < 5
    assert server.process.returncode is not None  # uvicorn re-raises SIGTERM once drained


def test_sigterm_waits_no_longer_than_shutdown_timeout(
    emulator_server: Server, emulator: EmulatorControl, tmp_path: Path
) -> None:
    emulator.fault(latency_ms=3000)
    env = {"SHUTDOWN_TIMEOUT": "1", "DELIVERY_DEADLINE": "20", "READ_TIMEOUT": "20"}
    with start_service(emulator_server.url, tmp_path, env) as server:
        thread, _ = _post_in_thread(server)
        waited = _terminate_during_delivery(server, emulator)
        thread.join(10)
    assert waited < 2.5, f"exited {waited:.1f} s after SIGTERM, SHUTDOWN_TIMEOUT is 1"
    # The emulator still holds the abandoned request; let it land before the next test.
    for _ in range(300):
        if emulator.state()["events"]:
            break
        time.sleep(0.02)
