"""Derive the emulator's per-revision schemas (``emulator/schemas/*.json``) from Klaviyo's OAS.

Sources: ``../shared/spec/klaviyo-openapi-{2024-10-15,2026-04-15,2026-07-15}-subset.json``
(Klaviyo's own documents, MIT licence, Copyright (c) 2022 Klaviyo), cut to the four operations
of the profile-import path. One file per revision the emulator serves, holding each operation's
request and answer schema names, its ``x-klaviyo-ratelimit`` and every component schema they
reach, structure only: Klaviyo's prose (descriptions, titles, examples) stays out.

There is no 2026-10-15 subset. The spec finds no diff on these operations from 2026-04-15 to
2026-07-15, so 2026-10-15 starts from 2026-07-15 plus the changes Klaviyo's Python SDK 25.0.0
(generated from the 2026-10-15 OAS) shows, listed in :data:`CHANGES` with the emulator's own
allowances; ``tests/emulator/test_schemas.py`` compares the result with the SDK's models.

Run from the repository root: ``python -m tests.emulator.derive_schemas`` (``KLAVIYO_SPEC_DIR``
names the folder of the subsets when it is not ``../shared/spec``).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parents[2]
SPEC: Final = Path(os.environ.get("KLAVIYO_SPEC_DIR", ROOT.parent / "shared" / "spec"))
OUT: Final = ROOT / "src" / "klaviyo_destination" / "emulator" / "schemas"
#: Served revision -> the subset it is derived from.
SOURCES: Final = {
    "2024-10-15": "klaviyo-openapi-2024-10-15-subset.json",
    "2026-04-15": "klaviyo-openapi-2026-04-15-subset.json",
    "2026-10-15": "klaviyo-openapi-2026-07-15-subset.json",
}
OPERATIONS: Final = (
    "/api/profile-import",
    "/api/profile-subscription-bulk-create-jobs",
    "/api/profile-subscription-bulk-delete-jobs",
    "/api/events",
)
MEDIA_TYPE: Final = "application/vnd.api+json"
KEPT: Final = frozenset({"type", "required", "enum", "format", "nullable"})
DROPPED: Final = frozenset({"description", "title", "example", "examples", "default"})
COMPONENT: Final = "#/components/schemas/"

Json = dict[str, Any]
Change = Callable[[Json], None]


def structure(node: Json) -> Json:
    """``node`` without prose or defaults (they do not constrain a body), refs made local."""
    out: Json = {}
    for key, value in node.items():
        if key in DROPPED:
            continue
        if key == "$ref":
            out[key] = "#/definitions/" + value.removeprefix(COMPONENT)
        elif key in KEPT:
            out[key] = value
        elif key == "properties":
            out[key] = {name: structure(schema) for name, schema in value.items()}
        elif key == "items":
            out[key] = structure(value)
        elif key == "oneOf":
            out[key] = [structure(schema) for schema in value]
        else:
            raise ValueError(f"unknown schema keyword {key!r}; decide whether it is structure")
    return out


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value.rsplit("/", 1)[-1]
            else:
                yield from references(value)
    elif isinstance(node, list):
        for value in node:
            yield from references(value)


def _answer(holder: Json, document: Json, definitions: Json) -> str | None:
    """The schema name of a request body or answer; inline error schemas take the response's."""
    name: str | None = None
    if "$ref" in holder:
        name = str(holder["$ref"]).rsplit("/", 1)[-1]
        holder = document["components"]["responses"][name]
    schema = holder.get("content", {}).get(MEDIA_TYPE, {}).get("schema")
    if schema is None:
        return None
    if "$ref" in schema:
        ref: str = schema["$ref"]
        return ref.rsplit("/", 1)[-1]
    if name is None:
        raise ValueError("an inline body schema has no name to be filed under")
    definitions[name] = structure(schema)
    return name


def _limit(text: str) -> int:
    return int(text.split("/")[0])


def derive(document: Json, revision: str, source: str) -> Json:
    """The schema file of one served revision."""
    components = document["components"]["schemas"]
    definitions: Json = {}
    operations: Json = {}
    for path in OPERATIONS:
        operation = document["paths"][path]["post"]
        limit = operation["x-klaviyo-ratelimit"]
        operations[f"POST {path}"] = {
            "request": _answer(operation["requestBody"], document, definitions),
            "responses": {
                status: _answer(answer, document, definitions)
                for status, answer in operation["responses"].items()
            },
            "ratelimit": {"burst": _limit(limit["burst"]), "steady": _limit(limit["steady"])},
        }
    pending = [name for op in operations.values() for name in _names(op)]
    while pending:
        name = pending.pop()
        if name not in definitions:
            definitions[name] = structure(components[name])
            pending.extend(references(components[name]))
    changes = CHANGES.get(revision, []) + ALLOWANCES
    for _, change in changes:
        change(definitions)
    return {
        "revision": revision,
        "source": source,
        "changes": [reason for reason, _ in changes],
        "operations": operations,
        "definitions": dict(sorted(definitions.items())),
    }


def _names(operation: Json) -> Iterator[str]:
    yield from (n for n in [operation["request"], *operation["responses"].values()] if n)


def _event_profile_meta_on_the_resource(definitions: Json) -> None:
    resource = definitions["EventProfileCreateQueryResourceObject"]["properties"]
    resource["meta"] = resource["attributes"]["properties"].pop("meta")


def _click_tracking(definitions: Json) -> None:
    for name, consent in [
        ("EmailSubscriptionParameters", "SUBSCRIBED"),
        ("EmailUnsubscriptionParameters", "UNSUBSCRIBED"),
    ]:
        parameters: Json = {
            "type": "object",
            "properties": {"consent": {"type": "string", "enum": [consent]}},
            "required": ["consent"],
            "nullable": True,
        }
        definitions[name]["properties"]["click_tracking"] = parameters
    tracking = copy.deepcopy(definitions["OpenTrackingConsent"]) | {"nullable": True}
    definitions["EmailChannel"]["properties"]["click_tracking"] = tracking


def _anonymous_id_on_profile_import(definitions: Json) -> None:
    attributes = definitions["ProfileUpsertQueryResourceObject"]["properties"]["attributes"]
    attributes["properties"].setdefault("anonymous_id", {"type": "string", "nullable": True})


#: What the SDK 25.0.0 models of revision 2026-10-15 differ in from the 2026-07-15 subset.
CHANGES: Final[dict[str, list[tuple[str, Change]]]] = {
    "2026-10-15": [
        (
            "SDK 25.0.0: an event's profile takes meta beside its attributes, not inside them",
            _event_profile_meta_on_the_resource,
        ),
        (
            "SDK 25.0.0: email consent has click_tracking beside open_tracking",
            _click_tracking,
        ),
    ]
}
#: The emulator's own allowances over the documents, each with its reason.
ALLOWANCES: Final[list[tuple[str, Change]]] = [
    (
        "emulator: profile-import accepts anonymous_id at every revision. It left the OAS in a "
        "2025-11 document update, not in a revision, and RudderStack's apiVersion v3 (default "
        "for new connections since 2026-06) sends it at 2026-04-15",
        _anonymous_id_on_profile_import,
    )
]


def render(content: Json) -> str:
    return json.dumps(content, indent=1, ensure_ascii=False) + "\n"


def derived() -> dict[str, str]:
    """File name -> text of every file under ``emulator/schemas/``."""
    files = {}
    for revision, source in SOURCES.items():
        document = json.loads((SPEC / source).read_text(encoding="utf-8"))
        files[f"{revision}.json"] = render(derive(document, revision, source))
    return files


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for name, text in derived().items():
        (OUT / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
