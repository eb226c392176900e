"""The HTTP edge in process: what a blank token means, the no-token mode's cross-site checks,
a client that leaves mid-body, and the body read deadline.

Real sockets where the behaviour is the socket's (a client that disconnects): uvicorn in this
process on 127.0.0.1, so the log records are captured. The server-level limits (header size,
connection cap, stalled bodies, 413 draining, shutdown) run against the real ``serve`` process in
``tests/integration/test_edge_server.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import orjson
import psutil
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from pydantic import SecretStr

from klaviyo_destination.serving.connection import UVICORN_MINOR, serve_options
from klaviyo_destination.settings import Settings
from support.asgi import post_scope
from support.events import signed_up
from support.processes import LOOPBACK, clean_env, free_port, stop_process, wait_healthy
from tests.helpers.apps import Build, served

KEY: Final = "pk_edge_test_secret"
TOKEN: Final = "edge-token-7"
TRACK: Final = signed_up()
JSON: Final = {"content-type": "application/json"}
PROTOCOL_JOB: Final = {
    "message": TRACK,
    "metadata": {"jobId": 1, "userId": "u1"},
    "destination": {"ID": "d1", "Config": {"privateApiKey": KEY}},
}
POST_ROUTES: Final = [
    ("/v1/events", TRACK),
    ("/v1/transform", TRACK),
    ("/v0/destinations/klaviyo", [PROTOCOL_JOB]),
    ("/routerTransform", {"input": [PROTOCOL_JOB]}),
]


def klaviyo(_: httpx.Request) -> httpx.Response:
    return httpx.Response(202)


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"klaviyo_private_api_key": SecretStr(KEY), "max_attempts": 1}
    return Settings(**(values | overrides))


@asynccontextmanager
async def client(
    build: Build, service: Settings, base_url: str = "http://localhost:8080"
) -> AsyncIterator[httpx.AsyncClient]:
    app = build(service, transport=httpx.MockTransport(klaviyo))
    async with served(app, base_url) as c:
        yield c


# --- item 2: a blank WEBHOOK_TOKEN is no token -------------------------------------------------


@pytest.mark.parametrize("blank", ["", " ", "\t\n "])
def test_a_blank_token_is_no_token(blank: str) -> None:
    assert settings(webhook_token=blank).webhook_token is None
    assert settings(webhook_token=SecretStr(blank)).webhook_token is None


def test_a_real_token_is_kept() -> None:
    token = settings(webhook_token=" t0k ").webhook_token
    assert token is not None
    assert token.get_secret_value() == " t0k "


@pytest.mark.parametrize("blank", ["", "   "])
def test_serve_refuses_a_public_address_with_a_blank_token(blank: str) -> None:
    """Run as a process: before the fix it would start listening on every interface."""
    argv = [sys.executable, "-m", "klaviyo_destination", "serve", "--host", "0.0.0.0"]  # noqa: S104 -- the refusal under test
    env = clean_env({"WEBHOOK_TOKEN": blank, "PORT": str(free_port())})
    try:
        run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=15)  # noqa: S603 -- our own module
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"serve started with WEBHOOK_TOKEN={blank!r} on 0.0.0.0: {exc.stdout!r}")
    assert run.returncode == 2, run.stdout + run.stderr
    assert "refusing to listen on 0.0.0.0 without WEBHOOK_TOKEN" in run.stderr


@pytest.mark.anyio
async def test_an_empty_bearer_does_not_get_in_with_a_blank_token(build: Build) -> None:
    """With ``WEBHOOK_TOKEN=""`` the service is in no-token mode: loopback callers only, so a
    cross-site request presenting ``Bearer `` is refused before the body is read."""
    async with client(build, settings(webhook_token=""), base_url="http://evil.example") as c:
        for path, body in POST_ROUTES[:2]:
            headers = {"Authorization": "Bearer ", **JSON}
            response = await c.post(path, json=body, headers=headers)
            assert response.status_code == 421, response.text
            assert response.json()["error"]["field"] == "Host"


# --- item 8: enough file descriptors for the connection cap ------------------------------------


@pytest.mark.parametrize(("soft", "hard"), [(256, 4096), (256, 512)])
def test_serve_raises_the_open_file_limit_for_its_connections(
    soft: int, hard: int, tmp_path: Path
) -> None:
    needed = 1000 + 100 + 64  # MAX_INBOUND_CONNECTIONS + MAX_CONNECTIONS + spare, the defaults

    def lower_the_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    port = free_port()
    argv = [sys.executable, "-m", "klaviyo_destination", "serve", "--port", str(port)]
    with (tmp_path / "out").open("wb") as out, (tmp_path / "err").open("wb") as err:
        process = subprocess.Popen(  # noqa: S603 -- our own module
            argv, env=clean_env({}), stdout=out, stderr=err, preexec_fn=lower_the_limit
        )
    try:
        assert wait_healthy(f"http://{LOOPBACK}:{port}/health", process), "serve did not start"
        limit = psutil.Process(process.pid).rlimit(psutil.RLIMIT_NOFILE)
    finally:
        stop_process(process)
    warning = (tmp_path / "err").read_text()
    if hard >= needed:
        assert limit == (needed, hard)
        assert warning == ""
    else:
        assert limit == (hard, hard)
        assert f"open-file limit {hard} is below the {needed}" in warning


# --- item 11: cross-site requests in no-token mode ---------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "body"), POST_ROUTES)
@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "text/json",
        "application/json-patch",
    ],
)
async def test_without_a_token_only_json_content_types_are_accepted(
    build: Build, path: str, body: Any, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    async with client(build, settings()) as c:
        response = await c.post(path, content=orjson.dumps(body), headers=headers)
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert error["field"] == "Content-Type"
    assert "application/json" in error["message"]


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "body"), POST_ROUTES)
@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.api+json",
        "application/cloudevents+json; charset=utf-8",
    ],
)
async def test_without_a_token_json_content_types_are_accepted(
    build: Build, path: str, body: Any, content_type: str
) -> None:
    async with client(build, settings()) as c:
        response = await c.post(
            path, content=orjson.dumps(body), headers={"content-type": content_type}
        )
    assert response.status_code == 200, response.text


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "body"), POST_ROUTES)
@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8080",
        "localhost.evil.example",
        "127.0.0.1.nip.io:8080",
        "10.0.0.5:8080",
        "klaviyo-destination:8080",
        "",
    ],
)
async def test_without_a_token_a_foreign_host_is_refused(
    build: Build, path: str, body: Any, host: str
) -> None:
    async with client(build, settings()) as c:
        response = await c.post(path, json=body, headers={"host": host})
    assert response.status_code == 421, response.text
    error = response.json()["error"]
    assert error["code"] == "misdirected_request"
    assert error["field"] == "Host"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:8080", "LOCALHOST:1", "127.0.0.1", "127.0.0.1:8080", "[::1]:8080"],
)
async def test_without_a_token_loopback_hosts_are_accepted(build: Build, host: str) -> None:
    async with client(build, settings()) as c:
        for path, body in POST_ROUTES:
            response = await c.post(path, json=body, headers={"host": host})
            assert response.status_code == 200, (path, response.text)
        assert (await c.get("/health", headers={"host": host})).status_code == 200


@pytest.mark.anyio
async def test_without_a_token_reads_need_a_loopback_host_too(build: Build) -> None:
    """DNS rebinding reads answers: /metrics, /docs and the embedded emulator's state."""
    async with client(build, settings(), base_url="http://rebound.example:8080") as c:
        for path in ("/health", "/metrics", "/openapi.json"):
            response = await c.get(path)
            assert response.status_code == 421, path


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "body"), POST_ROUTES)
async def test_with_a_token_neither_host_nor_content_type_is_restricted(
    build: Build, path: str, body: Any
) -> None:
    """rudder-server on a private network calls ``http://klaviyo-destination:8080``."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with client(build, settings(webhook_token=TOKEN), "http://klaviyo-destination:8080") as c:
        response = await c.post(
            path, content=orjson.dumps(body), headers={"content-type": "text/plain", **auth}
        )
        assert response.status_code == 200, response.text
        assert (await c.get("/health")).status_code == 200


# --- item 10: a client that disconnects mid-body ------------------------------------------------


@asynccontextmanager
async def serving(app: Any, **options: Any) -> AsyncIterator[int]:
    """``app`` under uvicorn (with ``options``) on 127.0.0.1 in this event loop; yields the
    port."""
    config = uvicorn.Config(app, host=LOOPBACK, port=0, log_config=None, lifespan="on", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    assert server.started, "uvicorn did not start"
    port: int = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/v1/events", "/v0/destinations/klaviyo"])
async def test_a_client_that_disconnects_mid_body_is_one_info_line(
    build: Build, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = build(settings(), transport=httpx.MockTransport(klaviyo))
    async with serving(app) as port:
        _, writer = await asyncio.open_connection(LOOPBACK, port)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: localhost:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        )
        writer.write(head.encode() + b'[{"type": "track", "event": "x"')
        await writer.drain()
        await asyncio.sleep(0.1)  # the route is reading the body now
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

        def logged() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.name == "klaviyo_destination.requests"]

        assert await wait_for(lambda: bool(logged()), 5), "no request line"
    [line] = logged()
    assert line.levelno == logging.INFO
    assert line.__dict__["path"] == path
    assert line.__dict__["error"] == "client_disconnected"
    assert line.__dict__["status"] == 499
    for record in caplog.records:
        assert record.exc_info is None, f"{record.name}: {record.getMessage()}"
        assert "unexpected error" not in record.getMessage()
        assert record.levelno < logging.WARNING, f"{record.name}: {record.getMessage()}"


# --- issue 27 C2: a WebSocket handshake -------------------------------------------------------

#: How a server may run the app: as ``serve`` does with the uvicorn its protocol was written for
#: and with any other (uvicorn's own protocol), and as uvicorn does by default.
SERVERS: Final = {
    "serve, EdgeProtocol": serve_options(settings(), uvicorn_version=f"{UVICORN_MINOR}.0")[0],
    "serve, fallback protocol": serve_options(settings(), uvicorn_version="9.99.0")[0],
    "uvicorn's defaults": {},
}
UPGRADE: Final = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)


@pytest.mark.anyio
@pytest.mark.parametrize("server", list(SERVERS))
@pytest.mark.parametrize("path", ["/health", "/v1/events", "/nowhere", "/emulator/api/profiles"])
async def test_a_websocket_handshake_is_a_4xx_and_one_info_line(
    build: Build, server: str, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = build(settings(), transport=httpx.MockTransport(klaviyo))
    async with serving(app, **SERVERS[server]) as port:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n{UPGRADE}".encode())
        answer = await asyncio.wait_for(reader.read(), 5)  # to the close
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    if server.startswith("serve"):
        assert status == 404
        assert orjson.loads(body)["error"] == {
            "code": "not_found",
            "message": "this service serves no WebSocket endpoints: send its requests as plain "
            "HTTP",
            "field": "Upgrade",
        }
    else:  # the handshake closed by the app, as Starlette closes one with no route
        assert status == 403
    [line] = [r for r in caplog.records if r.name == "klaviyo_destination.requests"]
    assert (line.__dict__["path"], line.__dict__["status"]) == (path, status)
    for record in caplog.records:
        assert record.exc_info is None, f"{record.name}: {record.getMessage()}"
        assert record.levelno < logging.WARNING, f"{record.name}: {record.getMessage()}"


# --- item 8: the body read deadline, in process -------------------------------------------------


def _post_scope() -> dict[str, Any]:
    headers = [(b"host", b"localhost"), (b"content-type", b"application/json")]
    return post_scope("/v1/events", [*headers, (b"content-length", b"1000")])


@pytest.mark.anyio
async def test_a_stalled_body_is_answered_408_and_closes_the_connection(build: Build) -> None:
    app = build(settings(body_timeout=0.3), transport=httpx.MockTransport(klaviyo))
    sent: list[dict[str, Any]] = []
    parts = iter([{"type": "http.request", "body": b"[", "more_body": True}])

    async def receive() -> dict[str, Any]:
        for part in parts:
            return part
        await asyncio.Event().wait()  # the rest never comes
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    async with LifespanManager(app) as manager:
        async with asyncio.timeout(3):
            await manager.app(_post_scope(), receive, send)
    start, body = sent
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]
    assert orjson.loads(body["body"])["error"]["code"] == "request_timeout"


@pytest.mark.anyio
async def test_a_server_cancelling_a_body_read_is_not_a_timeout(build: Build) -> None:
    """uvicorn cancels requests past SHUTDOWN_TIMEOUT: that cancellation must go through."""
    app = build(settings(body_timeout=30), transport=httpx.MockTransport(klaviyo))
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    async def call() -> None:
        await manager.app(_post_scope(), receive, send)

    async with LifespanManager(app) as manager:
        task = asyncio.create_task(call())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sent == []
