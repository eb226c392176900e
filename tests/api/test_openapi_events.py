"""``/openapi.json`` describes the event routes for real: request schemas generated from the event
models, the seed's samples as examples that validate against them, the webhook token's security
schemes, and tags."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import SecretStr

from klaviyo_destination.api.openapi import EVENT_SCHEMAS
from klaviyo_destination.api.samples import SAMPLES
from klaviyo_destination.app import create_app
from klaviyo_destination.ingest import EVENT
from klaviyo_destination.settings import Settings

SETTINGS = Settings(klaviyo_private_api_key=SecretStr("pk_openapi"))
DOCUMENT: dict[str, Any] = create_app(SETTINGS).openapi()
EVENT_ROUTES = [
    "/v1/events",
    "/v1/batch",
    *(f"/v1/{kind}" for kind in ("identify", "track", "screen", "group", "page", "alias")),
    "/v1/transform",
]


def _body(path: str) -> dict[str, Any]:
    content: dict[str, Any] = DOCUMENT["paths"][path]["post"]["requestBody"]["content"]
    json_body: dict[str, Any] = content["application/json"]
    return json_body


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    """``schema``, its ``#/components/...`` references read in the whole document (OpenAPI
    3.1's schemas are JSON Schema 2020-12; the document's other keys are not keywords)."""
    return Draft202012Validator({**DOCUMENT, **schema})


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = DOCUMENT
    for part in ref[2:].split("/"):
        node = node[part]
    return node


@pytest.mark.parametrize("path", EVENT_ROUTES)
def test_event_routes_have_a_real_request_schema(path: str) -> None:
    schema = _body(path)["schema"]
    assert schema == {"$ref": "#/components/schemas/Events"}
    events = _resolve(schema["$ref"])
    assert len(events["anyOf"]) == 3  # one event, an array of events, {"batch": [...]}
    Draft202012Validator.check_schema(events)


def test_every_ref_in_the_document_resolves() -> None:
    refs = set(_refs(DOCUMENT))
    assert {"#/components/schemas/Events", "#/components/schemas/Track"} <= refs
    for ref in refs:
        assert _resolve(ref), ref


def test_the_components_are_the_models_schemas() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    assert {name: schemas[name] for name in EVENT_SCHEMAS} == EVENT_SCHEMAS
    union = EVENT.json_schema(ref_template="#/components/schemas/{model}")
    for name, model in union["$defs"].items():
        assert schemas[name] == model


@pytest.mark.parametrize("path", EVENT_ROUTES)
def test_the_examples_are_the_seed_samples_and_validate(path: str) -> None:
    content = _body(path)
    examples = {name: example["value"] for name, example in content["examples"].items()}
    assert examples == {**SAMPLES, "batch": {"batch": list(SAMPLES.values())}}
    validator = _validator(content["schema"])
    for name, example in examples.items():
        assert not list(validator.iter_errors(example)), name
    for sample in SAMPLES.values():  # and the models take them
        EVENT.validate_python(sample)


@pytest.mark.parametrize(
    "body",
    [
        {"type": "page", "userId": "u1"},
        {"type": "track", "userId": {"id": 1}},
        {"type": "identify", "traits": []},
        {"type": "track", "context": {"traits": "t"}},
        {"type": "group", "groupId": ["L1"]},
        [],
        {"batch": []},
        {"batch": [{"type": "alias"}]},
        "track",
    ],
    ids=repr,
)
def test_the_schema_refuses_what_the_service_refuses(body: Any) -> None:
    assert list(_validator(_body("/v1/events")["schema"]).iter_errors(body))


def test_the_webhook_token_is_declared_as_bearer_and_basic() -> None:
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert {name: (s["type"], s["scheme"]) for name, s in schemes.items()} == {
        "bearer": ("http", "bearer"),
        "basic": ("http", "basic"),
    }
    for path, operations in DOCUMENT["paths"].items():
        for operation in operations.values():
            expected: Any = [{"bearer": []}, {"basic": []}] if path in EVENT_ROUTES else None
            assert operation.get("security") == expected, path


def test_every_route_is_tagged() -> None:
    names = [tag["name"] for tag in DOCUMENT["tags"]]
    assert names == ["events", "rudder-server protocol", "operations"]
    tagged = {
        path: operation["tags"]
        for path, operations in DOCUMENT["paths"].items()
        for operation in operations.values()
    }
    assert all(len(tags) == 1 and tags[0] in names for tags in tagged.values()), tagged
    assert {path for path, tags in tagged.items() if tags == ["events"]} == set(EVENT_ROUTES)
    assert tagged["/routerTransform"] == ["rudder-server protocol"]
    assert tagged["/health"] == ["operations"]


def test_the_document_is_built_once() -> None:
    app = create_app(SETTINGS)
    first = app.openapi()
    assert app.openapi() is first
    assert first["components"]["schemas"]["Events"] == EVENT_SCHEMAS["Events"]
