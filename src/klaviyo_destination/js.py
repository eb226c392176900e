"""JavaScript value semantics the reference transformer relies on (docs/mapping.md §1).

The reference is JavaScript, so "is this value there?" follows JS truthiness, where ``{}``,
``[]``, ``"0"`` and ``"false"`` are true and ``0``/``""`` are false. Python's rules differ, so
every condition of the mapping goes through these helpers instead of ``if value:``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final

#: A JSON object as parsed from a request or built for one.
JsonObject = dict[str, Any]
#: Any JSON value as parsed (what orjson gives).
JsonValue = str | int | float | bool | list[Any] | dict[str, Any] | None
#: The two JSON container types, for ``isinstance`` (a tuple: faster than ``dict | list`` on 3.11).
JSON_CONTAINERS: Final = (dict, list)


class _Missing:
    """JavaScript's ``undefined``: a key that is absent, as opposed to one holding ``null``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


def truthy(value: Any) -> bool:
    """JS truthiness: false only for undefined, null, false, 0, -0, NaN and ""."""
    if value is None or value is MISSING or value is False:
        return False
    if isinstance(value, str):
        return bool(value)  # Python and JS agree on strings
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0 and not math.isnan(value)
    return True


def kept(value: Any) -> bool:
    """The reference's "write this value" rule: truthy, or exactly ``0``, or exactly ``false``."""
    if value is None or value is MISSING:
        return False
    kind = type(value)
    if kind is str:
        return bool(value)  # Python and JS agree on strings
    if kind is float:
        return bool(value == value)  # NaN is the only float unequal to itself
    return True  # booleans, integers (0 included), objects and arrays


def js_string(value: Any) -> str:
    """``String(value)`` for JSON values, as far as ``parseFloat(String(v))`` needs it."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ",".join("" if item is None else js_string(item) for item in value)
    if isinstance(value, dict):
        return "[object Object]"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


# JS whitespace that parseFloat skips, besides the ASCII ones str.lstrip() already knows.
_JS_SPACE: Final = " \t\n\v\f\r\u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff" + "".join(
    chr(c) for c in range(0x2000, 0x200B)
)
_FLOAT_PREFIX: Final = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")


def parse_float(value: Any) -> float | None:
    """``parseFloat(String(value))``: the longest leading decimal literal, or ``None`` for NaN."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _FLOAT_PREFIX.match(js_string(value).lstrip(_JS_SPACE))
    if match is None:
        return None
    literal = match.group(0)
    if literal.endswith("Infinity"):
        return -math.inf if literal.startswith("-") else math.inf
    return float(literal)


def js_number(value: float) -> int | float:
    """A float as JavaScript writes it: ``20.0`` serialises as ``20``."""
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def js_trim(text: str) -> str:
    """``String.prototype.trim``: JavaScript's whitespace and line terminators, both ends."""
    return text.strip(_JS_SPACE)


#: ``new Date(ms)`` is valid only within 8.64e15 ms either side of the epoch (TimeClip).
MAX_DATE_MS: Final = 8.64e15
_MS_PER_DAY: Final = 86_400_000


def js_date_iso(ms: float) -> str | None:
    """``new Date(ms).toISOString()``, or ``None`` where JavaScript throws (an invalid date).

    Python's ``datetime`` stops at year 9999; JavaScript dates reach ±275,760 years and write
    years outside 0-9999 with a sign and six digits (``+010000``, ``-000001``).
    """
    if not math.isfinite(ms) or abs(ms) > MAX_DATE_MS:
        return None
    days, in_day = divmod(int(ms), _MS_PER_DAY)  # TimeClip truncates toward zero, then floor
    year, month, day = _civil_from_days(days)
    seconds, millis = divmod(in_day, 1000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    year_text = f"{year:04d}" if 0 <= year <= 9999 else f"{'-' if year < 0 else '+'}{abs(year):06d}"
    return f"{year_text}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{millis:03d}Z"


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """Proleptic Gregorian (year, month, day) of a day count from 1970-01-01, any sign.

    Howard Hinnant's ``civil_from_days``: eras of 400 years, each starting on 1 March.
    """
    shifted = days + 719_468  # days from 0000-03-01
    era = shifted // 146_097
    day_of_era = shifted - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_index = (5 * day_of_year + 2) // 153  # 0 is March
    day = day_of_year - (153 * month_index + 2) // 5 + 1
    month = month_index + 3 if month_index < 10 else month_index - 9
    year = year_of_era + era * 400 + (1 if month <= 2 else 0)
    return year, month, day
