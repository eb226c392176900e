"""Security properties: auth before parsing, secrets never shown, one outbound host, limits.

The leak test runs the service for real on loopback (uvicorn, httpx/httpcore, stamina) against
a fake Klaviyo that echoes the private key back in its error details, captures every log record
at DEBUG and every answer, and looks for the key and the webhook token in all of them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import io
import json
import logging
import shlex
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from klaviyo_destination import logs
from klaviyo_destination.api import auth
from klaviyo_destination.api.webhook import retry_after_header
from klaviyo_destination.cli import _embedded_app
from klaviyo_destination.errors import DestinationError
from klaviyo_destination.klaviyo import KlaviyoClient, KlaviyoSession, Outcome
from klaviyo_destination.klaviyo.facts import PROFILES_PATH
from klaviyo_destination.planned import create_event, create_profile, subscribe
from klaviyo_destination.settings import Settings
from tests.helpers.apps import Build, served, served_way
from tests.helpers.loopback import serving

KEY = "pk_live_SECRET_0123456789abcdef"
TOKEN = "hook-SECRET-token-42"
SECRETS = (KEY, TOKEN)
BASE = "https://a.klaviyo.com"
#: Every logger a request passes, at DEBUG: aiohttp's carry the Klaviyo requests.
LOGGERS = (
    "",
    "httpx",
    "httpcore",
    "aiohttp",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "stamina",
)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "klaviyo_private_api_key": SecretStr(KEY),
        "klaviyo_list_id": "L1",
        "webhook_token": SecretStr(TOKEN),
        "max_attempts": 3,
        "delivery_deadline": 3.0,
        "backoff_initial": 0.001,
        "backoff_max": 0.002,
        "read_timeout": 0.2,
    }
    values.update(overrides)
    return Settings(**values)


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} shows a secret: {text[:500]}"


def event(kind: str, n: int) -> dict[str, Any]:
    """A track event whose name tells the fake Klaviyo how to answer."""
    return {
        "type": "track",
        "event": kind,
        "userId": f"user-{n}",
        "messageId": f"{kind}-{n}",
        "properties": {"n": n},
        "context": {"traits": {"email": f"u{n}@example.com"}},
    }


IDENTIFY: dict[str, Any] = {
    "type": "identify",
    "userId": "user-9",
    "messageId": "identify-9",
    "traits": {
        "email": "ada@example.com",
        "properties": {"subscribe": True, "listId": "L1", "consent": ["email"]},
    },
}


# --- a fake Klaviyo that echoes the key ----------------------------------------------------------


def echoing_answer(method: str, path: str, body: bytes, authorization: str, tries: int) -> Any:
    """``(status, headers, json or text)`` for one request; the key is in every error detail."""
    detail = f"bad request from {authorization}"
    errors = {"errors": [{"id": "e1", "code": "invalid", "detail": detail, "source": {}}]}
    text = body.decode(errors="replace")
    if "auth-fail" in text:
        return 401, {}, {"errors": [{"code": "not_authenticated", "detail": detail}]}
    if "rejected" in text:
        return 400, {}, errors
    if "flaky" in text and tries == 1:
        return 503, {}, errors
    if "throttle" in text and tries == 1:
        return 429, {"Retry-After": "0"}, errors
    if "html" in text:
        return 503, {}, f"<html>{authorization}</html>"
    if path == PROFILES_PATH and method == "POST":
        meta = {"duplicate_profile_id": "01DUP"}
        return 409, {}, {"errors": [{"code": "duplicate_profile", "detail": detail, "meta": meta}]}
    if path.startswith(PROFILES_PATH):
        return 200, {}, {"data": {"type": "profile", "id": "01DUP"}}
    return 202, {}, None


class EchoingKlaviyo:
    """The answers above as an ASGI app (served by uvicorn) or an httpx handler."""

    def __init__(self) -> None:
        self.tries: dict[bytes, int] = {}
        self.seen: list[httpx.URL] = []

    def answer(self, method: str, path: str, body: bytes, authorization: str) -> httpx.Response:
        self.tries[body] = self.tries.get(body, 0) + 1
        status, headers, payload = echoing_answer(
            method, path, body, authorization, self.tries[body]
        )
        if isinstance(payload, str):
            return httpx.Response(status, headers=headers, text=payload)
        content = b"" if payload is None else orjson.dumps(payload)
        return httpx.Response(
            status, headers={**headers, "content-type": "application/json"}, content=content
        )

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request.url)
        authorization = request.headers.get("authorization", "")
        return self.answer(request.method, request.url.path, request.content, authorization)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if b"slow" in body:
            await asyncio.sleep(0.5)  # beyond the client's read timeout
        headers = dict(scope["headers"])
        authorization = headers.get(b"authorization", b"").decode()
        response = self.answer(scope["method"], scope["path"], body, authorization)
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [(k.encode(), v.encode()) for k, v in response.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": response.content})


@asynccontextmanager
async def in_process(
    build: Build, service: Settings, handler: Callable[[httpx.Request], httpx.Response]
) -> AsyncIterator[httpx.AsyncClient]:
    app = build(service, transport=httpx.MockTransport(handler))
    async with served(app, "http://svc") as client:
        yield client


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def job(message: Any, job_id: int) -> dict[str, Any]:
    return {
        "message": message,
        "metadata": {"jobId": job_id, "userId": "u"},
        "destination": {"ID": "d1", "Config": {"privateApiKey": KEY, "listId": "L1"}},
    }


# --- 1. authentication before parsing ------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/v1/events", "/v1/transform"])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong"),
        bearer(TOKEN[:-1]),
        bearer(TOKEN + "x"),
        {"Authorization": TOKEN},
        {"Authorization": "Basic " + base64.b64encode(b"user:wrong").decode()},
        {"Authorization": "Basic %%%not-base64"},
        {"Authorization": "Bearer"},
    ],
)
async def test_no_or_wrong_token_is_401_before_the_body_is_read(
    build: Build, path: str, headers: dict[str, str]
) -> None:
    async with in_process(build, settings(max_body_bytes=10), EchoingKlaviyo().handler) as client:
        for content in (b"{not json", b"x" * 1000, b"[" * 500):
            response = await client.post(path, content=content, headers=headers)
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] == "unauthorized"
            assert_no_secret(response.text, "401 body")


@pytest.mark.anyio
async def test_the_right_token_reaches_the_parser(build: Build) -> None:
    basic = "Basic " + base64.b64encode(f"any:{TOKEN}".encode()).decode()
    async with in_process(build, settings(), EchoingKlaviyo().handler) as client:
        for headers in (bearer(), {"Authorization": basic}):
            response = await client.post("/v1/events", content=b"{not json", headers=headers)
            assert response.status_code == 400


def test_token_comparison_is_constant_time() -> None:
    # Timing cannot be measured reliably in a unit test; the property is that the comparison is
    # hmac.compare_digest over the whole token (bytes), which the behaviour tests above pin
    # down (prefixes, extensions and near misses are all refused).
    assert "token_presented(" in inspect.getsource(auth.check_token)
    source = inspect.getsource(auth.token_presented)
    assert "hmac.compare_digest(" in source
    assert "==" not in source.replace("presented is None", "")


# --- issue 27 C5 and C6: a non-ASCII token, two Authorization headers --------------------------

#: Not ASCII, and not Latin-1 either: the header carries it in UTF-8.
WIDE_TOKEN = "hoök-tøken-日本-42"
WIDE = WIDE_TOKEN.encode()


def _basic(credentials: bytes) -> bytes:
    return b"Basic " + base64.b64encode(credentials)


#: An ``Authorization`` value with the non-ASCII token set, and whether it presents the token.
WIDE_CASES = {
    "Bearer, UTF-8": (b"Bearer " + WIDE, True),
    "Basic username, UTF-8": (_basic(WIDE + b":"), True),
    "Basic password, UTF-8": (_basic(b"any:" + WIDE), True),
    "Bearer, the UTF-8 read as Latin-1 and sent as UTF-8": (
        b"Bearer " + WIDE.decode("latin-1").encode(),
        False,
    ),
    "Bearer, a prefix": (b"Bearer " + WIDE[:-1], False),
}


@pytest.mark.anyio
@pytest.mark.parametrize(("header", "presents"), WIDE_CASES.values(), ids=list(WIDE_CASES))
async def test_a_non_ascii_token_works_as_bearer_and_basic(
    build: Build, header: bytes, presents: bool
) -> None:
    """Over a real socket, so the bytes are uvicorn's; accepted means parsed (and refused as
    not JSON), refused means 401 before that."""
    app = build(settings(webhook_token=SecretStr(WIDE_TOKEN)), transport=_no_klaviyo())
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        for path in ("/v1/events", "/v1/batch", "/v1/transform"):
            response = await client.post(
                path, content=b"{not json", headers=[(b"authorization", header)]
            )
            assert response.status_code == (400 if presents else 401), (path, response.text)


def _no_klaviyo() -> httpx.MockTransport:
    return httpx.MockTransport(lambda _: httpx.Response(500))


#: Two ``Authorization`` headers, in either order, the token in one or both.
TWO_HEADERS = {
    "right, right": (bearer()["Authorization"], bearer()["Authorization"]),
    "right, wrong": (bearer()["Authorization"], "Bearer wrong"),
    "wrong, right": ("Bearer wrong", bearer()["Authorization"]),
    "Basic, Bearer": (
        "Basic " + base64.b64encode(f"{TOKEN}:".encode()).decode(),
        bearer()["Authorization"],
    ),
}
AUTHENTICATED = ["/v1/events", "/v1/batch", "/v1/track", "/v1/transform"]


@pytest.mark.anyio
@pytest.mark.parametrize("pair", TWO_HEADERS.values(), ids=list(TWO_HEADERS))
async def test_two_authorization_headers_are_refused_on_every_authenticated_route(
    build: Build, pair: tuple[str, str]
) -> None:
    app = build(settings(), transport=_no_klaviyo())
    headers = [("Authorization", value) for value in pair]
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as client:
        for path in AUTHENTICATED:
            response = await client.post(path, json=event("ok", 1), headers=headers)
            assert response.status_code == 400, (path, response.text)
            assert response.json()["error"] == {
                "code": "invalid_request",
                "message": "more than one Authorization header: send the credentials once",
                "field": "Authorization",
            }
            assert_no_secret(response.text, "the refusal")


@pytest.mark.anyio
@pytest.mark.parametrize("pair", TWO_HEADERS.values(), ids=list(TWO_HEADERS))
async def test_two_authorization_headers_are_refused_by_the_embedded_emulator(
    way: str, pair: tuple[str, str]
) -> None:
    values: dict[str, Any] = {"webhook_token": SecretStr(TOKEN)}
    with contextlib.redirect_stdout(io.StringIO()):  # the start-up banner
        app = _embedded_app(Settings(**values), "127.0.0.1", 8080)
    served_app = served_way(way, app, Settings(**values))
    headers = [("Authorization", value) for value in pair]
    async with serving(served_app) as url, httpx.AsyncClient(base_url=url) as client:
        one = await client.get("/emulator/__emulator/state", headers=bearer())
        two = await client.get("/emulator/__emulator/state", headers=headers)
    assert one.status_code == 200, one.text
    assert two.status_code == 400, two.text
    assert two.json()["error"]["field"] == "Authorization"


# --- 2. secrets never shown ----------------------------------------------------------------------


def log_everything(caplog: pytest.LogCaptureFixture) -> None:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)


def rendered(record: logging.LogRecord) -> str:
    text = logging.Formatter("%(name)s %(levelname)s %(message)s").format(record)
    return text + repr(vars(record))


@pytest.mark.anyio
async def test_secrets_never_reach_logs_answers_or_metrics(
    build: Build,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log_everything(caplog)
    klaviyo = EchoingKlaviyo()
    answers: list[httpx.Response] = []
    async with serving(klaviyo) as klaviyo_url:
        app = build(settings(klaviyo_base_url=klaviyo_url))
        async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
            kinds = ["ok", "rejected", "auth-fail", "flaky", "throttle", "html", "slow"]
            batch = [event(kind, n) for n, kind in enumerate(kinds)] + [IDENTIFY]
            for body in (batch, batch[0], batch[1], {"batch": batch}, batch[-1]):
                for path in ("/v1/events", "/v1/transform"):
                    answers.append(await client.post(path, json=body, headers=bearer()))
            answers.append(await client.post("/v1/events", json=batch, headers=bearer("nope")))
            answers.append(await client.post("/v1/events", content=b"{", headers=bearer()))
            failing = [
                {**IDENTIFY, "traits": {"email": f"{kind}@example.com"}}
                for kind in ("rejected", "auth-fail", "html")
            ]
            messages = [*batch, *failing, {"type": "page"}]
            jobs = [job(message, n) for n, message in enumerate(messages)]
            processor = await client.post("/v0/destinations/klaviyo", json=jobs)
            router = await client.post("/routerTransform", json={"input": jobs})
            for path in ("/metrics", "/health", "/ready", "/openapi.json"):
                answers.append(await client.get(path))
    statuses = {r.request.url.path: r.status_code for r in answers}
    assert statuses["/metrics"] == 200
    assert {429, 503} & {r.status_code for r in answers}, "retryable failures were exercised"
    for response in answers:
        assert_no_secret(response.text + repr(response.headers), str(response.request.url))
    # The protocol endpoints return the key inside each REST envelope and echo `destination`,
    # by design (rudder-server delivers with them); their error reasons must not carry it.
    for item in [*processor.json(), *router.json()["output"]]:
        reason = {"error": item.get("error"), "statTags": item.get("statTags")}
        assert_no_secret(orjson.dumps(reason).decode(), "protocol error item")
    records = caplog.records
    assert any(r.name.startswith("uvicorn") for r in records)
    assert any(r.name.startswith("httpcore") for r in records)
    assert any(r.name.startswith("klaviyo_destination") for r in records)
    # the WARNING line of each rejected or failed event (webhook.record) is among them
    undelivered = {vars(r).get("error") for r in records if r.msg == "event %s: %s"}
    assert {"klaviyo_rejected", "klaviyo_auth_rejected", "klaviyo_unavailable"} <= undelivered
    for record in records:
        assert_no_secret(rendered(record), f"log record of {record.name}")


@pytest.mark.anyio
async def test_error_objects_never_carry_the_key() -> None:
    klaviyo = EchoingKlaviyo()
    raised: list[BaseException] = []
    async with KlaviyoClient(
        settings(max_attempts=2), transport=httpx.MockTransport(klaviyo.handler)
    ) as client:
        session = KlaviyoSession(client, SecretStr(KEY))
        requests = [
            create_event({"metric": {"name": kind}, "profile": {}, "properties": {}})
            for kind in ("rejected", "auth-fail", "flaky", "throttle", "html")
        ]
        requests += [create_profile({"data": {"attributes": {}}}), subscribe({"kind": "html"})]
        for request in requests:
            try:
                await session.run_one(request, time.monotonic() + 25, [])
            except DestinationError as exc:
                raised.append(exc)
    assert len(raised) >= 4
    for error in raised:
        chain: BaseException | None = error
        while chain is not None:
            assert_no_secret(repr(chain) + str(chain), type(chain).__name__)
            chain = chain.__cause__ or chain.__context__
        assert isinstance(error, DestinationError)
        assert_no_secret(orjson.dumps(error.to_dict()).decode(), "to_dict")


def test_settings_repr_hides_secrets() -> None:
    s = settings()
    for text in (repr(s), str(s), s.model_dump_json(), repr(s.model_dump())):
        assert_no_secret(text, "settings")


# --- 3. one outbound host ------------------------------------------------------------------------

SSRF_EVENT = {
    "type": "track",
    "event": "Product Added",
    "userId": "http://169.254.169.254/latest/meta-data/",
    "messageId": "ssrf-1",
    "properties": {
        "url": "http://169.254.169.254/latest/meta-data/iam",
        "endpoint": "http://evil.example/",
        "image_url": "file:///etc/passwd",
        "checkout_url": "//evil.example/x",
        "products": [{"url": "http://10.0.0.1/", "product_id": "p"}],
    },
    "context": {
        "traits": {"email": "a@b.co", "endpoint": "http://evil.example/", "url": "http://x/"},
        "baseUrl": "http://evil.example/",
    },
    "integrations": {"Klaviyo": {"endpoint": "http://evil.example/"}},
}


@pytest.mark.anyio
async def test_requests_only_ever_go_to_the_base_url(build: Build) -> None:
    klaviyo = EchoingKlaviyo()
    ssrf_identify = {
        **IDENTIFY,
        "userId": "http://169.254.169.254/",
        "traits": {**IDENTIFY["traits"], "url": "http://evil.example/", "endpoint": "//x"},
    }
    config = {
        "privateApiKey": KEY,
        "listId": "L1",
        "baseUrl": "http://evil.example",
        "endpoint": "http://evil.example",
    }
    jobs = [
        {"message": m, "metadata": {"jobId": n}, "destination": {"ID": "d", "Config": config}}
        for n, m in enumerate([SSRF_EVENT, ssrf_identify])
    ]
    async with in_process(build, settings(), klaviyo.handler) as client:
        for body in (SSRF_EVENT, ssrf_identify, [SSRF_EVENT, ssrf_identify]):
            response = await client.post("/v1/events", json=body, headers=bearer())
            assert response.status_code in (200, 207, 400)
        await client.post("/v0/destinations/klaviyo", json=jobs)
        await client.post("/routerTransform", json={"input": jobs})
    assert klaviyo.seen
    assert {(url.scheme, url.host, url.port) for url in klaviyo.seen} == {
        ("https", "a.klaviyo.com", None)
    }


# --- 4. limits -----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("path", ["/v1/events", "/v1/transform"])
async def test_body_batch_and_depth_limits(build: Build, path: str) -> None:
    limits = settings(max_body_bytes=2000, max_batch_events=3, max_json_depth=8)
    async with in_process(build, limits, EchoingKlaviyo().handler) as client:

        async def post(content: bytes, **headers: str) -> httpx.Response:
            return await client.post(path, content=content, headers={**bearer(), **headers})

        big = orjson.dumps([event("ok", 1) | {"pad": "x" * 3000}])
        assert (await post(big)).status_code == 413

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
            for _ in range(10):
                yield b" " * 500

        response = await client.post(path, content=chunks(), headers=bearer())
        assert response.status_code == 413
        deep = orjson.dumps([{"type": "track", "properties": [[[[[[[[[[1]]]]]]]]]]}])
        response = await post(deep)
        assert response.status_code == 400
        assert "deeper" in response.json()["error"]["message"]
        too_many = orjson.dumps([event("ok", n) for n in range(4)])
        assert (await post(too_many)).status_code == 413
        wrapped = orjson.dumps({"batch": [event("ok", n) for n in range(4)]})
        assert (await post(wrapped)).status_code == 413


def _job(message: dict[str, Any], job_id: int) -> dict[str, Any]:
    config = {"privateApiKey": KEY}
    return {
        "message": message,
        "metadata": {"jobId": job_id, "destinationId": "d1"},
        "destination": {"ID": "d1", "Config": config},
    }


@pytest.mark.anyio
async def test_protocol_body_limit_and_per_event_limits(build: Build) -> None:
    """The processor route takes bodies up to MAX_PROTOCOL_BODY_BYTES; a too deep or too large
    event gets its own error item and its neighbours are transformed."""
    limits = settings(
        max_body_bytes=2000, max_protocol_body_bytes=8000, max_event_bytes=3000, max_json_depth=8
    )
    path = "/v0/destinations/klaviyo"
    async with in_process(build, limits, EchoingKlaviyo().handler) as client:
        over = orjson.dumps([_job(event("ok", 1) | {"pad": "x" * 9000}, 1)])
        assert (await client.post(path, content=over)).status_code == 413

        deep = event("ok", 2) | {"properties": {"a": [[[[[[[[[[1]]]]]]]]]]}}
        large = event("ok", 3) | {"pad": "x" * 3500}
        jobs = [_job(event("ok", 1), 1), _job(deep, 2), _job(large, 3), _job(event("ok", 4), 4)]
        body = orjson.dumps(jobs)
        assert len(body) > limits.max_body_bytes  # over the /v1 limit, under the protocol one
        response = await client.post(path, content=body)
        assert response.status_code == 200
        assert response.headers["apiversion"] == "2"
        items = {item["metadata"]["jobId"]: item for item in response.json()}
        assert (items[1]["statusCode"], items[4]["statusCode"]) == (200, 200)
        assert (items[2]["statusCode"], items[3]["statusCode"]) == (400, 413)
        assert "deeper than 8" in items[2]["error"]
        assert "larger than 3000" in items[3]["error"]


def _disguised(depth: int) -> Any:
    """``depth`` nested arrays, each holding ``"]"`` first and ``"["`` last: counted with the
    brackets inside strings, every level closes at once and the whole looks one level deep."""
    value: Any = 1
    for _ in range(depth):
        value = ["]", value, "["]
    return value


@pytest.mark.anyio
@pytest.mark.parametrize("depth", [70, 300])
async def test_brackets_inside_strings_do_not_hide_depth(build: Build, depth: int) -> None:
    """Past the depth limit (64 by default) with the disguise: that event alone gets its 400
    on every route (at 300 levels the mapping's recursion used to make the request a 500)."""
    deep = event("ok", 2) | {"properties": {"a": _disguised(depth)}}
    async with in_process(build, settings(), EchoingKlaviyo().handler) as client:
        jobs = [_job(event("ok", 1), 1), _job(deep, 2), _job(event("ok", 3), 3)]
        # json, not orjson: orjson writes at most 255 levels
        response = await client.post("/v0/destinations/klaviyo", content=json.dumps(jobs))
        assert response.status_code == 200, response.text
        items = {item["metadata"]["jobId"]: item["statusCode"] for item in response.json()}
        assert items == {1: 200, 2: 400, 3: 200}

        routed = {"input": jobs, "destType": "klaviyo"}
        response = await client.post("/routerTransform", content=json.dumps(routed))
        assert response.status_code == 200, response.text
        failed = [out for out in response.json()["output"] if out["statusCode"] != 200]
        assert [out["metadata"][0]["jobId"] for out in failed] == [2]
        assert "deeper" in failed[0]["error"]

        for path in ("/v1/transform", "/v1/events"):
            response = await client.post(path, content=json.dumps([deep]), headers=bearer())
            assert response.status_code == 400, response.text
            assert "deeper than 64" in response.json()["error"]["message"]


@pytest.mark.anyio
@pytest.mark.parametrize("declared", ["9" * 5000, "1" * 30, "²", "-1", " 5"])
async def test_odd_content_length_headers_are_not_a_500(build: Build, declared: str) -> None:
    """A declared length the limit check cannot read must not crash it."""
    async with in_process(build, settings(max_body_bytes=2000), EchoingKlaviyo().handler) as client:
        request = client.build_request(
            "POST", "/v1/transform", content=orjson.dumps(event("ok", 1)), headers=bearer()
        )
        request.headers["content-length"] = declared
        response = await client.send(request)
        assert response.status_code < 500, response.text


# --- the embedded emulator --------------------------------------------------------------------


@contextlib.asynccontextmanager
async def embedded(way: str, token: str | None) -> AsyncIterator[httpx.AsyncClient]:
    """The app ``serve`` builds without key or base URL (embedded emulator), in process."""
    values: dict[str, Any] = {"webhook_token": SecretStr(token) if token else None}
    with contextlib.redirect_stdout(io.StringIO()):  # the start-up banner
        app = _embedded_app(Settings(**values), "127.0.0.1", 8080)
    async with served(served_way(way, app, Settings(**values))) as client:
        yield client


@pytest.mark.anyio
@pytest.mark.parametrize("token", [TOKEN, None], ids=["token", "no-token"])
async def test_the_banners_curl_lines_work_as_printed(way: str, token: str | None) -> None:
    """Each curl line of the start-up banner, run as printed (the token in its placeholder's
    place), is answered, not refused: with a token set, the lines carry its header."""
    values: dict[str, Any] = {"webhook_token": SecretStr(token) if token else None}
    banner = io.StringIO()
    with contextlib.redirect_stdout(banner):
        app = _embedded_app(Settings(**values), "127.0.0.1", 8080)
    assert_no_secret(banner.getvalue(), "the banner")
    lines = [
        line.split("curl ", 1)[1] for line in banner.getvalue().splitlines() if "curl " in line
    ]
    assert len(lines) == 2
    async with served(served_way(way, app, Settings(**values))) as client:
        for line in lines:
            words = shlex.split(line.replace("<WEBHOOK_TOKEN>", token or ""))
            url = next(word for word in words if word.startswith("http://"))
            headers = dict(
                words[i + 1].split(": ", 1) for i, word in enumerate(words) if word == "-H"
            )
            body = words[words.index("-d") + 1] if "-d" in words else None
            response = await client.request(
                "POST" if body else "GET", url, content=body, headers=headers
            )
            assert response.status_code in (200, 202), (line, response.text)
            assert ("Authorization" in headers) is (token is not None)


KLAVIYO_HEADERS = {"revision": "2023-02-22", "Content-Type": "application/json"}
PROFILE = {"data": {"type": "profile", "attributes": {"email": "ada@example.com"}}}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/emulator/__emulator/state"),
        ("GET", "/emulator/__emulator/requests"),
        ("POST", "/emulator/__emulator/reset"),
        ("POST", "/emulator/__emulator/faults"),
        ("POST", "/emulator/api/profiles"),
        ("GET", "/emulator/docs"),
    ],
)
async def test_the_embedded_emulator_needs_the_token_when_one_is_set(
    way: str, method: str, path: str
) -> None:
    async with embedded(way, TOKEN) as client:
        refused = await client.request(method, path, json={})
        assert refused.status_code == 401
        assert refused.json()["code"] == "unauthorized"
        assert TOKEN not in refused.text
        allowed = await client.request(method, path, json={"status": 500}, headers=bearer())
        assert allowed.status_code != 401


