"""Compressed request bodies (``Content-Encoding: gzip`` or ``deflate``), decoded as they arrive.

RudderStack's SDKs gzip their bodies by default (the Node SDK labels them
``application/x-www-form-urlencoded`` besides), so the encoding, not the content type, decides.
The size limit applies to the decoded bytes, and decoding stops as soon as it is passed: a
decompression bomb costs at most the limit in memory.

A gzip body may hold several members, one after another (RFC 1952 §2.2; ``cat a.gz b.gz``):
each is decoded, and the limit counts them all. Anything else after a stream (after the last
member, or after a deflate stream, which has no members) is refused, never silently dropped.
"""

from __future__ import annotations

import zlib
from typing import Final

from ..errors import BadRequest, PayloadTooLarge, UnsupportedEncoding

_GZIP: Final = frozenset({"gzip", "x-gzip"})
_IDENTITY: Final = frozenset({"", "identity"})
#: ID1 and ID2, the first two bytes of every gzip member (RFC 1952 §2.3.1).
_GZIP_MAGIC: Final = b"\x1f\x8b"
SUPPORTED: Final = "gzip, deflate"


class Decoder:
    """One body's decompressor, fed chunk by chunk, never producing more than ``max_bytes``;
    ``setting`` names the limit in the 413."""

    def __init__(self, encoding: str, max_bytes: int, setting: str = "") -> None:
        self.encoding = encoding
        self.max_bytes = max_bytes
        self.setting = setting
        self.size = 0
        self._zlib: zlib._Decompress | None = None
        #: bytes too few to tell what comes: whether deflate is wrapped, or after a finished
        #: gzip member whether another one starts
        self._after = b""
        if encoding in _GZIP:
            self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def feed(self, chunk: bytes) -> bytes:
        if self._zlib is None:
            # deflate is zlib-wrapped by the RFC, raw in some clients: the first two bytes tell.
            chunk = self._after + chunk
            if len(chunk) < 2:
                self._after = chunk
                return b""
            self._after = b""
            wrapped = (chunk[0] & 0x0F) == 8 and (chunk[0] << 8 | chunk[1]) % 31 == 0
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS)
        out = bytearray()
        data = chunk
        while data:
            if self._zlib.eof:
                data = self._next_member(data)
                if not data:
                    break
            decompressor = self._zlib
            out += self._decompress(decompressor, data)
            data = decompressor.unconsumed_tail or decompressor.unused_data
        return bytes(out)

    def _decompress(self, decompressor: zlib._Decompress, data: bytes) -> bytes:
        try:
            piece = decompressor.decompress(data, self.max_bytes - self.size + 1)
        except zlib.error as exc:
            raise BadRequest(f"body is not valid {self.encoding}: {exc}", field="body") from None
        self.size += len(piece)
        if self.size > self.max_bytes:
            named = f" ({self.setting})" if self.setting else ""
            raise PayloadTooLarge(
                f"body is larger than {self.max_bytes} bytes once decompressed{named}",
                field="body",
            )
        return piece

    def _next_member(self, data: bytes) -> bytes:
        """``data`` came after a finished stream: the start of the next gzip member (returned,
        with its decompressor ready), or nothing yet when too few bytes came to tell."""
        data = self._after + data
        self._after = b""
        if self.encoding in _GZIP and len(data) < len(_GZIP_MAGIC) and _GZIP_MAGIC.startswith(data):
            self._after = data
            return b""
        if self.encoding not in _GZIP or not data.startswith(_GZIP_MAGIC):
            raise BadRequest(
                f"body has {len(data)} bytes of trailing data after the {self.encoding} stream",
                field="body",
            )
        self._zlib = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return data

    def finish(self) -> None:
        """The stream ended: a body that was started must be complete (an empty one is left to
        the JSON check), and nothing may follow its last member."""
        if self._zlib is None and self._after:
            raise BadRequest(f"body is truncated {self.encoding} data", field="body")
        if self._after:
            raise BadRequest(
                f"body has {len(self._after)} bytes of trailing data after the "
                f"{self.encoding} stream",
                field="body",
            )
        if self._zlib is not None and not self._zlib.eof:
            raise BadRequest(f"body is truncated {self.encoding} data", field="body")


def decoder_for(header: str | None, max_bytes: int, setting: str = "") -> Decoder | None:
    """The decoder of a ``Content-Encoding`` value; ``None`` for no encoding."""
    encoding = (header or "").strip().lower()
    if encoding in _IDENTITY:
        return None
    if encoding in _GZIP or encoding == "deflate":
        return Decoder(encoding, max_bytes, setting)
    raise UnsupportedEncoding(
        f"Content-Encoding {encoding[:40]!r} is not supported; send {SUPPORTED} or none",
        field="Content-Encoding",
    )
