"""Path lookups, the dotted-key writer and flattening, with the reference's semantics
(docs/mapping.md §1, §5).

Paths are compiled once (``Path``) when the field tables are built, so an event only pays for
dictionary look-ups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..errors import InvalidEvent
from ..js import JSON_CONTAINERS, MISSING

UNSAFE_KEYS: Final = frozenset({"__proto__", "constructor", "prototype"})
#: Integer segments of dotted keys create arrays padded with nulls up to the index; a larger
#: index would turn a few bytes of input into megabytes of nulls, so the event is refused.
MAX_ARRAY_INDEX: Final = 1000


@dataclass(frozen=True, slots=True)
class Path:
    """A compiled ``a.b.c`` path: the event field it starts from and the segments below it.

    ``levels[i]`` lists the keys to try when the walk stands at segment ``i``: the whole
    remaining path joined with dots first, then shorter joins, each with the segment index it
    leads to. They are built once here, so a lookup only does dictionary membership tests.
    """

    text: str
    root: str
    segments: tuple[str, ...]
    levels: tuple[tuple[tuple[str, int], ...], ...]
    #: for ``context.traits.x`` paths: the same path below the ``context.traits`` root
    below_context_traits: Path | None = None

    @classmethod
    def parse(cls, text: str) -> Path:
        root, *rest = text.split(".")
        return cls.relative(root, tuple(rest), text)

    @classmethod
    def relative(cls, root: str, segments: tuple[str, ...], text: str | None = None) -> Path:
        levels = tuple(
            tuple((".".join(segments[i:j]), j) for j in range(len(segments), i, -1))
            for i in range(len(segments))
        )
        below = None
        if root == "context" and len(segments) > 1 and segments[0] == "traits":
            below = cls.relative("context.traits", segments[1:])
        return cls(text or ".".join((root, *segments)), root, segments, levels, below)


class PathList(tuple[Path, ...]):
    """Paths for one first-kept lookup, in priority order, with key gates built once.

    ``gates`` names, per root, every first-level key any path could step into; when an event
    has none of them, no path can match and the lookup is skipped without walking.
    """

    gates: tuple[tuple[str, frozenset[str] | None], ...]

    def __new__(cls, paths: Iterable[Path]) -> PathList:
        self = super().__new__(cls, paths)
        keys: dict[str, set[str] | None] = {}
        for path in self:
            target = path.below_context_traits or path
            if not target.segments:
                keys[target.root] = None  # the root value itself: nothing to gate on
            elif (known := keys.setdefault(target.root, set())) is not None:
                known.update(key for key, _ in target.levels[0])
        self.gates = tuple(
            (root, None if found is None else frozenset(found)) for root, found in keys.items()
        )
        return self

    def could_match(self, roots: dict[str, Any]) -> bool:
        for name, keys in self.gates:
            value = roots.get(name, MISSING)
            if value is MISSING:  # the context.traits shortcut is off for this event
                if roots.get("context") is not None:
                    return True
                continue
            if value is None:
                continue
            if keys is None or not isinstance(value, dict) or not keys.isdisjoint(value):
                return True
        return False


def walk(value: Any, path: Path) -> Any:
    """Follow ``path`` below ``value``; ``MISSING`` when the walk leaves the JSON tree.

    A primitive start value is returned whatever the path (the lookup library does that, and
    product arrays of primitives depend on it). Keys that literally contain dots match too:
    at each level the whole remaining path is tried first, then shorter joins.
    """
    if not isinstance(value, JSON_CONTAINERS):
        return value
    segments, levels = path.segments, path.levels
    index, count = 0, len(segments)
    while index < count:
        if isinstance(value, dict):
            for key, following in levels[index]:
                if key in value:
                    value, index = value[key], following
                    break
            else:
                return MISSING
        elif isinstance(value, list):
            segment = segments[index]
            if not segment.isdigit() or int(segment) >= len(value):
                return MISSING
            value, index = value[int(segment)], index + 1
        else:
            return MISSING
    return value


def set_path(target: dict[str, Any], key: str, value: Any) -> None:
    """Write ``value`` at a dotted ``key`` (``"a.b"`` → ``{"a": {"b": value}}``), §5.3.

    Keys with ``/`` are never split, ``\\.`` escapes a dot, a trailing dot is ignored, integer
    segments create arrays and a primitive found on the way is replaced. Keys that would reach
    ``__proto__``/``constructor``/``prototype`` are not written (the reference crashes on them).
    """
    segments = _split_key(key)
    if any(segment in UNSAFE_KEYS for segment in segments):
        return
    container: Any = target
    for position, segment in enumerate(segments[:-1]):
        child = _get_child(container, segment)
        if not isinstance(child, JSON_CONTAINERS):
            child = [] if _is_index(segments[position + 1]) else {}
            _set_child(container, segment, child)
        container = child
    _set_child(container, segments[-1], value)


def _split_key(key: str) -> list[str]:
    if "/" in key or "." not in key:
        return [key]
    segments: list[str] = []
    current = ""
    index = 0
    while index < len(key):
        char = key[index]
        if char == "\\" and key[index + 1 : index + 2] == ".":
            current += "."
            index += 2
            continue
        if char == ".":
            segments.append(current)
            current = ""
        else:
            current += char
        index += 1
    if current:
        segments.append(current)
    return segments or [key]


def _is_index(segment: str) -> bool:
    # The writer's rule for array indexes: "0" or digits without a leading zero ("007" is a
    # key), ASCII only ("²".isdigit() is true, but int("²") raises).
    return segment.isascii() and segment.isdigit() and (segment == "0" or segment[0] != "0")


def _get_child(container: Any, segment: str) -> Any:
    if isinstance(container, list):
        index = int(segment) if _is_index(segment) and len(segment) < 10 else -1
        return container[index] if 0 <= index < len(container) else MISSING
    return container.get(segment, MISSING)


def _set_child(container: Any, segment: str, value: Any) -> None:
    if isinstance(container, list):
        if not _is_index(segment):
            return  # a named key on an array is not representable in JSON
        index = int(segment) if len(segment) < 10 else MAX_ARRAY_INDEX + 1
        if index > MAX_ARRAY_INDEX:
            raise InvalidEvent(
                f"a dotted key names array index {segment[:20]}; at most {MAX_ARRAY_INDEX} is "
                "supported",
                field=segment[:20],
            )
        container.extend([None] * (index + 1 - len(container)))
        container[index] = value
    else:
        container[segment] = value


def flatten(value: Any) -> dict[str, Any]:
    """One-level object with ``a.b`` and ``items[0].x`` keys (§5.6); absent gives ``{}``."""
    out: dict[str, Any] = {}
    if isinstance(value, Mapping):
        _flatten_object(value, "", out)
    return out


def _flatten_object(obj: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in obj.items():
        _flatten_value(value, f"{prefix}.{key}" if prefix else key, out)


def _flatten_value(value: Any, key: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        if value:
            _flatten_object(value, key, out)
        else:
            out[key] = {}
    elif (
        isinstance(value, list)
        and value
        and (value[0] is None or isinstance(value[0], JSON_CONTAINERS))
    ):
        for index, item in enumerate(value):
            _flatten_array_item(item, f"{key}[{index}]", out)
    else:
        out[key] = value


def _flatten_array_item(item: Any, key: str, out: dict[str, Any]) -> None:
    if (
        isinstance(item, list)
        and item
        and not (item[0] is None or isinstance(item[0], JSON_CONTAINERS))
    ):
        out[key] = item  # an inner array of primitives is kept whole
    else:
        _flatten_value(item, key, out)
