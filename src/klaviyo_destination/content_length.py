"""A ``Content-Length`` as declared: read the same way for requests in and Klaviyo's answers."""

from __future__ import annotations

from typing import Final

#: Longer than any limit: what a declaration of 19 digits or more is taken for.
_HUGE: Final = 10**18


def declared_length(declared: str | None) -> int | None:
    """The declared length, or ``None`` when absent or not a plain number.

    ASCII digits only (``"²".isdigit()`` is true), and no ``int()`` of thousands of digits.
    """
    if not declared or not declared.isascii() or not declared.isdigit():
        return None
    return int(declared) if len(declared) <= 18 else _HUGE
