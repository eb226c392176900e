"""Reading a request's body under the size limit, then parsing it (``ingest.body``)."""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect

from ..content_length import declared_length
from ..errors import PayloadTooLarge
from ..ingest.body import parse_json
from .encoding import decoder_for
from .exchange import Call


async def read_json(
    call: Call, *, max_bytes: int, max_depth: int | None, drain_bytes: int = 0
) -> Any:
    """The request's JSON body, refusing it when it grows past ``max_bytes``."""
    body = await read_bytes(call, max_bytes=max_bytes, drain_bytes=drain_bytes)
    return parse_json(body, max_depth=max_depth)


async def read_bytes(
    call: Call,
    *,
    max_bytes: int,
    drain_bytes: int = 0,
    max_decoded_bytes: int | None = None,
    decoded_setting: str = "",
) -> bytearray:
    """The request's body in one buffer (no list of chunks joined into a second copy),
    decoded when it is gzip or deflate, and refused past ``max_bytes``; decoded, it is refused
    past ``max_decoded_bytes`` (the setting ``decoded_setting``) when that is lower.

    An oversize body of up to ``max_bytes + drain_bytes`` is read to its end and discarded
    before the 413, as web servers' lingering close does: a sender that writes its whole body
    before it reads (urllib, many webhook senders) would otherwise meet a closed socket, not
    the answer. Anything larger is refused at once (and the connection closed, see ``edge``).
    """
    too_large = PayloadTooLarge(f"body is larger than {max_bytes} bytes", field="body")
    decoded = max_bytes if max_decoded_bytes is None else min(max_bytes, max_decoded_bytes)
    setting = decoded_setting if decoded < max_bytes else ""
    decoder = decoder_for(call.headers.get("content-encoding"), decoded, setting)
    declared = declared_length(call.headers.get("content-length"))
    if declared is not None and declared > max_bytes + drain_bytes:
        raise too_large
    body = bytearray()
    size = 0
    # Starlette's request.stream() loop, on receive itself: the same messages and ClientDisconnect,
    # without an async generator and its checks for a body already read (none is read twice)
    receive = call.receive
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        if message["type"] != "http.request":
            continue
        more = message.get("more_body", False)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes + drain_bytes:
            raise too_large
        if size > max_bytes:
            continue  # draining: read on to the end, keep nothing
        if decoder is not None:
            body += decoder.feed(chunk)  # which enforces the limit on the decoded size
        else:
            body += chunk
    if size > max_bytes:
        raise too_large
    if decoder is not None:
        decoder.finish()
    return body
