"""The production exchange (``klaviyo/exchange.py``'s ``AiohttpExchange``: aiohttp called
straight, no httpx types) against real servers on loopback: every rule the client kept through
httpx holds through it.

Each test runs a small asyncio server whose behaviour is the test's: it answers, redirects,
streams too much, stalls, reads nothing, or drops the connection. No double: the bytes cross a
socket.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import httpx
import pytest
from pydantic import SecretStr

from klaviyo_destination.errors import KlaviyoUnavailable
from klaviyo_destination.klaviyo import KlaviyoClient, KlaviyoSession
from klaviyo_destination.klaviyo.answers import transport_error
from klaviyo_destination.klaviyo.exchange import UNTIMED_BODY, AiohttpExchange
from klaviyo_destination.klaviyo.ratelimit import RateLimiter
from klaviyo_destination.klaviyo.transport import translate_error
from klaviyo_destination.settings import Settings
from tests.klaviyo.helpers import KEY, deliver, event

pytestmark = pytest.mark.anyio

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
#: what the server does with one connection
Behaviour = Callable[[Reader, Writer, "Seen"], Awaitable[None]]
ACCEPTED = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


@dataclass
class Seen:
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)


async def read_request(reader: Reader, seen: Seen) -> bool:
    """One request off the connection (Content-Length framing); False at its end."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return False
    seen.heads.append(head)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    seen.bodies.append(await reader.readexactly(length))
    return True


@asynccontextmanager
async def server(behaviour: Behaviour) -> AsyncIterator[tuple[int, Seen]]:
    seen = Seen()

    async def handle(reader: Reader, writer: Writer) -> None:
        seen.connections += 1
        try:
            await behaviour(reader, writer, seen)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    listening = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    async with listening:
        yield port, seen
        listening.close()


def answering(*answers: bytes) -> Behaviour:
    """Read each request and write the next answer; the last one repeats."""

    async def behaviour(reader: Reader, writer: Writer, seen: Seen) -> None:
        turn = 0
        while await read_request(reader, seen):
            writer.write(answers[min(turn, len(answers) - 1)])
            await writer.drain()
            turn += 1

    return behaviour


def settings(port: int, **overrides: object) -> Settings:
    base = {
        "klaviyo_private_api_key": SecretStr(KEY),
        "klaviyo_base_url": f"http://127.0.0.1:{port}",
        "max_attempts": 3,
        "delivery_deadline": 5.0,
        "backoff_initial": 0.01,
        "backoff_max": 0.02,
    }
    return Settings.model_validate({**base, **overrides})


def client(s: Settings) -> KlaviyoClient:
    """The client as the app builds it: no transport injected, so ``AiohttpExchange``."""
    return KlaviyoClient(s, rate_limiter=RateLimiter.from_settings(s))


async def exchange(port: int, content: bytes = b"{}", **overrides: object) -> None:
    """One POST through a new production exchange, made from ``settings(port, **overrides)``."""
    made = AiohttpExchange(settings(port, **overrides))
    try:
        await made("POST", f"http://127.0.0.1:{port}/api/events", (), content)
    finally:
        await made.aclose()


async def test_an_answer_is_delivered_with_the_headers_httpx_sent() -> None:
    async with server(answering(ACCEPTED)) as (port, seen), client(settings(port)) as c:
        outcome = await deliver(c, [event()])
    assert outcome.status == "delivered"
    head = seen.heads[0].decode().lower()
    assert head.startswith("post /api/events http/1.1\r\n")
    for line in (
        f"authorization: klaviyo-api-key {KEY.lower()}",
        "revision: 2023-02-22",
        "accept: application/json",
        "content-type: application/json",
        "accept-encoding: gzip, deflate",
        f"content-length: {len(seen.bodies[0])}",
        f"host: 127.0.0.1:{port}",
    ):
        assert line in head
    assert "transfer-encoding" not in head


