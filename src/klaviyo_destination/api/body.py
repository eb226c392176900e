"""Reading a request's body under the size limit, then parsing it (``ingest.body``)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ..errors import PayloadTooLarge
from ..ingest.body import parse_json
from .encoding import decoder_for


async def read_json(request: Request, *, max_bytes: int, max_depth: int | None) -> Any:
    """The request's JSON body, refusing it early when it grows past ``max_bytes``."""
    return parse_json(await read_bytes(request, max_bytes=max_bytes), max_depth=max_depth)


async def read_bytes(request: Request, *, max_bytes: int) -> bytearray:
    """The request's body in one buffer (no list of chunks joined into a second copy)."""
    decoder = decoder_for(request.headers.get("content-encoding"), max_bytes)
    declared = request.headers.get("content-length")
    # ASCII digits only ("²".isdigit() is true), and no int() of thousands of digits.
    if (
        declared
        and declared.isascii()
        and declared.isdigit()
        and (len(declared) > 18 or int(declared) > max_bytes)
    ):
        raise PayloadTooLarge(f"body is larger than {max_bytes} bytes", field="body")
    body = bytearray()
    async for chunk in request.stream():
        if decoder is not None:
            body += decoder.feed(chunk)  # which enforces max_bytes on the decoded size
            continue
        if len(body) + len(chunk) > max_bytes:
            raise PayloadTooLarge(f"body is larger than {max_bytes} bytes", field="body")
        body += chunk
    if decoder is not None:
        decoder.finish()
    return body
