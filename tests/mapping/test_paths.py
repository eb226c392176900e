"""Table-driven rules of the pure helpers: JS truthiness, parseFloat, path walks, the dotted-key
writer and flattening (docs/mapping.md §1, §5.3, §5.6, §8.3). Expected values written by hand."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klaviyo_destination.ingest.body import brackets_nest_within, parsed_nests_within, too_deep
from klaviyo_destination.js import MISSING, js_number, kept, parse_float, truthy
from klaviyo_destination.mapping.paths import Path, flatten, set_path, walk

# --- §1 truthy and kept ----------------------------------------------------------------------
TRUTHINESS: list[tuple[Any, bool, bool, str]] = [
    # value, truthy, kept, reason
    (MISSING, False, False, "absent (undefined)"),
    (None, False, False, "null"),
    (False, False, True, "false is kept though falsy"),
    (True, True, True, "true"),
    (0, False, True, "0 is kept though falsy"),
    (0.0, False, True, "0.0 is the number 0"),
    (-0.0, False, True, "-0 === 0"),
    (math.nan, False, False, "NaN is neither"),
    ("", False, False, "empty string is neither"),
    ("0", True, True, "non-empty strings are truthy"),
    ("false", True, True, "the string false is truthy"),
    (" ", True, True, "a space is a non-empty string"),
    ({}, True, True, "{} is truthy in JS"),
    ([], True, True, "[] is truthy in JS"),
    (1, True, True, "non-zero number"),
    (-1.5, True, True, "negative number"),
    ({"a": 1}, True, True, "object"),
]


@pytest.mark.parametrize(
    ("value", "is_truthy", "is_kept"),
    [pytest.param(v, t, k, id=reason) for v, t, k, reason in TRUTHINESS],
)
def test_truthy_and_kept(value: Any, is_truthy: bool, is_kept: bool) -> None:
    assert truthy(value) is is_truthy
    assert kept(value) is is_kept


# --- §8.3 parseFloat(String(value)) ---------------------------------------------------------
PARSE_FLOAT = [
    ("12.50", 12.5),
    ("7abc", 7.0),
    ("1e3", 1000.0),
    ([5], 5.0),
    ([1, 2], 1.0),  # String([1, 2]) is "1,2"
    ("abc", None),
    ("", None),
    (True, None),
    ({}, None),  # "[object Object]"
    ([], None),  # ""
    (None, None),  # "null"
    (0, 0.0),
    ("0", 0.0),
    ("  3.5", 3.5),
    ("\n\t4", 4.0),
    ("Infinity", math.inf),
    ("-Infinity", -math.inf),
    ("Infinityx", math.inf),
    ("infinity", None),  # case-sensitive
    (".5", 0.5),
    ("5.", 5.0),
    ("+3", 3.0),
    ("-1.5e-2x", -0.015),
    ("1e", 1.0),  # an incomplete exponent is not part of the literal
    ("0x10", 0.0),  # no hex in parseFloat
    (12.5, 12.5),
]


@pytest.mark.parametrize(
    ("value", "expected"), [pytest.param(v, e, id=repr(v)) for v, e in PARSE_FLOAT]
)
def test_parse_float(value: Any, expected: float | None) -> None:
    assert parse_float(value) == expected


@pytest.mark.parametrize(
    ("number", "written"),
    [(20.0, "20"), (12.5, "12.5"), (1000.0, "1000"), (-0.0, "0"), (0.1, "0.1")],
)
def test_js_number_writes_integers_without_fraction(number: float, written: str) -> None:
    """§1: JSON numbers come out as JavaScript writes them: 42, not 42.0."""
    assert json.dumps(js_number(number)) == written


# --- §1 path lookup ---------------------------------------------------------------------------
WALK = [
    # start value, dotted path below it, expected, reason
    ({"a": {"b": 1}}, "a.b", 1, "nested objects"),
    ({"a.b": 1}, "a.b", 1, "a key containing the dots matches"),
    ({"a": {"b": 2}, "a.b": 1}, "a.b", 1, "the whole remaining path is tried first"),
    ({"a.b": {"c": 3}}, "a.b.c", 3, "then shorter joins"),
    ({"x": {"a.b": 4}}, "x.a.b", 4, "dotted keys below the first level"),
    ({"ids": [{"id": "e"}]}, "ids.0.id", "e", "arrays by numeric segment"),
    ({"ids": [{"id": "e"}, {"id": "f"}]}, "ids.1.id", "f", "second element"),
    ({"ids": [{"id": "e"}]}, "ids.1.id", MISSING, "index out of range"),
    ({"ids": [{"id": "e"}]}, "ids.x", MISSING, "non-numeric segment on an array"),
    ({"a": "str"}, "a.b", MISSING, "a primitive before the path ends"),
    ({"a": None}, "a.b", MISSING, "null before the path ends"),
    ({"a": 1}, "b", MISSING, "missing key"),
    ({"a": None}, "a", None, "null is returned as null, not absent"),
    ("abc", "name", "abc", "a primitive start value is returned whatever the path"),
    (0, "product_id", 0, "primitive start value 0"),
    (True, "sku", True, "primitive start value true"),
]


@pytest.mark.parametrize(
    ("start", "path", "expected"),
    [pytest.param(s, p, e, id=reason) for s, p, e, reason in WALK],
)
def test_walk(start: Any, path: str, expected: Any) -> None:
    assert walk(start, Path.parse(f"root.{path}")) == expected


# --- §5.3 the dotted-key writer ---------------------------------------------------------------
SET_PATH = [
    # target before, key, value, target after, reason
    ({}, "plain", 1, {"plain": 1}, "a key without dots"),
    ({}, "a.b", 1, {"a": {"b": 1}}, "dots nest"),
    ({}, "a/b.c", 1, {"a/b.c": 1}, "a key with / is never split"),
    ({}, "a\\.b", 1, {"a.b": 1}, "backslash escapes a dot"),
    ({}, "a\\.b.c", 1, {"a.b": {"c": 1}}, "escaped and real dots together"),
    ({}, "a.b.", 1, {"a": {"b": 1}}, "a trailing dot is ignored"),
    ({}, "x.0", 5, {"x": [5]}, "an integer segment creates an array"),
    ({}, "a.007", 1, {"a": {"007": 1}}, "a leading zero is not an index: an object key"),
    ({}, "x.1", 5, {"x": [None, 5]}, "holes serialise as null"),
    ({}, "x.0.y", 5, {"x": [{"y": 5}]}, "objects inside a created array"),
    ({"a": 1}, "a.b", 2, {"a": {"b": 2}}, "a primitive on the path is replaced"),
    ({"a": {"c": 1}}, "a.b", 2, {"a": {"c": 1, "b": 2}}, "an existing object is extended"),
    ({"a": {"b": 1}}, "a", 3, {"a": 3}, "a later write replaces the whole value"),
]


@pytest.mark.parametrize(
    ("before", "key", "value", "after"),
    [pytest.param(b, k, v, a, id=reason) for b, k, v, a, reason in SET_PATH],
)
def test_set_path(before: dict[str, Any], key: str, value: Any, after: dict[str, Any]) -> None:
    set_path(before, key, value)
    assert json.dumps(before) == json.dumps(after)


# --- §5.6 flattening --------------------------------------------------------------------------
FLATTEN = [
    # input, output, reason
    ({"friend": {"names": {"first": "a"}}}, {"friend.names.first": "a"}, "keys joined with dots"),
    (
        {"k": None, "n": 0, "f": False, "s": ""},
        {"k": None, "n": 0, "f": False, "s": ""},
        "primitives and null",
    ),
    ({"e": {}}, {"e": {}}, "a nested empty object stays {}"),
    ({"a": {"b": {}}}, {"a.b": {}}, "a deeper empty object"),
    (
        {"items": [{"SKU": "s"}, {"SKU": "t"}]},
        {"items[0].SKU": "s", "items[1].SKU": "t"},
        "array of objects: bracket index, no dot before it",
    ),
    ({"tags": ["a", "b"]}, {"tags": ["a", "b"]}, "array of primitives kept whole"),
    ({"empty": []}, {"empty": []}, "empty array kept whole"),
    ({"mixed": [1, {"k": "v"}]}, {"mixed": [1, {"k": "v"}]}, "first element primitive: kept whole"),
    ({"o": [{"k": "v"}, 1]}, {"o[0].k": "v", "o[1]": 1}, "primitive element under key[i]"),
    ({"n": [None, "a"]}, {"n[0]": None, "n[1]": "a"}, "first element null: flattened"),
    ({"k": [[1, 2], [3]]}, {"k[0]": [1, 2], "k[1]": [3]}, "nested primitive arrays kept whole"),
    ({"d": [[{"a": 1}]]}, {"d[0][0].a": 1}, "nested arrays of objects flattened further"),
    ({"x": [{}]}, {"x[0]": {}}, "an empty object element"),
    ({"a": {"b": [1]}}, {"a.b": [1]}, "array below an object"),
    (None, {}, "absent gives {}"),
]


@pytest.mark.parametrize(
    ("value", "expected"), [pytest.param(v, e, id=reason) for v, e, reason in FLATTEN]
)
def test_flatten(value: Any, expected: dict[str, Any]) -> None:
    assert json.dumps(flatten(value)) == json.dumps(expected)


# --- the bracket pre-check of a body's depth ---------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "limit", "within"),
    [
        (b'{"a": [1, {"b": 2}]}', 3, True),
        (b'{"a": [1, {"b": 2}]}', 2, False),
        (b'{"a": "[not a bracket"}', 1, True),  # inside a string: not a bracket
        (b'{"a": "[]"}', 1, True),
        (b'["]", [[[1]]], "["]', 3, False),  # a string's "]" does not close a real "["
        (b'["]", [[[1]]], "["]', 4, True),
        # an escaped backslash ends its string; an escaped quote does not
        (orjson.dumps(["\\]", [[1]], "[\\"]), 2, False),
        (orjson.dumps(["\\]", [[1]], "[\\"]), 3, True),
        (orjson.dumps(['"]', [[1]], '"[']), 2, False),
        (orjson.dumps(['"]', [[1]], '"[']), 3, True),
        (b'{"a": "]]"}', 1, True),
        (b"[{}, []]", 2, True),
        (b'{"a": []}', 1, False),  # one pass removes one level, even across kinds
        (b"1", 0, True),
        (b"[" * 70 + b"]" * 70, 69, False),
        (b"[" * 70 + b"]" * 70, 70, True),
    ],
)
def test_brackets_nest_within(raw: bytes, limit: int, within: bool) -> None:
    assert brackets_nest_within(raw, limit) is within
    if within:  # what it proves holds for the parsed value (a scalar counts one level more)
        assert not too_deep(orjson.loads(raw), limit + 1)


def _pairs_within(raw: bytes, limit: int) -> bool:
    """The rule, said plainly: outside strings, every bracket closes the latest open one of its
    kind, and the stack never holds more than ``limit``; a string left open is no proof."""
    stack: list[int] = []
    in_string = False
    for byte in raw:
        if byte == ord('"'):
            in_string = not in_string
        elif in_string:
            continue
        elif byte in b"[{":
            stack.append(byte)
            if len(stack) > limit:
                return False
        elif byte in b"]}" and (not stack or stack.pop() != byte - 2):  # "[" is "]" - 2
            return False
    return not stack and not in_string


@settings(max_examples=2000, deadline=None)
@given(st.text('[]{}a"', max_size=24).map(str.encode), st.integers(0, 8))
def test_brackets_nest_within_is_the_bracket_rule(raw: bytes, limit: int) -> None:
    assert brackets_nest_within(raw, limit) is _pairs_within(raw, limit)


json_trees = st.recursive(
    st.none() | st.integers(-1000, 1000) | st.text('[]{}a"\\', max_size=4),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=2), children, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=1000, deadline=None)
@given(json_trees, st.integers(0, 8))
def test_a_parsed_body_proven_within_a_limit_holds_it(value: Any, limit: int) -> None:
    """Counting opening brackets (string contents included) can only over-count the nesting;
    what is proven holds for the parsed value (a scalar counts one level more). On a body
    that parsed, reading the brackets as one kind proves exactly what the kinded rule does."""
    raw = orjson.dumps(value)
    if parsed_nests_within(raw, limit):
        assert not too_deep(orjson.loads(raw), limit + 1)
    assert parsed_nests_within(raw, limit) is brackets_nest_within(raw, limit)


@pytest.mark.parametrize("depth", [2, 5, 70])
def test_brackets_inside_strings_do_not_hide_depth(depth: int) -> None:
    """Each level holds a "]" first and a "[" last: with the strings' brackets counted, every
    level closed at once and any depth passed as one."""
    value: Any = 1
    for _ in range(depth):
        value = ["]", value, "["]
    raw = orjson.dumps(value)
    assert not parsed_nests_within(raw, depth - 1)
    assert not brackets_nest_within(raw, depth - 1)
    assert brackets_nest_within(raw, depth)
