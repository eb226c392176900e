"""Compressed request bodies (``Content-Encoding: gzip`` or ``deflate``), decoded as they arrive.

RudderStack's SDKs gzip their bodies by default (the Node SDK labels them
``application/x-www-form-urlencoded`` besides), so the encoding, not the content type, decides.
The size limit applies to the decoded bytes, and decoding stops as soon as it is passed: a
decompression bomb costs at most the limit in memory.
"""

from __future__ import annotations

import zlib
from typing import Final

from ..errors import BadRequest, PayloadTooLarge, UnsupportedEncoding

_GZIP: Final = frozenset({"gzip", "x-gzip"})
_IDENTITY: Final = frozenset({"", "identity"})
SUPPORTED: Final = "gzip, deflate"


class Decoder:
    """One body's decompressor, fed chunk by chunk, never producing more than ``max_bytes``."""

    def __init__(self, encoding: str, max_bytes: int) -> None:
        self.encoding = encoding
        self.max_bytes = max_bytes
        self.size = 0
        self._zlib: zlib._Decompress | None = None
        if encoding in _GZIP:
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, chunk: bytes) -> bytes:
        if self._zlib is None:
            # deflate is zlib-wrapped by the RFC, raw in some clients: the first bytes tell.
            wrapped = (
                len(chunk) >= 2 and (chunk[0] & 0x0F) == 8 and (chunk[0] << 8 | chunk[1]) % 31 == 0
            )
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        out = bytearray()
        data = chunk
        while data:
            try:
                piece = self._zlib.decompress(data, self.max_bytes - self.size + 1)
            except zlib.error as exc:
                raise BadRequest(
                    f"body is not valid {self.encoding}: {exc}", field="body"
                ) from None
            self.size += len(piece)
            if self.size > self.max_bytes:
                raise PayloadTooLarge(
                    f"body is larger than {self.max_bytes} bytes once decompressed", field="body"
                )
            out += piece
            data = self._zlib.unconsumed_tail
        return bytes(out)

    def finish(self) -> None:
        """The stream ended: a body that was started must be complete (an empty one is left to
        the JSON check)."""
        if self._zlib is not None and not self._zlib.eof:
            raise BadRequest(f"body is truncated {self.encoding} data", field="body")


def decoder_for(header: str | None, max_bytes: int) -> Decoder | None:
    """The decoder of a ``Content-Encoding`` value; ``None`` for no encoding."""
    encoding = (header or "").strip().lower()
    if encoding in _IDENTITY:
        return None
    if encoding in _GZIP or encoding == "deflate":
        return Decoder(encoding, max_bytes)
    raise UnsupportedEncoding(
        f"Content-Encoding {encoding[:40]!r} is not supported; send {SUPPORTED} or none",
        field="Content-Encoding",
    )