@pytest.mark.parametrize(
    "given",
    [
        (),
        ((b"Accept", b"application/json"),),
        ((b"User-Agent", b"ours"), (b"Content-Type", b"application/json")),
        (
            (b"Accept", b"*/*"),
            (b"Accept-Encoding", b"gzip"),
            (b"User-Agent", b"ours"),
            (b"Content-Type", b"application/json"),
        ),
    ],
    ids=["none", "accept", "agent-and-type", "all-four"],
)
async def test_aiohttp_adds_no_header_of_its_own(given: tuple[tuple[bytes, bytes], ...]) -> None:
    """Only the request's headers go, with the Host and the length every request needs."""
    made = AiohttpExchange(settings(0))
    try:
        async with server(answering(ACCEPTED)) as (port, seen):
            await made("POST", f"http://127.0.0.1:{port}/api/events", given, b"{}")
    finally:
        await made.aclose()
    lines = seen.heads[0].decode().split("\r\n")[1:]
    sent = sorted(line.partition(":")[0].lower() for line in lines if line)
    assert sent == sorted({"host", "content-length", *(k.decode().lower() for k, _ in given)})


async def test_connections_are_kept_alive_and_reused() -> None:
    async with server(answering(ACCEPTED)) as (port, seen), client(settings(port)) as c:
        for _ in range(5):
            assert (await deliver(c, [event()])).status == "delivered"
    assert seen.connections == 1
    assert len(seen.heads) == 5


async def test_a_redirect_is_not_followed() -> None:
    moved = b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\n"
    moved += b"Content-Length: 0\r\n\r\n"
    async with (
        server(answering(moved)) as (port, seen),
        client(settings(port, max_attempts=1)) as c,
    ):
        outcome = await deliver(c, [event()])
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert "a redirect to http://127.0.0.1:1/elsewhere not followed" in outcome.error["message"]
    assert len(seen.heads) == 1