@pytest.mark.anyio
async def test_rudder_server_can_deliver_to_it_with_the_token_as_klaviyo_key(way: str) -> None:
    async with embedded(way, TOKEN) as client:
        headers = {**KLAVIYO_HEADERS, "Authorization": f"Klaviyo-API-Key {TOKEN}"}
        created = await client.post("/emulator/api/profiles", json=PROFILE, headers=headers)
        assert created.status_code == 201
        wrong = {**KLAVIYO_HEADERS, "Authorization": "Klaviyo-API-Key pk_other"}
        assert (
            await client.post("/emulator/api/profiles", json=PROFILE, headers=wrong)
        ).status_code == 401


@pytest.mark.anyio
async def test_without_a_token_the_loopback_emulator_is_open_and_links_resolve(way: str) -> None:
    async with embedded(way, None) as client:
        headers = {**KLAVIYO_HEADERS, "Authorization": "Klaviyo-API-Key pk_any"}
        created = await client.post("/emulator/api/profiles", json=PROFILE, headers=headers)
        assert created.status_code == 201
        link = created.json()["data"]["links"]["self"]
        assert link.startswith("http://localhost/emulator/api/profiles/")
        assert (await client.get(link, headers=headers)).status_code == 200


# --- 5. Klaviyo's errors may echo a key in any member -------------------------------------------

