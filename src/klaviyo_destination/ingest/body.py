"""Inbound bodies as JSON: parsing, the nesting-depth limit, and the three event-list shapes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import BadRequest, PayloadTooLarge
from ..js import JSON_CONTAINERS


@dataclass(frozen=True, slots=True)
class Events:
    """The events of one request and whether the caller sent a single object or a batch."""

    items: list[Any]
    single: bool


def parse_json(raw: bytes | bytearray, *, max_depth: int | None) -> Any:
    """The JSON value of ``raw``; ``max_depth=None`` leaves the depth to the caller (the
    protocol routes check it per event)."""
    if not raw or raw.isspace():  # not raw.strip(): that would copy a 200 MB body
        raise BadRequest("body is empty: send a JSON event, array of events or {batch: [...]}")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson's message names the position; it never contains more than a few input bytes.
        raise BadRequest(f"body is not valid JSON (UTF-8): {exc}", field="body") from None
    # A value nests one level deeper than its brackets (a scalar inside the innermost): when
    # the brackets prove the limit holds, the walk is skipped.
    if max_depth is not None and not parsed_nests_within(raw, max_depth - 1):
        check_depth(value, max_depth)
    return value


def check_depth(value: Any, max_depth: int) -> None:
    """Refuse JSON nested deeper than ``max_depth``."""
    if too_deep(value, max_depth):
        raise BadRequest(f"JSON is nested deeper than {max_depth} levels", field="body")


def too_deep(value: Any, max_depth: int) -> bool:
    """Whether ``value`` nests deeper than ``max_depth``, found without recursion.

    Walks one nesting level at a time and only ever steps into containers, so scalars (most of
    a payload) cost one type test each inside a comprehension, not a stack push and pop.
    """
    if max_depth < 1:
        return True
    level: list[Any] = [value]
    depth = 1
    while level:
        below: list[Any] = []
        for node in level:
            if isinstance(node, dict):
                below.extend(node.values())
            elif isinstance(node, list):
                below.extend(node)
        if below and depth >= max_depth:
            return True
        level = [child for child in below if isinstance(child, JSON_CONTAINERS)]
        depth += 1
    return False


#: Every byte but the four brackets and the quote, for ``bytes.translate(None, ...)``.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b'[]{}"')
#: For a body that parsed: each closing bracket is its opening one's kind, so the kinds can be
#: one (``{`` and ``}`` read as ``[`` and ``]``) and a pass needs one ``bytes.replace``, not three.
_ONE_KIND = bytes.maketrans(b"{}", b"[]")
#: A string of the bracket-and-quote sequence, once its escaped quotes are gone.
_STRING = re.compile(rb'"[^"]*"')


def parsed_nests_within(raw: bytes | bytearray, limit: int) -> bool:
    """For a body that parsed as JSON: True proves no value in it nests deeper than ``limit``
    brackets, False says "maybe". No more opening brackets than ``limit`` is proof enough (a
    count over the brackets alone, which spares a small body the passes).

    As the body parsed, its brackets outside strings pair up, each with its own kind: their
    depth is the same read as one kind, and a pass removing the empty pairs is one replace.
    """
    nest = _brackets(raw, _ONE_KIND)
    if nest.count(b"[") <= limit:
        return True
    for _ in range(limit):
        shorter = nest.replace(b"[]", b"")
        if not shorter:
            return True
        if len(shorter) == len(nest):
            return False
        nest = shorter
    return False


def brackets_nest_within(raw: bytes | bytearray, limit: int) -> bool:
    """True when the brackets of ``raw`` outside its strings pair up and nest at most ``limit``
    deep, which proves no JSON value in it is deeper; False says only "maybe" (an unpaired
    bracket, an unterminated string), and then the parsed value has to be walked."""
    return _pairs_nest_within(_brackets(raw), limit)


def _brackets(raw: bytes | bytearray, table: bytes | None = None) -> bytes:
    """The brackets of ``raw`` that are outside its strings, in order.

    Brackets inside strings must go: a string's ``]`` would close a real ``[`` in the count,
    and ``["]", [...], "["]`` hid any depth behind one level. Escapes go first (escaped
    backslashes, then escaped quotes, left to right as a JSON reader pairs them; a backslash
    appears only inside a string), then every byte but brackets and quotes, then the strings:
    each is now a quote, any brackets, a quote. Most strings hold no bracket, and then dropping
    the quotes is all it takes, at C speed like the rest. A lone quote (an unterminated
    string) is never matched away, so the answer is "maybe".
    """
    text = bytes(raw)  # bytes() first: a copy and bytes.translate beat bytearray.translate
    if b"\\" in text:
        text = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    marked = text.translate(table, _NOT_BRACKETS)  # ``table`` maps the brackets kept
    nest = marked.translate(None, b'"')
    # Every quote in an adjacent pair (counted left to right, as a reader pairs them): no
    # string holds a bracket, and the quotes alone were in the way. Counting beats removing.
    if marked.count(b'""') * 2 != len(marked) - len(nest):
        nest = _STRING.sub(b"", marked)
    return nest


def _pairs_nest_within(nest: bytes, limit: int) -> bool:
    """All of it at C speed: one pass per level removing empty pairs. A pass marks the ``[]``
    pairs before removing the ``{}`` ones, so that ``{[]}`` loses one level, not two
    (``bytes.replace`` three times is several times cheaper than a regex)."""
    for _ in range(limit):
        if not nest:
            return True
        shorter = nest.replace(b"[]", b"x").replace(b"{}", b"").replace(b"x", b"")
        if len(shorter) == len(nest):
            return False
        nest = shorter
    return not nest


def events_of(body: Any, *, max_events: int) -> Events:
    """One event object, a JSON array of events, or RudderStack's ``{"batch": [...]}``."""
    if isinstance(body, dict) and "batch" in body and "type" not in body:
        items, single, field = body["batch"], False, "batch"
        if not isinstance(items, list):
            raise BadRequest("batch must be a JSON array of events", field="batch")
    elif isinstance(body, list):
        items, single, field = body, False, "body"
    elif isinstance(body, dict):
        return Events([body], single=True)
    else:
        raise BadRequest(
            "body must be a JSON event object, an array or {batch: [...]}", field="body"
        )
    if not items:
        raise BadRequest("the batch holds no events", field=field)
    if len(items) > max_events:
        raise PayloadTooLarge(f"a batch holds at most {max_events} events", field=field)
    return Events(items, single)