async def test_a_gzip_answer_is_decoded_and_a_corrupt_one_is_unusable() -> None:
    body = gzip.compress(b'{"data": {"id": "01ABC"}}')
    good = (
        b"HTTP/1.1 201 Created\r\nContent-Encoding: gzip\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    bad = b"HTTP/1.1 202 Accepted\r\nContent-Encoding: gzip\r\nContent-Length: 8\r\n\r\nnot gzip"
    async with server(answering(good)) as (port, _), client(settings(port)) as c:
        answer = await c.call(event(), c.request_headers({}))
    assert answer.body == {"data": {"id": "01ABC"}}
    assert "content-encoding" not in answer.headers
    async with server(answering(bad)) as (port, seen), client(settings(port)) as c:
        outcome = await deliver(c, [event()])
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert "answer could not be read" in outcome.error["message"]
    assert len(seen.heads) == 3  # retried, as a dropped connection is


async def test_an_answer_over_the_cap_is_not_read_past_it() -> None:
    sent = 0

    async def endless(reader: Reader, writer: Writer, seen: Seen) -> None:
        nonlocal sent
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
        for _ in range(2000):  # 128 MB if it were all read
            writer.write(chunk)
            await writer.drain()
            sent += 1

    async with (
        server(endless) as (port, _),
        client(settings(port, max_answer_bytes=100_000, max_attempts=1)) as c,
    ):
        outcome = await deliver(c, [event()])
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert "over MAX_ANSWER_BYTES (100000 bytes)" in outcome.error["message"]
    assert sent < 200  # the connection was closed, not drained


async def test_a_declared_length_over_the_cap_is_not_read() -> None:
    async def large(reader: Reader, writer: Writer, seen: Seen) -> None:
        await read_request(reader, seen)
        writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 200000\r\n\r\n" + b" " * 1000)
        await writer.drain()
        await asyncio.sleep(5)  # the rest never comes: the client must not wait for it

    async with (
        server(large) as (port, _),
        client(settings(port, max_answer_bytes=100_000, max_attempts=1)) as c,
    ):
        outcome = await asyncio.wait_for(deliver(c, [event()]), 2)
    assert outcome.error is not None
    assert "over MAX_ANSWER_BYTES" in outcome.error["message"]


async def test_a_dropped_connection_is_retried_as_a_reset() -> None:
    async def drop_first(reader: Reader, writer: Writer, seen: Seen) -> None:
        await read_request(reader, seen)
        if len(seen.heads) == 1:
            return  # closed without an answer
        writer.write(ACCEPTED)
        await writer.drain()
        await read_request(reader, seen)

    async with server(drop_first) as (port, seen), client(settings(port)) as c:
        outcome = await deliver(c, [event()])
    assert outcome.status == "delivered"
    assert len(seen.heads) == 2
    async with server(drop_first) as (port, _):
        with pytest.raises(httpx.TransportError) as raised:
            await exchange(port)
    assert transport_error(raised.value) == (500, "[ECONNRESET] :: Connection reset by peer")


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with server(answering(ACCEPTED)) as (port, _):
        pass  # closed: nothing listens on the port now
    with pytest.raises(httpx.ConnectError) as raised:
        await exchange(port)
    assert transport_error(raised.value) == (500, "[ECONNREFUSED] :: Connection refused")


async def test_a_silent_server_is_a_read_timeout() -> None:
    async def silent(reader: Reader, _writer: Writer, seen: Seen) -> None:
        await read_request(reader, seen)
        await asyncio.sleep(5)

    async with server(silent) as (port, _):
        with pytest.raises(httpx.ReadTimeout) as raised:
            await exchange(port, read_timeout=0.2)
    assert transport_error(raised.value) == (500, "[ECONNABORTED] :: Connection aborted")


async def test_a_server_that_reads_nothing_is_a_write_timeout() -> None:
    async def deaf(_reader: Reader, _writer: Writer, _seen: Seen) -> None:
        await asyncio.sleep(5)

    async with server(deaf) as (port, _):
        big = b"x" * (64 * 1024 * 1024)  # more than both sockets' buffers hold
        with pytest.raises(httpx.WriteTimeout):
            await exchange(port, big, write_timeout=0.3)


@pytest.mark.parametrize(
    "size",
    [0, 2, UNTIMED_BODY, UNTIMED_BODY + 1, 300_000],
    ids=["empty", "small", "largest-untimed", "smallest-timed", "large"],
)
async def test_a_body_arrives_whole_either_way_it_is_written(size: int) -> None:
    """Up to ``UNTIMED_BODY`` a body goes as bytes, above it under the write timer."""
    content = (bytes(range(256)) * (size // 256 + 1))[:size]
    async with server(answering(ACCEPTED)) as (port, seen):
        await exchange(port, content)
    assert seen.bodies == [content]
    head = seen.heads[0].decode().lower()
    assert f"content-length: {size}\r\n" in head
    assert "transfer-encoding" not in head


async def test_a_full_pool_is_a_pool_timeout() -> None:
    async def slow(reader: Reader, writer: Writer, seen: Seen) -> None:
        await read_request(reader, seen)
        await asyncio.sleep(1)
        writer.write(ACCEPTED)
        await writer.drain()

    made = AiohttpExchange(settings(0, max_connections=1, pool_timeout=0.1))
    try:
        async with server(slow) as (port, _):
            url = f"http://127.0.0.1:{port}/api/events"
            first = asyncio.create_task(made("POST", url, (), b"{}"))
            await asyncio.sleep(0.1)
            with pytest.raises(httpx.PoolTimeout):
                await made("POST", url, (), b"{}")
            assert (await first).status == 202
    finally:
        await made.aclose()


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (aiohttp.ConnectionTimeoutError("t"), httpx.ConnectTimeout),
        (aiohttp.SocketTimeoutError("t"), httpx.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("cut"), httpx.ReadError),
    ],
)
def test_aiohttp_errors_are_named_as_httpx_named_them(
    raised: BaseException, expected: type[httpx.TransportError]
) -> None:
    assert type(translate_error(raised, connecting=True)) is expected


async def test_the_key_is_never_in_a_transport_error() -> None:
    async with server(answering(ACCEPTED)) as (port, _):
        pass
    async with client(settings(port, max_attempts=1)) as c:
        with pytest.raises(KlaviyoUnavailable) as raised:
            await KlaviyoSession(c, SecretStr(KEY)).run_one(event(), time.monotonic() + 2, [])
    assert "Connection refused" in str(raised.value)
    assert KEY not in str(raised.value.to_dict())
    assert raised.value.__cause__ is None


async def test_http_proxy_from_the_environment_is_used_unless_no_proxy_names_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with (
        server(answering(ACCEPTED)) as (proxy, via),
        server(answering(ACCEPTED)) as (
            port,
            direct,
        ),
    ):
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with client(settings(port)) as c:
            assert (await deliver(c, [event()])).status == "delivered"
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with client(settings(port)) as c:
            assert (await deliver(c, [event()])).status == "delivered"
    # As httpx's client did (trust_env): the proxy gets the absolute URL, NO_PROXY goes direct.
    assert [head.split(b"\r\n")[0] for head in via.heads] == [
        f"POST http://127.0.0.1:{port}/api/events HTTP/1.1".encode()
    ]
    assert len(direct.heads) == 1
