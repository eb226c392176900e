"""Derive the JSON Schemas of tests/schemas/ from Klaviyo's OpenAPI documents.

Sources: ``../shared/spec/klaviyo-openapi-2023-02-22.json`` (Klaviyo's own document for revision
2023-02-22, MIT licence, Copyright (c) 2022 Klaviyo), written to ``tests/schemas/``; and the
subsets of revisions 2024-10-15 and 2026-04-15 (``klaviyo-openapi-<revision>-subset.json``, the
same licence), written to ``tests/schemas/<revision>/``. For the operations the service calls at
each revision it writes the request-body schema and every response-body schema, one
self-contained Draft 4 file per schema (referenced component schemas become local
``definitions``), plus ``operations.json``, naming the schema of each operation's request and
of each answer status.

Only structure is kept; Klaviyo's prose (descriptions, titles, examples) stays out of the
repository. A keyword this script does not know stops it, so that no constraint is silently
lost when the document changes.

Run from the repository root: ``python tests/schemas/derive.py`` (every revision).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

HERE: Final = Path(__file__).resolve().parent
SPECS: Final = HERE.parents[2] / "shared" / "spec"
DEFAULT_SPEC: Final = SPECS / "klaviyo-openapi-2023-02-22.json"
DRAFT4: Final = "http://json-schema.org/draft-04/schema#"
INDEX: Final = "operations.json"

#: (method, path) as the document spells them.
OPERATIONS: Final = (
    ("post", "/api/profiles/"),
    ("patch", "/api/profiles/{id}/"),
    ("post", "/api/events/"),
    ("post", "/api/profile-subscription-bulk-create-jobs/"),
)
#: The profile-import path's operations (apiVersion v2 and v3), as the subsets spell them.
IMPORT_OPERATIONS: Final = (
    ("post", "/api/profile-import"),
    ("post", "/api/events"),
    ("post", "/api/profile-subscription-bulk-create-jobs"),
    ("post", "/api/profile-subscription-bulk-delete-jobs"),
)
#: revision -> (its document, the folder its schemas go to, the operations derived)
REVISIONS: Final = {
    "2023-02-22": (DEFAULT_SPEC, HERE, OPERATIONS),
    "2024-10-15": (SPECS / "klaviyo-openapi-2024-10-15-subset.json", HERE / "2024-10-15",
                   IMPORT_OPERATIONS),
    "2026-04-15": (SPECS / "klaviyo-openapi-2026-04-15-subset.json", HERE / "2026-04-15",
                   IMPORT_OPERATIONS),
}  # fmt: skip
#: The media types a JSON body is declared under (the newer documents use JSON:API's).
JSON_TYPES: Final = ("application/json", "application/vnd.api+json")
#: Keywords whose value is one schema, a list of schemas, or a name -> schema map.
ONE_SCHEMA: Final = frozenset({"items", "not"})
SCHEMA_LIST: Final = frozenset({"oneOf", "anyOf", "allOf"})
#: Keywords whose value is copied as it is.
VERBATIM: Final = frozenset({"type", "required", "enum", "format", "nullable"})
#: Annotations, not constraints (``default`` included: JSON Schema never applies it).
PROSE: Final = frozenset({"description", "summary", "title", "example", "examples", "default"})
COMPONENT_REF: Final = "#/components/schemas/"

Json = dict[str, Any]


def structure(node: Json) -> Json:
    """``node`` with the prose dropped and component references pointed at ``definitions``."""
    out: Json = {}
    for key, value in node.items():
        if key in PROSE:
            continue
        if key == "$ref":
            out[key] = "#/definitions/" + component_name(value)
        elif key in VERBATIM:
            out[key] = value
        elif key == "properties":
            out[key] = {name: structure(schema) for name, schema in value.items()}
        elif key == "additionalProperties":
            out[key] = value if isinstance(value, bool) else structure(value)
        elif key in ONE_SCHEMA:
            out[key] = structure(value)
        elif key in SCHEMA_LIST:
            out[key] = [structure(schema) for schema in value]
        else:
            raise ValueError(f"unknown schema keyword {key!r}; decide whether it is structure")
    return out


def component_name(ref: str) -> str:
    if not ref.startswith(COMPONENT_REF):
        raise ValueError(f"not a component schema reference: {ref!r}")
    return ref.removeprefix(COMPONENT_REF)


def references(node: Any) -> Iterator[str]:
    """Names of the component schemas ``node`` refers to directly (before rewriting)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield component_name(value)
            elif key not in PROSE:
                yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def self_contained(root: Json, components: Mapping[str, Json]) -> Json:
    """``root`` plus, under ``definitions``, every component schema it reaches."""
    reached: set[str] = set()
    pending = list(references(root))
    while pending:
        name = pending.pop()
        if name not in reached:
            reached.add(name)
            pending.extend(references(components[name]))
    schema: Json = {"$schema": DRAFT4, **structure(root)}
    if reached:
        schema["definitions"] = {name: structure(components[name]) for name in sorted(reached)}
    return schema


def body_schema(holder: Json, document: Json) -> tuple[str, Json] | None:
    """(name, schema) of a request body or response, or None when it declares no JSON body.

    A body that is a component schema is named after it; a shared response (``ClientError``,
    ``ServerError``) is named after the response component.
    """
    name = None
    if "$ref" in holder:
        name = holder["$ref"].removeprefix("#/components/responses/")
        holder = document["components"]["responses"][name]
    contents = holder.get("content", {})
    content = next((contents[kind] for kind in JSON_TYPES if kind in contents), None)
    if content is None:
        return None
    schema: Json = content["schema"]
    if "$ref" in schema:
        name = component_name(schema["$ref"])
        schema = document["components"]["schemas"][name]
    if name is None:
        raise ValueError("an inline body schema has no name to be filed under")
    return name, schema


def derive(document: Json, operations: tuple[tuple[str, str], ...] = OPERATIONS) -> dict[str, Json]:
    """File name -> content of every JSON file of one revision's folder."""
    components = document["components"]["schemas"]
    files: dict[str, Json] = {}
    index: Json = {}

    def keep(holder: Json) -> str | None:
        found = body_schema(holder, document)
        if found is None:
            return None
        name, root = found
        files[f"{name}.json"] = self_contained(root, components)
        return name

    for method, path in operations:
        operation = document["paths"][path][method]
        index[f"{method.upper()} {path}"] = {
            "request": keep(operation["requestBody"]),
            "responses": {
                status: keep(answer) for status, answer in operation["responses"].items()
            },
        }
    files[INDEX] = index
    return files


def render(content: Json) -> str:
    return json.dumps(content, indent=2, ensure_ascii=False) + "\n"


def write(files: dict[str, Json], out: Path) -> None:
    out.mkdir(exist_ok=True)
    for stale in out.glob("*.json"):
        if stale.name not in files:
            stale.unlink()
    for name, content in files.items():
        (out / name).write_text(render(content), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description="Derive tests/schemas/ from OpenAPI documents.")
    parser.add_argument("--revision", choices=sorted(REVISIONS), help="one revision (default: all)")
    parser.add_argument("--specs", type=Path, default=SPECS, help="the folder of the documents")
    args = parser.parse_args()
    for revision, (spec, out, operations) in REVISIONS.items():
        if args.revision in (None, revision):
            document = json.loads((args.specs / spec.name).read_text(encoding="utf-8"))
            write(derive(document, operations), out)


if __name__ == "__main__":
    main()
