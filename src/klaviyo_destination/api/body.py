"""Reading a request's body under the size limit, then parsing it (``ingest.body``)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from ..errors import PayloadTooLarge
from ..ingest.body import parse_json


async def read_json(request: Request, *, max_bytes: int, max_depth: int) -> Any:
    """The request's JSON body, refusing it early when it grows past ``max_bytes``."""
    declared = request.headers.get("content-length")
    # ASCII digits only ("²".isdigit() is true), and no int() of thousands of digits.
    if (
        declared
        and declared.isascii()
        and declared.isdigit()
        and (len(declared) > 18 or int(declared) > max_bytes)
    ):
        raise PayloadTooLarge(f"body is larger than {max_bytes} bytes", field="body")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"body is larger than {max_bytes} bytes", field="body")
        chunks.append(chunk)
    return parse_json(b"".join(chunks), max_depth=max_depth)
