"""Klaviyo's request schemas at the profile-import revisions, applied to a parsed body.

``schemas/<revision>.json`` are derived from Klaviyo's OAS subsets by
``tests/emulator/derive_schemas.py`` (a test re-derives and compares them): structure only,
in the few keywords this module reads. An object that lists ``properties`` refuses members it
does not list, as revision 2023-02-22 does ("'x' is not a valid field for the resource
'profile'."); one that lists none (``properties``, ``append``) is free-form. Details for a
missing or foreign member copy Klaviyo's wording; those for a wrong type or value are ours.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from importlib import resources
from typing import Any, Final

from klaviyo_destination.emulator.errors import ApiError, ErrorObject, invalid_object
from klaviyo_destination.emulator.models import JsonObject

#: JSON type of a value, as the schemas name them (``bool`` is not a number in JSON).
_JSON_TYPES: Final[Mapping[str, tuple[type, ...]]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}


@dataclass(frozen=True, slots=True)
class Schemas:
    """One served revision's operations (``"POST /api/events"`` -> names) and definitions."""

    revision: str
    operations: Mapping[str, JsonObject]
    definitions: Mapping[str, JsonObject]

    def check(self, operation: str, document: JsonObject) -> None:
        """Raise Klaviyo's 400, one error object per offending member, unless it validates."""
        found: dict[str, ErrorObject] = {}
        for pointer, detail in self.violations(self.operations[operation]["request"], document):
            found.setdefault(pointer, invalid_object(detail, pointer=pointer or "/"))
        if found:
            raise ApiError(*found.values())

    def violations(self, definition: str, document: JsonObject) -> list[tuple[str, str]]:
        """(pointer, detail) of each way ``document`` breaks the named schema."""
        root = {"$ref": "#/definitions/" + definition}
        walk = _Walk(self.definitions)
        return list(walk.errors(root, document, "", _kind(document) or "unknown"))

    def allows(self, definition: str, member: str) -> bool:
        """Whether a schema lists ``member``, e.g. the answer's ``links`` at this revision."""
        return member in self.definitions[definition].get("properties", {})


@cache
def load(revision: str) -> Schemas:
    text = (
        resources.files("klaviyo_destination.emulator")
        .joinpath("schemas", f"{revision}.json")
        .read_text()
    )
    content = json.loads(text)
    return Schemas(content["revision"], content["operations"], content["definitions"])


class _Walk:
    def __init__(self, definitions: Mapping[str, JsonObject]) -> None:
        self.definitions = definitions

    def resolve(self, schema: JsonObject) -> JsonObject:
        while "$ref" in schema:
            nullable = schema.get("nullable", False)
            schema = self.definitions[schema["$ref"].rsplit("/", 1)[-1]] | {"nullable": nullable}
        return schema

    def errors(
        self, schema: JsonObject, value: Any, pointer: str, resource: str
    ) -> Iterator[tuple[str, str]]:
        schema = self.resolve(schema)
        name = pointer.rsplit("/", 1)[-1] or "data"
        if value is None:
            if not schema.get("nullable", False):
                yield pointer, f"'{name}' may not be null."
            return
        if "oneOf" in schema:
            if not any(not list(self.errors(s, value, pointer, resource)) for s in schema["oneOf"]):
                yield pointer, f"'{name}' is not of an accepted type."
            return
        expected = schema.get("type")
        if expected and not _is(expected, value):
            yield pointer, f"'{name}' must be of type {expected}."
            return
        yield from _value_errors(schema, value, pointer, name)
        if isinstance(value, dict) and "properties" in schema:
            yield from self._members(schema, value, pointer, _kind(value) or resource)
        elif isinstance(value, list) and "items" in schema:
            for index, item in enumerate(value):
                yield from self.errors(schema["items"], item, f"{pointer}/{index}", resource)

    def _members(
        self, schema: JsonObject, value: JsonObject, pointer: str, resource: str
    ) -> Iterator[tuple[str, str]]:
        properties: JsonObject = schema["properties"]
        for member in schema.get("required", ()):
            if member not in value:
                detail = f"'{member}' is a required field for the resource '{resource}'."
                yield f"{pointer}/{member}", detail
        for member, item in value.items():
            if member in properties:
                yield from self.errors(properties[member], item, f"{pointer}/{member}", resource)
            else:
                yield pointer, f"'{member}' is not a valid field for the resource '{resource}'."


def _value_errors(
    schema: JsonObject, value: Any, pointer: str, name: str
) -> Iterator[tuple[str, str]]:
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(map(str, schema["enum"]))
        yield pointer, f"'{value}' is not a valid choice for '{name}' ({choices})."
    elif schema.get("format") in _FORMATS and not _valid(schema["format"], value):
        yield pointer, f"'{value}' is not a valid {schema['format']} for '{name}'."


def _is(expected: str, value: Any) -> bool:
    if isinstance(value, bool) and expected != "boolean":
        return False
    return isinstance(value, _JSON_TYPES.get(expected, (object,)))


def _kind(value: Any) -> str:
    """A JSON:API resource's ``type`` (``data`` unwrapped), for the error wording."""
    data = value.get("data", value) if isinstance(value, dict) else None
    kind = data.get("type") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else ""


def _valid(form: str, value: str) -> bool:
    try:
        _FORMATS[form](value)
    except ValueError:
        return False
    return True


#: The formats a request schema names, by the parser that accepts them.
_FORMATS: Final[Mapping[str, Callable[[str], object]]] = {
    "date-time": datetime.fromisoformat,
    "date": date.fromisoformat,
}