#: Another account's key, echoed as an Authorization header value: masked as one too.
OTHER_KEY = "pk_other_SECRET_987654321"


def echoed_everywhere(status: int) -> dict[str, Any]:
    """Klaviyo's error JSON with the key in every member, in every shape a member can take."""
    header = f"Klaviyo-API-Key {KEY}"
    return {
        "errors": [
            {
                "id": KEY,
                "status": status,
                "code": f"code-{KEY}",
                "title": f"title {header}",
                "detail": {"sent": header, "nested": [KEY, {"k": KEY}], KEY: 1},
                "source": {"pointer": f"/data/attributes/{KEY}", "parameter": KEY},
                "meta": {"duplicate": KEY},
            },
            {
                "id": "e2",
                "code": "invalid",
                "title": "t",
                "detail": f"sent with Authorization: Klaviyo-API-Key {OTHER_KEY}",
                "source": {"pointer": f"/Bearer {OTHER_KEY}"},
            },
            {"id": ["list", KEY], "code": 7, "detail": None, "source": KEY},
        ]
    }


def echoing_handler(request: httpx.Request) -> httpx.Response:
    """Answers by the event's name: which status to echo the key with."""
    name = orjson.loads(request.content)["data"]["attributes"].get("metric", {}).get("name", "")
    status = {"rejected": 400, "auth-fail": 401, "throttle": 429, "flaky": 503}.get(name)
    if request.url.path.endswith("/profiles") and request.method == "POST":
        status = 409  # no duplicate_profile_id: the conflict carries Klaviyo's errors
    if status is None:
        return httpx.Response(202)
    return httpx.Response(status, json=echoed_everywhere(status))


