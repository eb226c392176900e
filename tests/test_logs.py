"""Log lines as an operator reads them: rendered by the service's own formatter, fields kept.

``logs.configure`` installs the real handler (formatter and secret filter) on the root logger;
the tests parse what it printed, so a field that never reaches the output fails here.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
import respx
import stamina
from pydantic import SecretStr

from klaviyo_destination import logs
from klaviyo_destination.cli import _parser
from klaviyo_destination.settings import Settings
from tests.helpers.apps import Build, served

KEY = "pk_logs_SECRET_0123456789"
TOKEN = "hook-logs-SECRET-42"
BASE = "https://a.klaviyo.com"
TRACK = {"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "m1"}
Lines = list[dict[str, Any]]


@pytest.fixture
def printed() -> Iterator[Any]:
    """Install the real handler (formatter and filter) writing to a buffer instead of stdout;
    the fixture's value reads back the JSON lines printed since the last read."""
    root = logging.getLogger()
    level = root.level
    logs.configure([KEY, TOKEN], "INFO", json=True)
    [handler] = [h for h in root.handlers if h.get_name() == "klaviyo-destination"]
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    handler.setStream(buffer)

    def lines() -> Lines:
        out = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return [orjson.loads(line) for line in out.splitlines()]

    yield lines
    for handler in list(root.handlers):
        if handler.get_name() == "klaviyo-destination":
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    stamina.set_testing(True, attempts=3, cap=True)
    yield
    stamina.set_testing(False)


@pytest.fixture
def klaviyo() -> respx.MockRouter:
    return respx.MockRouter(base_url=BASE, assert_all_called=False)


@pytest.fixture
async def client(build: Build, klaviyo: respx.MockRouter) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        klaviyo_private_api_key=SecretStr(KEY),
        webhook_token=SecretStr(TOKEN),
        max_attempts=3,
        backoff_initial=0.01,
        backoff_max=0.02,
    )
    app = build(settings, transport=httpx.MockTransport(klaviyo.async_handler))
    async with served(app, "http://svc") as c:
        yield c


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def request_lines(lines: Lines) -> Lines:
    return [line for line in lines if line["logger"] == "klaviyo_destination.requests"]


def test_extra_fields_are_rendered(printed: Any) -> None:
    logging.getLogger("klaviyo_destination.test").info(
        "klaviyo retry scheduled", extra={"endpoint": "/api/events", "retry_wait": 2.5}
    )
    [line] = printed()
    assert line["message"] == "klaviyo retry scheduled"
    assert (line["endpoint"], line["retry_wait"], line["level"]) == ("/api/events", 2.5, "info")


def test_secrets_are_masked_in_fields_and_messages(printed: Any) -> None:
    logging.getLogger("klaviyo_destination.test").warning(
        "echo %s", KEY, extra={"header": f"Klaviyo-API-Key {KEY}", "nested": {"t": TOKEN}}
    )
    [line] = printed()
    text = orjson.dumps(line).decode()
    assert KEY not in text
    assert TOKEN not in text
    assert line["header"] == "Klaviyo-API-Key **********"


def test_terminal_format_shows_fields() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "GET /health 200", None, None)
    record.status = 200
    record.request_id = "abc"
    assert logs.TextFormatter().format(record).endswith("GET /health 200 status=200 request_id=abc")


@pytest.mark.usefixtures("printed")
def test_httpx_is_quiet_below_warning() -> None:
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("httpcore").getEffectiveLevel() == logging.WARNING


@pytest.mark.anyio
async def test_one_line_per_request_with_counts_and_request_id(
    client: httpx.AsyncClient, klaviyo: respx.MockRouter, printed: Any
) -> None:
    klaviyo.post("/api/events").respond(202)
    response = await client.post(
        "/v1/events", json=[TRACK, {"type": "page"}], headers={**auth(), "X-Request-ID": "req-7"}
    )
    assert response.status_code == 207
    assert response.headers["x-request-id"] == "req-7"
    [line] = request_lines(printed())
    assert {k: line[k] for k in ("method", "path", "status", "request_id")} == {
        "method": "POST",
        "path": "/v1/events",
        "status": 207,
        "request_id": "req-7",
    }
    assert (line["events"], line["delivered"], line["rejected"], line["failed"]) == (2, 1, 1, 0)
    assert line["duration_ms"] >= 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "headers", "body", "status", "code"),
    [
        ("/v1/events", {}, b"{}", 401, "unauthorized"),
        ("/v1/events", "auth", b"{not json", 400, "invalid_request"),
        ("/customTransform", "auth", b"{}", 501, "not_served"),
        # not rudder-transformer's route either: a 404 naming the nearest of ours
        ("/v1/nowhere", "auth", b"{}", 404, "http_404"),
    ],
    ids=["no-token", "bad-json", "not-served", "no-route"],
)
async def test_a_refused_request_says_why(
    client: httpx.AsyncClient,
    printed: Any,
    path: str,
    headers: Any,
    body: bytes,
    status: int,
    code: str,
) -> None:
    sent = auth() if headers == "auth" else headers
    response = await client.post(path, content=body, headers=sent)
    assert response.status_code == status
    [line] = request_lines(printed())
    assert (line["status"], line["error"]) == (status, code)
    assert line["reason"]
    assert len(response.headers["x-request-id"]) == 32  # none sent: a new one


@pytest.mark.anyio
async def test_an_odd_request_id_is_replaced(client: httpx.AsyncClient, printed: Any) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "x" * 500})
    [line] = request_lines(printed())
    assert line["request_id"] == response.headers["x-request-id"] != "x" * 500


