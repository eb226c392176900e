"""Event attribute values in the form Klaviyo's 2023-02-22 schema accepts (docs/mapping.md §8.4,
§8.7): ``time`` as an ISO 8601 string, ``value`` as a number, and ``unique_id``.

The reference copies ``timestamp`` and ``value`` verbatim, which the schema refuses for numbers
and strings respectively; where the input says clearly what was meant, the valid form is sent.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any, Final

import orjson

from ..js import MISSING, JsonObject, js_date_iso, js_string, js_trim, truthy
from .fields import MILLISECONDS_FROM, UNIQUE_ID_HEX_DIGITS

#: RFC 8259's number grammar; ``[0-9]``, not ``\d``, which would admit other scripts' digits.
_JSON_NUMBER: Final = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
#: Integer literals longer than this (sign included) are read as doubles: orjson writes
#: integers of at most 64 bits, and ``int()`` refuses very long digit strings.
_MAX_INT_LITERAL: Final = 19
_INT64: Final = range(-(2**63), 2**63)


def is_number(value: Any) -> bool:
    """A JSON number: an int or a finite float; ``true``/``false`` are not numbers here."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def event_time(timestamp: Any) -> Any:
    """``event_time_iso``: what to send as ``time``, ``MISSING`` for none, ``None`` if invalid.

    A number is Unix time, in milliseconds from ``MILLISECONDS_FROM`` (absolute value) up and in
    seconds below, written as JavaScript's ``toISOString()``. Any other truthy value (a string
    above all) is sent as it is, as the reference does.
    """
    if not truthy(timestamp):
        return MISSING
    return time_value(timestamp)


def time_value(value: Any) -> Any:
    """``event_time_iso`` for a value that is sent: a number as ISO text (``None`` when it is
    no date), anything else as it is. v2/v3 send a kept ``0`` too (§20.1)."""
    if not is_number(value):
        return value
    ms = value if abs(value) >= MILLISECONDS_FROM else value * 1000
    return js_date_iso(ms)


def json_number(text: str) -> int | float | None:
    """``event_value_number`` for a string: the JSON number it holds once trimmed, else ``None``.

    Without fraction or exponent it is an integer (a double beyond 64 bits); a literal too large
    for a double (``1e999``) is no number.
    """
    match = _JSON_NUMBER.fullmatch(js_trim(text))
    if match is None:
        return None
    literal = match.group(0)
    if match.group(1) is None and match.group(2) is None and len(literal) <= _MAX_INT_LITERAL:
        integer = int(literal)
        if integer in _INT64:
            return integer
    number = float(literal)
    return number if math.isfinite(number) else None


def numeric_value(value: Any) -> int | float | None:
    """``event_value_number``: a number stays, a numeric string becomes its number, else None."""
    if is_number(value):
        number: int | float = value
        return number
    return json_number(value) if isinstance(value, str) else None


def has_message_id(message_id: Any) -> bool:
    """A usable ``messageId``: a non-empty string, or a number (``0`` included)."""
    if isinstance(message_id, str):
        return message_id != ""
    return is_number(message_id)


def unique_id(message_id: Any, received: JsonObject) -> str:
    """D1: the ``messageId`` as a string, or else a digest of the event as it was received.

    The digest makes a resent event carry the same ``unique_id``, so Klaviyo stores it once.
    """
    if has_message_id(message_id):
        return js_string(message_id)
    digest = hashlib.sha256(canonical_json(received)).hexdigest()
    return digest[:UNIQUE_ID_HEX_DIGITS]


def canonical_json(value: Any) -> bytes:
    """Keys sorted (by code point), no whitespace, UTF-8 with non-ASCII characters written as
    themselves (never ``\\u`` escapes); control characters, ``"`` and ``\\`` escaped as JSON
    requires. Numbers are written as orjson writes the parsed value: ``1.0`` stays ``1.0``,
    ``1E5`` becomes ``100000.0``.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        # Integers beyond 64 bits: never from a JSON body (orjson reads them as doubles), but
        # a Python caller may hand one over; the standard library writes them.
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8", "surrogatepass")