@pytest.mark.anyio
async def test_a_key_echoed_in_any_member_of_klaviyos_errors_never_reaches_an_answer(
    build: Build,
    caplog: pytest.LogCaptureFixture,
) -> None:
    log_everything(caplog)
    kinds = ["rejected", "auth-fail", "throttle", "flaky"]
    batch = [event(kind, n) for n, kind in enumerate(kinds)] + [IDENTIFY]
    async with in_process(build, settings(max_attempts=2), echoing_handler) as client:
        answers = [await client.post("/v1/events", json=body, headers=bearer()) for body in
                   (batch, batch[0], {"batch": batch})]  # fmt: skip
    results = answers[0].json()["results"]
    assert [r["error"]["klaviyo_status"] for r in results] == [400, 401, 429, 503, 409]
    for response in answers:
        text = response.text + repr(response.headers)
        assert_no_secret(text, "answer")
        assert OTHER_KEY not in text, text[:500]
    first = results[0]["error"]
    assert first["klaviyo_errors"][0]["id"] == "**********"  # masked, not dropped
    assert first["field"] == "/data/attributes/**********"
    for record in caplog.records:
        assert_no_secret(rendered(record), f"log record of {record.name}")


@pytest.mark.parametrize(
    "line",
    [
        "Authorization: Klaviyo-API-Key {secret}",
        "headers={{'authorization': 'Bearer {secret}'}}",
        '{{"Authorization": "Basic {secret}"}}',
        "sent Klaviyo-API-Key {secret} to Klaviyo",
        "authorization={secret}",
    ],
)
def test_any_authorization_value_is_masked_in_log_lines(line: str) -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, line.format(secret=OTHER_KEY), (), None
    )
    record.header = line.format(secret=OTHER_KEY)
    for inner in (logs.JsonFormatter(), logs.TextFormatter()):
        rendered_line = logs.RedactSecrets(inner, [KEY]).format(record)
        assert OTHER_KEY not in rendered_line
        assert "**********" in rendered_line


