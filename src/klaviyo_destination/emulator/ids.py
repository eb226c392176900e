"""Klaviyo-shaped profile and event ids: ULIDs (26 Crockford base32 characters)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TIME_BITS: Final = 48
_RANDOM_BITS: Final = 80


class IdFactory:
    """48 bits of milliseconds then 80 random bits, like ``01GW3PHVY0MTCDGS0A1612HARX``.

    With a ``seed`` (and a fixed clock) the sequence is reproducible, which is what golden
    tests want; without one the bits come from the OS so separate emulators never collide.
    """

    def __init__(self, clock: Callable[[], float], seed: int | None = None) -> None:
        self._clock = clock
        # Not security-relevant: ids only need to look like Klaviyo's and not collide.
        self._random = random.Random(seed) if seed is not None else random.SystemRandom()  # noqa: S311

    def new(self) -> str:
        millis = int(self._clock() * 1000) & ((1 << _TIME_BITS) - 1)
        value = (millis << _RANDOM_BITS) | self._random.getrandbits(_RANDOM_BITS)
        # 26 characters x 5 bits = 130 bits; the top two are always zero, as in every ULID.
        return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))
