"""gzip and deflate request bodies on every route that takes them (issue 27 C4): every member
of a gzip body is decoded, the size limit counts them all, trailing data is refused.

The decoder is fed byte by byte too, so that a member boundary (even one inside the next
member's two magic bytes) can fall anywhere in the chunks uvicorn hands over.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
import respx
from pydantic import SecretStr

from klaviyo_destination.api.encoding import Decoder
from klaviyo_destination.errors import BadRequest, DestinationError, PayloadTooLarge
from klaviyo_destination.settings import Settings
from support.events import signed_up
from tests.helpers.apps import Build, served

TOKEN = "compressed-SECRET-token"
KEY = "pk_compressed"
BASE = "https://a.klaviyo.com"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

pytestmark = pytest.mark.anyio


def _results(answer: Any) -> int:
    return len(answer["results"])


def _processor_jobs(answer: Any) -> int:
    return len({item["metadata"]["jobId"] for item in answer})


def _router_jobs(answer: Any) -> int:
    return sum(len(output["metadata"]) for output in answer["output"])


def _job(n: int) -> dict[str, Any]:
    return {
        "message": signed_up(f"m{n}"),
        "metadata": {"jobId": n, "destinationId": "d1"},
        "destination": {"ID": "d1", "Config": {"privateApiKey": KEY}},
    }


#: Every route that reads a compressed body, with a body of three events and how to count
#: the events its answer accounted for.
ROUTES: dict[str, tuple[bytes, Callable[[Any], int] | None]] = {
    "/v1/batch": (orjson.dumps({"batch": [signed_up(f"m{n}") for n in range(3)]}), None),
    "/v1/events": (orjson.dumps([signed_up(f"m{n}") for n in range(3)]), None),
    "/v1/transform": (
        orjson.dumps([signed_up(f"m{n}") for n in range(3)]),
        _results,
    ),
    "/v0/destinations/klaviyo": (
        orjson.dumps([_job(n) for n in range(3)]),
        _processor_jobs,
    ),
    "/routerTransform": (
        orjson.dumps({"destType": "klaviyo", "input": [_job(n) for n in range(3)]}),
        _router_jobs,
    ),
}


def _members(data: bytes, parts: int) -> bytes:
    """``data`` as ``parts`` gzip members, one after the other (``cat a.gz b.gz``)."""
    step = -(-len(data) // parts)
    return b"".join(gzip.compress(data[i : i + step]) for i in range(0, len(data), step))


@pytest.fixture
async def client(build: Build) -> AsyncIterator[httpx.AsyncClient]:
    klaviyo = respx.MockRouter(base_url=BASE, assert_all_called=False)
    klaviyo.post("/api/events").respond(202)
    settings = Settings(
        klaviyo_private_api_key=SecretStr(KEY),
        webhook_token=SecretStr(TOKEN),
        max_protocol_decoded_bytes=64 * 1024,
        max_attempts=1,
    )
    app = build(settings, transport=httpx.MockTransport(klaviyo.async_handler))
    async with served(app, "http://s") as c:
        yield c


@pytest.mark.parametrize("path", ROUTES)
async def test_every_gzip_member_is_decoded(client: httpx.AsyncClient, path: str) -> None:
    """The JSON is cut across three members: reading the first alone is invalid JSON."""
    body, count = ROUTES[path]
    headers = {**AUTH, "Content-Encoding": "gzip"}
    response = await client.post(path, content=_members(body, 3), headers=headers)
    assert response.status_code == 200, response.text
    if count is not None:
        assert count(response.json()) == 3


TRAILING: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "garbage after gzip": ("gzip", lambda body: gzip.compress(body) + b"garbage"),
    "one stray byte after gzip": ("gzip", lambda body: gzip.compress(body) + b"\x1f"),
    "zeros after gzip": ("gzip", lambda body: gzip.compress(body) + b"\0" * 8),
    "garbage after a second member": ("gzip", lambda body: _members(body, 2) + b"x"),
    "garbage after zlib deflate": ("deflate", lambda body: zlib.compress(body) + b"garbage"),
    "a second zlib stream": ("deflate", lambda body: zlib.compress(body) * 2),
}


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("case", TRAILING)
async def test_trailing_data_after_the_stream_is_a_400(
    client: httpx.AsyncClient, path: str, case: str
) -> None:
    encoding, encode = TRAILING[case]
    body, _ = ROUTES[path]
    headers = {**AUTH, "Content-Encoding": encoding}
    response = await client.post(path, content=encode(body), headers=headers)
    assert response.status_code == 400, response.text
    assert "trailing data" in response.json()["error"]["message"]
    assert response.json()["error"]["field"] == "body"


@pytest.mark.parametrize("path", ["/v0/destinations/klaviyo", "/routerTransform"])
async def test_the_decoded_limit_counts_every_member(client: httpx.AsyncClient, path: str) -> None:
    """Two members of 40 KiB each, under MAX_PROTOCOL_DECODED_BYTES (64 KiB) alone."""
    member = gzip.compress(b" " * 40 * 1024)
    headers = {**AUTH, "Content-Encoding": "gzip"}
    assert (await client.post(path, content=member, headers=headers)).status_code == 400  # empty
    response = await client.post(path, content=member * 2, headers=headers)
    assert response.status_code == 413, response.text
    assert "MAX_PROTOCOL_DECODED_BYTES" in response.json()["error"]["message"]


def _decoded(decoder: Decoder, data: bytes, *, bytewise: bool) -> bytes:
    chunks = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    out = b"".join(decoder.feed(chunk) for chunk in chunks)
    decoder.finish()
    return out


DATA = orjson.dumps([signed_up(f"m{n}") for n in range(5)])
#: (encoded body, what it decodes to, or the error it raises), fed in one chunk and byte by byte
DECODED: dict[str, tuple[str, bytes, bytes | type[DestinationError]]] = {
    "one member": ("gzip", gzip.compress(DATA), DATA),
    "three members": ("gzip", _members(DATA, 3), DATA),
    "an empty member between two": (
        "gzip",
        gzip.compress(DATA[:10]) + gzip.compress(b"") + gzip.compress(DATA[10:]),
        DATA,
    ),
    "trailing garbage": ("gzip", gzip.compress(DATA) + b"{}", BadRequest),
    "a lone magic byte after the member": ("gzip", gzip.compress(DATA) + b"\x1f", BadRequest),
    "a truncated second member": ("gzip", _members(DATA, 2)[:-4], BadRequest),
    "members past the limit together": ("gzip", _members(b" " * 3000, 2), PayloadTooLarge),
    "zlib deflate": ("deflate", zlib.compress(DATA), DATA),
    "raw deflate": ("deflate", zlib.compress(DATA, wbits=-15), DATA),
    "one byte of deflate": ("deflate", zlib.compress(DATA)[:1], BadRequest),
    "zlib deflate, then garbage": ("deflate", zlib.compress(DATA) + b"\x1f\x8b", BadRequest),
}


@pytest.mark.parametrize("case", DECODED)
@pytest.mark.parametrize("bytewise", [False, True], ids=["one chunk", "byte by byte"])
def test_the_decoder(case: str, bytewise: bool) -> None:
    encoding, body, expected = DECODED[case]
    decoder = Decoder(encoding, 2000, "LIMIT")
    if isinstance(expected, bytes):
        assert _decoded(decoder, body, bytewise=bytewise) == expected
    else:
        with pytest.raises(expected):
            _decoded(decoder, body, bytewise=bytewise)
