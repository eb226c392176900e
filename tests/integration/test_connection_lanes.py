"""The hot routes' lanes in the real ``serve`` process, over raw sockets, so what is checked is
the bytes a client reads. A lane request must read exactly as the same handler through FastAPI's
route (its twin), and as the same request to a service run with ``SERVE_LANES=off``; and keep
HTTP/1.1's rules: pipelined answers in order, ``Connection: close`` and HTTP/1.0, ``Expect:
100-continue``, a body that arrives in pieces, a stalled one.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import orjson
import pytest

from support.compose import local_service_env
from support.servers import Server, start_service_with

from .raw_http import (
    LANE,
    TWIN,
    Answers,
    parsed,
    processor_body,
    read_answer,
    read_until_closed,
)


def request(
    server: Server,
    path: str,
    body: bytes,
    *,
    version: str = "1.1",
    extra: str = "",
) -> bytes:
    head = (
        f"POST {path} HTTP/{version}\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode() + body


@contextlib.contextmanager
def loopback_service(emulator_server: Server, logs: Path, serve_lanes: str) -> Iterator[Server]:
    # No WEBHOOK_TOKEN: loopback only, so the edge's Host and Content-Type checks are on.
    env = local_service_env(emulator_server.url) | {"BODY_TIMEOUT": "2", "SERVE_LANES": serve_lanes}
    env.pop("WEBHOOK_TOKEN", None)
    with start_service_with(env, logs) as server:
        yield server


@pytest.fixture(scope="module")
def lanes_service(
    emulator_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with loopback_service(emulator_server, tmp_path_factory.mktemp("lanes"), "on") as server:
        yield server


@pytest.fixture(scope="module")
def plain_service(
    emulator_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """``klaviyo-destination serve`` with ``SERVE_LANES=off``: FastAPI's whole way."""
    with loopback_service(emulator_server, tmp_path_factory.mktemp("plain"), "off") as server:
        yield server


