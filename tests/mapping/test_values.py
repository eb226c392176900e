"""The value rules behind valid event bodies (docs/mapping.md §8.4, §8.7): JavaScript's
``toISOString()``, its ``trim()``, the JSON number grammar, and ``unique_id`` (D1). Expected
values written by hand (the dates checked against Node.js), plus property tests against Python's
``datetime`` and standard library JSON."""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from klaviyo_destination.js import MISSING, js_date_iso, js_trim
from klaviyo_destination.mapping.values import (
    canonical_json,
    event_time,
    json_number,
    numeric_value,
    unique_id,
)

# --- new Date(ms).toISOString() --------------------------------------------------------------
DATES: list[tuple[float, str | None]] = [
    (0, "1970-01-01T00:00:00.000Z"),
    (1764324000000, "2025-11-28T10:00:00.000Z"),
    (1764324000123.9, "2025-11-28T10:00:00.123Z"),  # truncated, not rounded
    (-0.5, "1970-01-01T00:00:00.000Z"),  # truncated toward zero, not floored
    (-1500.5, "1969-12-31T23:59:58.500Z"),
    (951782400000, "2000-02-29T00:00:00.000Z"),  # a leap day of a century divisible by 400
    (4107542400000, "2100-03-01T00:00:00.000Z"),  # 2100 is no leap year
    (253402300799999, "9999-12-31T23:59:59.999Z"),
    (253402300800000, "+010000-01-01T00:00:00.000Z"),
    (-62167219200000, "0000-01-01T00:00:00.000Z"),
    (-62198755200000, "-000001-01-01T00:00:00.000Z"),
    (-99999999999000, "-001199-02-15T14:13:21.000Z"),
    (8.64e15, "+275760-09-13T00:00:00.000Z"),
    (-8.64e15, "-271821-04-20T00:00:00.000Z"),
    (8640000000000001, None),
    (-8640000000000001, None),
    (1e20, None),
    (math.inf, None),
    (math.nan, None),
]


@pytest.mark.parametrize(("ms", "iso"), DATES, ids=[repr(ms) for ms, _ in DATES])
def test_js_date_iso(ms: float, iso: str | None) -> None:
    assert js_date_iso(ms) == iso


@given(st.integers(min_value=-62135596800000, max_value=253402300799999))
def test_js_date_iso_agrees_with_datetime_in_its_range(ms: int) -> None:
    """Years 1-9999, where Python's datetime can be the oracle."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    expected = moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
    assert js_date_iso(ms) == expected


@pytest.mark.parametrize(
    ("text", "trimmed"),
    [
        (" a ", "a"),
        ("\t\n\v\f\r a \u00a0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000\ufeff", "a"),
        ("\u200b a", "\u200b a"),  # a zero-width space is no JavaScript whitespace
        ("\x1c a", "\x1c a"),  # nor is a file separator, though Python's strip() removes it
        ("a b", "a b"),
    ],
)
def test_js_trim(text: str, trimmed: str) -> None:
    assert js_trim(text) == trimmed


# --- event_time_iso ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("timestamp", "time"),
    [
        (1764324000, "2025-11-28T10:00:00.000Z"),  # seconds below 1e11
        (1764324000000, "2025-11-28T10:00:00.000Z"),  # milliseconds from 1e11
        (99999999999, "5138-11-16T09:46:39.000Z"),
        (100000000000, "1973-03-03T09:46:40.000Z"),
        (-99999999999, "-001199-02-15T14:13:21.000Z"),
        (-100000000000, "1966-10-31T14:13:20.000Z"),
        (1e20, None),  # no valid date
        (0, MISSING),  # not truthy: no time
        (0.0, MISSING),
        ("", MISSING),
        (None, MISSING),
        ("1764324000", "1764324000"),  # a string passes as it is
        (True, True),  # not a number: copied, as the reference does
    ],
)
def test_event_time(timestamp: Any, time: Any) -> None:
    assert event_time(timestamp) == time


# --- event_value_number ----------------------------------------------------------------------
NUMBERS: list[tuple[str, int | float | None]] = [
    ("12.5", 12.5),
    (" 12.5 ", 12.5),
    ("\u3000 7 \ufeff", 7),
    ("12", 12),
    ("-12", -12),
    ("0", 0),
    ("-0", 0),
    ("1e3", 1000.0),
    ("1E+3", 1000.0),
    ("2.5e-1", 0.25),
    ("9223372036854775807", 9223372036854775807),  # the largest 64-bit integer stays exact
    ("9223372036854775808", 9.223372036854776e18),  # one more is a double
    ("12345678901234567890123", 1.2345678901234568e22),
    ("1" * 5000, None),  # a double overflows to infinity: no number
    ("1e999", None),
    ("0x10", None),
    ("12.5abc", None),
    ("+1", None),
    ("01", None),
    (".5", None),
    ("1.", None),
    ("1e", None),
    ("--1", None),
    ("Infinity", None),
    ("NaN", None),
    ("", None),
    ("  ", None),
    ("١٢", None),  # Arabic-Indic digits are digits to Python's \d, not to JSON
    ("1 2", None),
]


@pytest.mark.parametrize(("text", "number"), NUMBERS, ids=[repr(t[:20]) for t, _ in NUMBERS])
def test_json_number(text: str, number: int | float | None) -> None:
    got = json_number(text)
    assert got == number
    assert type(got) is type(number)  # 12 stays an int, 1e3 is a float


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (5, 5),
        (4.99, 4.99),
        ("4.99", 4.99),
        (True, None),  # booleans are no numbers, though Python's bool is an int
        ({"amount": 5}, None),
        ([5], None),
        (math.inf, None),
    ],
)
def test_numeric_value(value: Any, number: int | float | None) -> None:
    assert numeric_value(value) == number


# --- unique_id (D1) --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("message_id", "expected"),
    [
        ("m-1", "m-1"),
        (" ", " "),
        (42, "42"),
        (0, "0"),
        (-0.0, "0"),
        (2.0, "2"),
        (1.5, "1.5"),
        (1e21, "1e+21"),
    ],
)
def test_unique_id_from_a_usable_message_id(message_id: Any, expected: str) -> None:
    assert unique_id(message_id, {"type": "track"}) == expected


@pytest.mark.parametrize("message_id", ["", None, False, True, MISSING])
def test_unique_id_without_a_usable_message_id_is_a_digest(message_id: Any) -> None:
    received = {"type": "track", "event": "Café", "userId": "u1"}
    canonical = b'{"event":"Caf\xc3\xa9","type":"track","userId":"u1"}'  # UTF-8, no \u escape
    assert unique_id(message_id, received) == hashlib.sha256(canonical).hexdigest()[:32]


def test_canonical_json_bytes() -> None:
    value = {"b": [1.5, 12, None, True, 'é\n\x1f"\\/'], "a": {"z": 1, "ä": 2, "😀": 3, "\uff01": 4}}
    assert (
        canonical_json(value)
        == (
            '{"a":{"z":1,"ä":2,"\uff01":4,"😀":3},"b":[1.5,12,null,true,"é\\n\\u001f\\"\\\\/"]}'
        ).encode()
    )


def test_canonical_json_beyond_64_bits() -> None:
    assert canonical_json({"n": 2**70}) == b'{"n":1180591620717411303424}'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_canonical_json_is_standard_json_sorted(event: dict[str, Any]) -> None:
    """Same bytes as the standard library's sorted, compact, non-ASCII JSON, whatever the order."""
    expected = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_json(event) == expected.encode()
    assert canonical_json(dict(reversed(list(event.items())))) == expected.encode()