# --- 6. odd answers from Klaviyo are per-event retryable failures, never a 500 (items 5, 6) ------


def odd_answer(kind: str) -> Callable[[httpx.Request], httpx.Response]:
    def handle(request: httpx.Request) -> httpx.Response:
        if b"fine" in request.content:
            return httpx.Response(202)
        if kind == "corrupt gzip":
            stream = httpx.ByteStream(b"\x1f\x8b not gzip")
            return httpx.Response(202, headers={"Content-Encoding": "gzip"}, stream=stream)
        if kind == "redirect":
            return httpx.Response(307, headers={"Location": "https://elsewhere.example/api"})
        if kind == "redirect to itself":
            return httpx.Response(302, headers={"Location": str(request.url)})
        if kind == "5 MB answer":
            return httpx.Response(202, content=b" " * (5 * 1024 * 1024))
        return httpx.Response(429, headers={"Retry-After": "86400"})

    return handle


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "status", "retry_after"),
    [
        ("corrupt gzip", 503, "5"),
        ("redirect", 503, "5"),
        ("redirect to itself", 503, "5"),
        ("5 MB answer", 503, "5"),
    ],
)
async def test_an_odd_answer_fails_each_event_retryably(
    build: Build, kind: str, status: int, retry_after: str
) -> None:
    batch = [event("odd", 1), event("fine", 2), event("odd", 3)]
    async with in_process(build, settings(), odd_answer(kind)) as client:
        response = await client.post("/v1/events", json=batch, headers=bearer())
    assert (response.status_code, response.headers.get("Retry-After")) == (status, retry_after)
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["failed", "delivered", "failed"]
    assert all(r["error"]["code"] == "klaviyo_unavailable" for r in results[::2])


@pytest.mark.anyio
async def test_a_retry_after_beyond_the_cap_is_handed_to_the_caller(build: Build) -> None:
    async with in_process(build, settings(), odd_answer("Retry-After: 86400")) as client:
        response = await client.post("/v1/events", json=event("odd", 1), headers=bearer())
    assert (response.status_code, response.headers.get("Retry-After")) == (429, "86400")
    [result] = response.json()["results"]
    assert (result["status"], result["retry_after"]) == ("failed", 86400)


@pytest.mark.parametrize(
    ("waits", "header"),
    [([1e300], "604800"), ([float("inf")], "5"), ([0.2], "1"), ([86400.0], "86400"), ([None], "5")],
    ids=["absurd", "infinite", "under-a-second", "a-day", "unknown"],
)
def test_the_retry_after_header_stays_a_number_a_client_reads(
    waits: list[float | None], header: str
) -> None:
    outcomes = [Outcome("failed", [], {"code": "klaviyo_unavailable"}, w) for w in waits]
    assert retry_after_header(outcomes) == header