@pytest.mark.anyio
async def test_a_retry_line_names_endpoint_reason_and_wait(
    client: httpx.AsyncClient, klaviyo: respx.MockRouter, printed: Any
) -> None:
    klaviyo.post("/api/events").mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(202)]
    )
    response = await client.post("/v1/events", json=TRACK, headers=auth())
    assert response.status_code == 200
    lines = printed()
    [retry] = [line for line in lines if line["message"] == "klaviyo retry scheduled"]
    assert (retry["endpoint"], retry["reason"], retry["attempt"]) == ("/api/events", "429", 1)
    assert retry["retry_wait"] >= 0
    # one line per retry: stamina's own "retry scheduled" line is switched off
    assert not [line for line in lines if line["logger"] == "stamina"]


def test_log_level_from_the_command_line_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _parser().parse_args(["serve", "--log-level", "debug"]).log_level == "DEBUG"
    monkeypatch.setenv("LOG_LEVEL", "warning")
    assert Settings().log_level == "WARNING"


def test_basic_auth_header_in_a_field_is_masked(printed: Any) -> None:
    basic = base64.b64encode(f":{TOKEN}".encode()).decode()
    logging.getLogger("klaviyo_destination.test").info("x", extra={"token": TOKEN, "b": basic})
    [line] = printed()
    assert line["token"] == "**********"


@contextlib.contextmanager
def our_handler_alone() -> Iterator[None]:
    """Only the service's handler on the root logger, as in ``serve``: pytest's capture handlers
    otherwise send every line through ``logger.log`` (log_fields' path when others listen).
    Restored in place, within the test, so that pytest removes its handlers from the list it
    added them to."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [h for h in saved if h.get_name() == "klaviyo-destination"]
    try:
        yield
    finally:
        root.handlers[:] = saved


class Opaque:
    def __repr__(self) -> str:
        return f"<opaque {KEY}>"


@pytest.mark.usefixtures("printed")
def test_log_fields_writes_the_line_logger_log_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_790_000_000.25)  # one clock for both lines
    logger = logging.getLogger("klaviyo_destination.requests")
    fields = {
        "method": "POST",
        "path": "/v1/events",
        "status": 401,
        "duration_ms": 0.25,
        "request_id": "req-ü",
        "reason": f"Authorization: Bearer {TOKEN}",
        "key": KEY,
        "seen": Opaque(),
        "nested": {"jobs": [1, None]},
    }
    with our_handler_alone():
        logger.log(logging.WARNING, "%s %s %d", "POST", "/v1/events", 401, extra=fields)
        logs.log_fields(logger, logging.WARNING, fields, "%s %s %d", "POST", "/v1/events", 401)
    root = logging.getLogger()
    [handler] = [h for h in root.handlers if h.get_name() == "klaviyo-destination"]
    assert isinstance(handler, logging.StreamHandler)
    text = handler.stream.getvalue()
    first, second = text.splitlines()
    assert first == second
    assert KEY not in text
    assert TOKEN not in text
    assert orjson.loads(first)["seen"] == "<opaque **********>"


def test_log_fields_keeps_to_the_log_level(printed: Any) -> None:
    logging.getLogger().setLevel(logging.WARNING)
    logger = logging.getLogger("klaviyo_destination.requests")
    with our_handler_alone():
        logs.log_fields(logger, logging.INFO, {"status": 200}, "GET /health 200")
        logs.log_fields(logger, logging.WARNING, {"status": 500}, "GET /health 500")
    [line] = printed()
    assert (line["level"], line["message"], line["status"]) == ("warning", "GET /health 500", 500)


def test_log_fields_gives_other_handlers_the_record(
    printed: Any, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("klaviyo_destination.requests")
    logs.log_fields(logger, logging.INFO, {"status": 200, "request_id": "r1"}, "%s %d", "GET", 200)
    [record] = [r for r in caplog.records if r.name == logger.name]
    assert (record.getMessage(), logs.fields_of(record)) == (
        "GET 200",
        {"status": 200, "request_id": "r1"},
    )
    [line] = printed()
    assert (line["message"], line["request_id"]) == ("GET 200", "r1")


@pytest.mark.anyio
async def test_a_request_line_written_directly_has_its_fields(
    client: httpx.AsyncClient, klaviyo: respx.MockRouter, printed: Any
) -> None:
    klaviyo.post("/api/events").respond(202)
    with our_handler_alone():
        response = await client.post(
            "/v1/events", json=[TRACK, TRACK], headers={**auth(), "X-Request-ID": "req-8"}
        )
    assert response.status_code == 200
    [line] = request_lines(printed())
    assert line == {
        "time": line["time"],
        "level": "info",
        "logger": "klaviyo_destination.requests",
        "message": "POST /v1/events 200",
        "method": "POST",
        "path": "/v1/events",
        "status": 200,
        "duration_ms": line["duration_ms"],
        "request_id": "req-8",
        "events": 2,
        "delivered": 2,
        "rejected": 0,
        "failed": 0,
    }


@pytest.mark.anyio
async def test_a_new_request_id_is_a_uuid4_in_hex(client: httpx.AsyncClient) -> None:
    ids = [(await client.get("/health")).headers["x-request-id"] for _ in range(20)]
    assert len(set(ids)) == 20
    for request_id in ids:
        parsed = uuid.UUID(hex=request_id)
        assert (parsed.hex, parsed.version, parsed.variant) == (request_id, 4, uuid.RFC_4122)
