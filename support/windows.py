"""What Klaviyo would have counted: the busiest window of recorded request times."""

from __future__ import annotations

from collections.abc import Iterable


def busiest(times: Iterable[float], period: float) -> int:
    """The most requests inside any span of ``period`` seconds (two pointers, sorted)."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= period:
            start += 1
        best = max(best, end - start + 1)
    return best