def round_trip(server: Server, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(data)
        return read_answer(sock)


def identify_body() -> bytes:
    """An identify job: its lane waits for a Klaviyo look-up before it answers."""
    message = {
        "type": "identify",
        "userId": "lane-identify",
        "messageId": "lane-identify-1",
        "traits": {"email": "lane-identify@example.com", "firstName": "Ada"},
    }
    job = {
        "message": message,
        "metadata": {"jobId": 1, "destinationId": "d1"},
        "destination": {"ID": "d1", "Config": {"privateApiKey": "pk_lane_test"}},
    }
    return orjson.dumps([job])


TWIN_CASES: Final = {
    "one track event": processor_body(),
    "identify, with its look-up": identify_body(),
    "three events": processor_body(3),
    "not JSON": b"[{",
    "not an array": b'{"jobs": []}',
}


@pytest.mark.parametrize("body", TWIN_CASES.values(), ids=TWIN_CASES.keys())
def test_a_lane_answer_reads_byte_for_byte_as_the_routes(
    lanes_service: Server, body: bytes
) -> None:
    extra = "X-Request-ID: twin-check\r\n"
    lane_answer = round_trip(lanes_service, request(lanes_service, LANE, body, extra=extra))
    twin_answer = round_trip(lanes_service, request(lanes_service, TWIN, body, extra=extra))
    lane_status, lane_headers, lane_body = parsed(lane_answer)
    twin_status, twin_headers, twin_body = parsed(twin_answer)
    assert (lane_status, lane_body) == (twin_status, twin_body)
    lane_headers.pop("date"), twin_headers.pop("date")  # the second may turn between the two
    assert lane_headers == twin_headers
    assert lane_headers["x-request-id"] == "twin-check"
    assert lane_headers["apiversion"] == "2"
    assert without_date(lane_answer) == without_date(twin_answer)  # the headers' order too


def without_date(answer: bytes) -> bytes:
    return re.sub(rb"\r\ndate: [^\r]*", b"", answer, flags=re.IGNORECASE)


PLAIN_CASES: Final = {
    "one track event": (LANE, processor_body(), ""),
    "three events, the twin route": (TWIN, processor_body(3), ""),
    "not JSON": (LANE, b"[{", ""),
    "a form post": (LANE, processor_body(), "Content-Type: text/plain\r\n"),
    "closing after it": (LANE, processor_body(), "Connection: close\r\n"),
    "health": ("/health", b"", ""),
}


def test_a_lane_that_waits_for_klaviyo_answers_after_the_look_up(
    lanes_service: Server, emulator_server: Server
) -> None:
    status, _, body = parsed(
        round_trip(lanes_service, request(lanes_service, LANE, identify_body()))
    )
    [item] = orjson.loads(body)
    assert (status, item["statusCode"]) == (200, 200)
    # the PATCH names the profile the emulator gave the look-up: the lane waited for it
    assert item["output"]["method"] == "PATCH"
    assert item["output"]["endpoint"].startswith(emulator_server.url + "/api/profiles/")


def test_an_edge_refusal_reads_the_same_from_a_lane(lanes_service: Server) -> None:
    data = request(lanes_service, LANE, b"[]").replace(b"Host: 127.0.0.1", b"Host: evil.example")
    status, headers, body = parsed(round_trip(lanes_service, data))
    assert status == 421
    assert orjson.loads(body)["error"]["field"] == "Host"
    assert len(headers["x-request-id"]) == 32


def test_pipelined_requests_are_answered_in_order(lanes_service: Server) -> None:
    ids = ["p-1", "p-2", "p-3", "p-4"]
    data = b"".join(
        request(lanes_service, path, processor_body(), extra=f"X-Request-ID: {rid}\r\n")
        for rid, path in zip(ids, [LANE, TWIN, LANE, LANE], strict=True)
    )
    answered = []
    with socket.create_connection(("127.0.0.1", lanes_service.port), timeout=5) as sock:
        sock.sendall(data)  # all four in one write: each waits for the answer before it
        answers = Answers(sock)  # and their answers may come in one read
        for _ in ids:
            status, headers, _ = parsed(answers.next())
            answered.append((status, headers["x-request-id"]))
    assert answered == [(200, rid) for rid in ids]


def test_a_keep_alive_connection_serves_one_request_after_another(lanes_service: Server) -> None:
    with socket.create_connection(("127.0.0.1", lanes_service.port), timeout=5) as sock:
        for index in range(3):
            sock.sendall(
                request(lanes_service, LANE, processor_body(), extra=f"X-Request-ID: k{index}\r\n")
            )
            status, headers, _ = parsed(read_answer(sock))
            assert (status, headers["x-request-id"]) == (200, f"k{index}")
            assert "connection" not in headers


@pytest.mark.parametrize(
    ("version", "extra"),
    [("1.1", "Connection: close\r\n"), ("1.0", "")],
    ids=["Connection: close", "HTTP/1.0"],
)
def test_a_lane_closes_when_the_request_asks_for_it(
    lanes_service: Server, version: str, extra: str
) -> None:
    with socket.create_connection(("127.0.0.1", lanes_service.port), timeout=5) as sock:
        sock.sendall(request(lanes_service, LANE, processor_body(), version=version, extra=extra))
        received, closed = read_until_closed(sock, 3)
    status, headers, body = parsed(received)
    assert status == 200
    assert headers["connection"] == "close"
    assert len(body) == int(headers["content-length"])
    assert closed


def test_expect_100_continue_is_answered_before_the_body(lanes_service: Server) -> None:
    body = processor_body()
    data = request(lanes_service, LANE, body, extra="Expect: 100-continue\r\n")
    head = data[: len(data) - len(body)]
    with socket.create_connection(("127.0.0.1", lanes_service.port), timeout=5) as sock:
        sock.sendall(head)
        interim = sock.recv(1024)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(body)
        status, _, answer = parsed(read_answer(sock))
    assert status == 200
    assert orjson.loads(answer)[0]["statusCode"] == 200


def test_a_body_in_pieces_is_read_to_its_end(lanes_service: Server) -> None:
    body = processor_body(2)
    data = request(lanes_service, LANE, body)
    with socket.create_connection(("127.0.0.1", lanes_service.port), timeout=5) as sock:
        for start in range(0, len(data), 700):
            sock.sendall(data[start : start + 700])
            time.sleep(0.05)
        status, _, answer = parsed(read_answer(sock))
    assert status == 200
    items: list[dict[str, Any]] = orjson.loads(answer)
    assert [item["metadata"]["jobId"] for item in items] == [1, 2]


def test_a_stalled_lane_body_gets_a_408_and_the_connection_closes(lanes_service: Server) -> None:
    body = processor_body()
    data = request(lanes_service, LANE, body)
    with socket.create_connection(("127.0.0.1", lanes_service.port), timeout=5) as sock:
        sock.sendall(data[: len(data) - 10])  # the rest never comes
        received, closed = read_until_closed(sock, 5)
    status, headers, answer = parsed(received)
    assert status == 408
    assert orjson.loads(answer)["error"]["field"] == "body"
    assert headers["connection"] == "close"
    assert closed


@pytest.mark.parametrize("case", PLAIN_CASES.values(), ids=PLAIN_CASES.keys())
def test_serve_with_the_lanes_off_answers_byte_for_byte_as_with_them(
    lanes_service: Server, plain_service: Server, case: tuple[str, bytes, str]
) -> None:
    path, body, extra = case
    answers = []
    for server in (lanes_service, plain_service):
        data = request(server, path, body, extra=f"X-Request-ID: same\r\n{extra}")
        if path == "/health":
            data = data.replace(b"POST", b"GET", 1)
        answers.append(without_date(round_trip(server, data)))
    with_lanes, without = answers
    assert with_lanes == without
    assert with_lanes.startswith(b"HTTP/1.1 ")
