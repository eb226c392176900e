"""The pass-through to an upstream rudder-transformer, against a real upstream on loopback that
misbehaves on purpose (issue 27: A2, A3, A6, A7, S1, S2, K3, C3, first contact 4).

The service runs in process both ways ``serve`` serves it, or under uvicorn on loopback where
what matters is what reaches the caller on the wire once an answer has started.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
from collections.abc import AsyncIterator
from typing import Any, Final

import anyio
import httpx
import orjson
import pytest
from pydantic import SecretStr

from klaviyo_destination.protocol.passthrough import (
    TRANSFORMER_ROUTES,
    is_transformer_route,
    upstream_path,
)
from klaviyo_destination.settings import Settings
from support.asgi import post_scope
from tests.helpers.apps import Build, served
from tests.helpers.loopback import serving
from tests.helpers.raw_upstream import (
    RawUpstream,
    Received,
    Script,
    answer,
    drip,
    raw_upstream,
)

JSON: Final = {"content-type": "application/json"}
BASE: Final = "/base"
#: generous: each test's deadline is a fraction of a second, this only stops a hang
GUARD: Final = 30
FEATURES: Final = {"routerTransform": {"HS": True}, "supportSourceTransformV1": True}


def settings(upstream: RawUpstream, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "klaviyo_private_api_key": SecretStr("pk_passthrough"),
        "rudder_transformer_url": upstream.url + BASE,
        "rudder_transformer_timeout": 0.5,
    }
    return Settings(**(values | overrides))


@pytest.fixture
def build_client(build: Build) -> Any:
    async def client(upstream: RawUpstream, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        async with served(build(settings(upstream, **overrides))) as c:
            yield c

    return client


async def echo(request: Received, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    body = orjson.dumps({"target": request.target})
    writer.write(answer(200, [(b"content-type", b"application/json")], body))
    await writer.drain()


def upstream_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "klaviyo_destination.protocol.upstream"]


def assert_no_traceback_or_error(caplog: pytest.LogCaptureFixture) -> None:
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# --- A2: RUDDER_TRANSFORMER_TIMEOUT is one deadline for the whole exchange --------------------


async def drips_its_headers(_: Received, reader: Any, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nx-slow: ")
    await drip(reader, writer, b"a")


async def drips_its_body(_: Received, reader: Any, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n")
    await drip(reader, writer, b"[")


@pytest.mark.anyio
@pytest.mark.parametrize("script", [drips_its_headers, drips_its_body], ids=["headers", "body"])
async def test_an_upstream_that_drips_meets_the_total_deadline(
    build_client: Any, script: Script, caplog: pytest.LogCaptureFixture
) -> None:
    """A byte every few milliseconds never trips a per-read timeout; the deadline is for the
    whole exchange, so the caller gets a 504 it can retry instead of waiting for ever."""
    async with raw_upstream(script) as upstream:
        with anyio.fail_after(GUARD):
            async for client in build_client(upstream):
                response = await client.post("/v0/destinations/hs", json=[], headers=JSON)
    assert response.status_code == 504
    assert "RUDDER_TRANSFORMER_TIMEOUT" in response.json()["error"]["message"]
    assert len(upstream_records(caplog)) == 1
    assert_no_traceback_or_error(caplog)


# --- K3, A2 after the headers: an answer cut off, on the wire ---------------------------------

#: more than the head the service reads before it sends the answer's headers on
LARGE: Final = b"[" + b"0," * 70_000


async def closes_mid_answer(_: Received, __: Any, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n[1,2")
    await writer.drain()
    writer.close()


async def closes_after_a_large_start(_: Received, __: Any, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n" + LARGE)
    await writer.drain()
    writer.close()


async def drips_after_a_large_start(_: Received, reader: Any, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n" + LARGE)
    await drip(reader, writer, b"0")


@pytest.mark.anyio
async def test_an_upstream_closing_mid_answer_is_a_502_and_one_warning(
    build_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with raw_upstream(closes_mid_answer) as upstream:
        async for client in build_client(upstream):
            response = await client.post("/routerTransform", json={"destType": "HS"}, headers=JSON)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unavailable"
    [warning] = upstream_records(caplog)
    assert warning.levelno == logging.WARNING
    assert "RemoteProtocolError" in warning.getMessage()
    assert_no_traceback_or_error(caplog)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "script", [closes_after_a_large_start, drips_after_a_large_start], ids=["closes", "drips"]
)
async def test_an_answer_broken_after_its_headers_is_cut_not_completed(
    build: Build, script: Script, caplog: pytest.LogCaptureFixture
) -> None:
    """Its status is gone: the caller's connection is closed before the end, so it sees a cut
    answer (rudder-server retries it), never one that looks whole; one WARNING, no traceback."""
    async with raw_upstream(script) as upstream:
        app = build(settings(upstream))
        with anyio.fail_after(GUARD):
            async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
                with pytest.raises(httpx.RemoteProtocolError):  # on a lane when served so
                    await client.post("/routerTransform", json={"destType": "HS"}, headers=JSON)
    [warning] = upstream_records(caplog)
    assert warning.levelno == logging.WARNING
    assert "cut off after its headers went" in warning.getMessage()
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


# --- C3: a header that cannot be sent on is dropped, the answer still given -------------------


async def sends_a_control_character(_: Received, __: Any, writer: asyncio.StreamWriter) -> None:
    headers = [(b"x-bad", b"a\x01b"), (b"x-good", b"kept"), (b"content-type", b"application/json")]
    writer.write(answer(200, headers, b"[]"))
    await writer.drain()


@pytest.mark.anyio
async def test_an_upstream_header_with_a_control_character_is_dropped(
    build: Build, caplog: pytest.LogCaptureFixture
) -> None:
    async with raw_upstream(sends_a_control_character) as upstream:
        app = build(settings(upstream))
        with anyio.fail_after(GUARD):
            async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
                response = await client.post("/v0/destinations/hs", json=[], headers=JSON)
    assert (response.status_code, response.content) == (200, b"[]")
    assert response.headers["x-good"] == "kept"
    assert "x-bad" not in response.headers
    [warning] = upstream_records(caplog)
    assert "'x-bad'" in warning.getMessage()
    assert_no_traceback_or_error(caplog)


# --- S1: only the headers rudder-transformer reads go upstream --------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("name", "forwarded"),
    [
        ("authorization", False),  # the webhook token
        ("cookie", False),
        ("proxy-authorization", False),
        ("x-api-key", False),
        ("x-forwarded-for", False),
        ("x-content-format", True),
        ("x-rudder-dest-info", True),
        ("oauth-secret", True),
        ("x-feature-filter-code", True),
        ("x-feature-gzip-support", True),
        ("user-agent", True),
        ("x-request-id", True),
        ("content-type", True),
    ],
)
async def test_only_what_rudder_transformer_reads_is_forwarded(
    build_client: Any, name: str, forwarded: bool
) -> None:
    async with raw_upstream(echo) as upstream:
        async for client in build_client(upstream, webhook_token=SecretStr("the-token")):
            headers = {**JSON, name: "v1", "authorization": "Bearer the-token"}
            response = await client.post("/v0/destinations/hs", json=[], headers=headers)
    assert response.status_code == 200
    [received] = upstream.received
    sent = {n.lower(): v for n, v in received.headers}
    assert (name in sent) is forwarded
    if forwarded:
        assert sent[name] == "v1"
    assert "the-token" not in str(received.headers)


@pytest.mark.anyio
async def test_a_router_body_read_and_decoded_here_goes_upstream_without_its_encoding(
    build_client: Any,
) -> None:
    """The router reads a body to find its destType, and gunzips it: what goes upstream is
    that decoded body, framed anew, not labelled gzip."""
    body = orjson.dumps({"destType": "HS", "input": []})
    async with raw_upstream(echo) as upstream:
        async for client in build_client(upstream):
            headers = {**JSON, "content-encoding": "gzip"}
            response = await client.post(
                "/routerTransform", content=gzip.compress(body), headers=headers
            )
    assert response.status_code == 200
    [received] = upstream.received
    assert received.body == body
    assert "content-encoding" not in received.header_names()


# --- S2, A7: the path goes upstream as it came, once encoded; odd ones are refused -----------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"/customTransform", "/customTransform"),
        (b"/v0/destinations/a%3Fb", "/v0/destinations/a%3Fb"),
        (b"/v0/destinations/hs%20x", "/v0/destinations/hs%20x"),
        (b"/v0/destinations/h\xc3\xa9", "/v0/destinations/h%C3%A9"),
        (b"/v0/destinations/a%2", "/v0/destinations/a%2"),
        (b"/..%2F..%2Fadmin", "encoded slash"),
        (b"/v0/destinations/hs%2fx", "encoded slash"),
        (b"/v0/destinations/hs%5Cx", "encoded slash"),
        (b"/v0/destinations/hs\\x", "encoded slash"),
        (b"/v0/destinations/..", "'.' or '..'"),
        (b"/v0/destinations/%2e%2E", "'.' or '..'"),
        (b"/./customTransform", "'.' or '..'"),
        (b"/v0/destinations/a%00", "control character"),
        (b"/v0/destinations/a%0d%0aX: y", "control character"),
    ],
)
def test_upstream_path(raw: bytes, expected: str) -> None:
    scope = post_scope("/ignored", [])
    scope["raw_path"] = raw
    if expected.startswith("/"):
        assert upstream_path(scope) == expected
    else:
        with pytest.raises(Exception, match="not passed through") as refused:
            upstream_path(scope)
        assert expected in str(refused.value)
        assert getattr(refused.value, "status", None) == 400


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "status", "target"),
    [
        ("/customTransform", 200, "/base/customTransform"),  # no stray "?"
        ("/customTransform?x=1&y=%2F", 200, "/base/customTransform?x=1&y=%2F"),
        ("/v0/destinations/a%3Fb", 200, "/base/v0/destinations/a%3Fb"),
        ("/..%2F..%2Fadmin", 400, None),
        ("/v0/destinations/%2e%2e", 400, None),
        ("/v0/destinations/hs%2Fadmin", 400, None),
        ("/v0/destinations/a%00", 400, None),
        ("/a%00b", 400, None),
        ("/a%3Fb", 404, None),
        ("//host/x", 404, None),
        ("/v1/event", 404, None),  # first contact 4: a typo is no transformer request
    ],
)
async def test_pass_through_paths(
    build_client: Any,
    path: str,
    status: int,
    target: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    async with raw_upstream(echo) as upstream:
        async for client in build_client(upstream):
            response = await client.post("http://localhost" + path, json=[], headers=JSON)
    assert response.status_code == status
    assert [r.target for r in upstream.received] == ([target] if target else [])
    if status != 200:
        assert response.json()["error"]["field"] == "path"
    [line] = [r for r in caplog.records if r.name == "klaviyo_destination.requests"]
    assert line.levelno == logging.INFO
    assert_no_traceback_or_error(caplog)


# --- first contact 4: rudder-transformer's own routes go upstream, typos are a 404 -------------


def _filled(route: str) -> str:
    return "/".join("v0" if part.startswith(":") else part for part in route.split("/"))


@pytest.mark.parametrize(("method", "route"), TRANSFORMER_ROUTES)
def test_every_route_of_rudder_transformer_is_passed_through(method: str, route: str) -> None:
    assert is_transformer_route(method, _filled(route))
    assert not is_transformer_route(method, _filled(route) + "/more")
    assert not is_transformer_route("PUT", _filled(route))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/event"),
        ("POST", "/v1/identiy"),
        ("POST", "/ROUTERTRANSFORM"),
        ("POST", "/routerTransform/"),
        ("GET", "/customTransform"),
        ("POST", "/v0/destinations"),
        ("GET", "/metrics/x"),
    ],
)
def test_anything_else_is_not(method: str, path: str) -> None:
    assert not is_transformer_route(method, path)


@pytest.mark.anyio
@pytest.mark.parametrize("with_upstream", [True, False], ids=["upstream", "no-upstream"])
@pytest.mark.parametrize(
    ("method", "path", "nearest"),
    [
        ("POST", "/v1/event", "POST /v1/events"),
        ("POST", "/v1/identiy", "POST /v1/identify"),
        ("GET", "/helth", "GET /health"),
        ("POST", "/v0/destination/klaviyo", "POST /v0/destinations/{destination}"),
        ("GET", "/nothing-like-ours", None),
    ],
)
async def test_a_typo_is_a_404_that_names_the_nearest_route(
    build: Build, with_upstream: bool, method: str, path: str, nearest: str | None
) -> None:
    async with raw_upstream(echo) as upstream:
        alone = Settings(klaviyo_private_api_key=SecretStr("pk_passthrough"))
        service = settings(upstream) if with_upstream else alone
        async with served(build(service)) as client:
            response = await client.request(method, path, json=[], headers=JSON)
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["field"] == "path"
    assert f"no route {method} {path}" in error["message"]
    if nearest is not None:
        assert f"did you mean {nearest}?" in error["message"]
    assert upstream.received == []


@pytest.mark.anyio
async def test_a_transformer_route_without_an_upstream_is_still_a_501(build: Build) -> None:
    alone = Settings(klaviyo_private_api_key=SecretStr("pk_passthrough"))
    async with served(build(alone)) as client:
        response = await client.post("/customTransform", json=[], headers=JSON)
    assert response.status_code == 501
    assert response.json()["error"]["field"] == "RUDDER_TRANSFORMER_URL"


# --- A6, A3: /features, asked once at a time, read up to a cap -------------------------------


class HeldFeatures:
    """An upstream whose /features answers only when released, counting the requests."""

    def __init__(self, document: bytes) -> None:
        self.document = document
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, _: Received, __: Any, writer: asyncio.StreamWriter) -> None:
        self.asked.set()
        await self.release.wait()
        writer.write(answer(200, [(b"content-type", b"application/json")], self.document))
        await writer.drain()


@pytest.mark.anyio
async def test_features_asks_a_slow_upstream_once_for_every_caller(build_client: Any) -> None:
    held = HeldFeatures(orjson.dumps(FEATURES))
    async with raw_upstream(held) as upstream:
        async for client in build_client(upstream, rudder_transformer_timeout=GUARD):
            callers = [asyncio.create_task(client.get("/features")) for _ in range(5)]
            await held.asked.wait()
            for _ in range(100):  # every caller in process gets as far as it can go
                await asyncio.sleep(0)
            held.release.set()
            answers = await asyncio.gather(*callers)
    assert [a.status_code for a in answers] == [200] * 5
    assert {a.json()["routerTransform"]["HS"] for a in answers} == {True}
    assert [r.target for r in upstream.received] == ["/base/features"]


@pytest.mark.anyio
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_features_answer_over_the_cap_is_a_502(
    build_client: Any, declared: bool, caplog: pytest.LogCaptureFixture
) -> None:
    document = orjson.dumps({**FEATURES, "pad": "x" * 5000})

    async def large(_: Received, __: Any, writer: asyncio.StreamWriter) -> None:
        if declared:
            writer.write(answer(200, [], document))
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for start in range(0, len(document), 1000):
                piece = document[start : start + 1000]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with raw_upstream(large) as upstream:
        async for client in build_client(upstream, rudder_transformer_max_answer_bytes=4000):
            response = await client.get("/features")
    assert response.status_code == 502
    assert "RUDDER_TRANSFORMER_MAX_ANSWER_BYTES" in str(
        [r.getMessage() for r in upstream_records(caplog)]
    )
    assert_no_traceback_or_error(caplog)
