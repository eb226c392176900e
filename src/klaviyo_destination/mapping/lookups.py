"""Reading events through the field tables: first-kept lookups, rule tables, custom traits.

The lookup rules are docs/mapping.md §1 and §5.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ..errors import InvalidEvent
from ..ingest.events import RudderEvent
from ..js import MISSING, JsonObject, js_number, kept, parse_float
from .fields import EXCLUDED_TRAIT_KEYS, Rule, RuleTable
from .paths import UNSAFE_KEYS, Path, PathList, set_path, walk


def value_at(event: RudderEvent, path: Path) -> Any:
    root = event.root(path.root)
    if root is None:
        return None if not path.segments else MISSING
    return walk(root, path) if path.segments else root


def lookup(event: RudderEvent, paths: PathList) -> Any:
    """First kept value along ``paths`` (§1), or ``MISSING``."""
    roots = event.roots
    if not paths.could_match(roots):
        return MISSING
    for path in paths:
        if path.below_context_traits is not None and "context.traits" in roots:
            path = path.below_context_traits
        root = roots.get(path.root)
        if root is None:
            continue
        value = walk(root, path) if path.segments else root
        if value is not MISSING and value is not None and kept(value):
            return value
    return MISSING


def map_event(table: RuleTable, event: RudderEvent) -> JsonObject:
    """Build an object from a rule table whose paths start at event fields.

    Only the paths whose first key the event has are walked, in the table's priority order;
    the result is the same as :func:`map_each_rule`, which walks every path.
    """
    roots = event.roots
    candidates = _candidates(table, roots)
    if candidates is None:
        return map_each_rule(table, event)
    out: JsonObject = {}
    done = -1
    steps = table.steps
    for position in sorted(candidates):
        rule_index, root_name, key, path, single = steps[position]
        if rule_index == done:
            continue
        root = roots.get(root_name)
        if root is None:
            continue
        # A one-segment path into an object (a keyed root is one, or None) is one dict look-up;
        # absent reads as None, which the kept-rule drops as it drops MISSING.
        if single is not None:
            value = root.get(single)
        else:
            value = walk(root, path) if path.segments else root
        if value is None or value is MISSING or not _kept_value(value):
            continue
        if "." in key:
            _write(out, key, value)
        else:
            out[key] = value
        done = rule_index
    return out


def _candidates(table: RuleTable, roots: dict[str, Any]) -> list[int] | None:
    """Positions in ``table.steps`` of the paths that can match, or ``None`` when the index
    cannot tell: ``context`` has a dotted key, or a root is a primitive (which matches
    whatever the path, §1)."""
    if "context.traits" not in roots and roots.get("context") is not None:
        return None
    found = list(table.bare)
    for root, keys in table.keyed:
        value = roots.get(root)
        if value is None:
            continue
        if not isinstance(value, dict):
            return None
        if value:
            for key in keys.keys() & value.keys():
                found.extend(keys[key])
    return found


def map_each_rule(rules: Iterable[Rule], event: RudderEvent) -> JsonObject:
    """:func:`map_event` the plain way: a first-kept lookup per rule."""
    out: JsonObject = {}
    for rule in rules:
        value = lookup(event, rule.paths)
        if value is not MISSING:
            _write(out, rule.key, value)
    return out


def map_object(table: RuleTable, obj: Any) -> JsonObject:
    """Build an object from a single-path rule table relative to ``obj`` (ecommerce, items).

    A single-path rule reads the raw value and applies the kept-rule afterwards (§1), so an
    empty string reaches the ``$value`` conversion and fails there, as in the reference.
    """
    out: JsonObject = {}
    is_object = isinstance(obj, dict)
    for (_, _, key, path, single), to_float in zip(table.steps, table.floats, strict=True):
        # one segment in an object is one look-up: what walk() would find, without the call
        value = obj.get(single, MISSING) if is_object and single is not None else walk(obj, path)
        if value is None or value is MISSING:
            continue
        if to_float:
            _write(out, key, as_float(value))  # always written: 0 is kept, ±Infinity is null
        elif _kept_value(value):
            _write(out, key, value)
    return out


def _kept_value(value: Any) -> bool:
    """:func:`kept` for a value already known to be neither ``None`` nor ``MISSING``: the
    rule tables' loops test those two inline (the hottest test of the mapping)."""
    kind = type(value)
    if kind is str:
        return bool(value)
    return kind is not float or value == value  # NaN is the only float unequal to itself


def _write(out: JsonObject, key: str, value: Any) -> None:
    if "." not in key:
        out[key] = value
    else:
        head, _, tail = key.partition(".")
        out.setdefault(head, {})[tail] = value


def as_float(value: Any, field: str = "properties.value") -> int | float | None:
    """``parseFloat`` for ``$value`` (§8.3) and the v2/v3 ``value`` (§20.1): ±Infinity is
    ``null``, as JSON.stringify has it; no number at all is the reference's error."""
    number = parse_float(value)
    if number is None:
        raise InvalidEvent("Invalid float value", field=field)
    return None if math.isinf(number) else js_number(number)


def traits_object(event: RudderEvent) -> Any:
    """§6.1: ``traits`` when present (``{}`` counts), else ``context.traits``."""
    return event.traits if event.traits is not None else event.context_traits


def custom_traits(event: RudderEvent, excluded: frozenset[str] = EXCLUDED_TRAIT_KEYS) -> JsonObject:
    """§5.3 (§17.3 with v2/v3's ``excluded``): top-level keys of ``traits`` then
    ``context.traits``, minus the excluded keys.

    A later source overwrites an earlier key but keeps its position (dict update semantics);
    dotted keys are then written as nested objects.
    """
    merged: JsonObject = {}
    for source in (event.traits, event.context_traits):
        if source:
            for key, value in source.items():
                if key not in excluded and key not in UNSAFE_KEYS:
                    merged[key] = value
    if "." not in "".join(merged):  # no key has a dot (one pass at C speed)
        return merged
    nested: JsonObject = {}
    for key, value in merged.items():
        set_path(nested, key, value)
    return nested


def drop_nulls(obj: JsonObject) -> JsonObject:
    """Shallow: nested nulls survive, as in the reference (§5.5)."""
    return {key: value for key, value in obj.items() if value is not None}
