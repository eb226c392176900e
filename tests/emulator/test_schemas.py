"""The emulator's per-revision schemas: what derive_schemas writes, the rate limits Klaviyo's
documents give, and, for 2026-10-15 (which has no subset), the SDK's own models."""

from __future__ import annotations

import json
import typing
from typing import Any, Final

import pytest
from openapi_client import models as m
from pydantic import BaseModel

from klaviyo_destination.emulator.ratelimit import EndpointClass, RateLimit
from klaviyo_destination.emulator.revisions import SERVED
from klaviyo_destination.emulator.schema import Schemas, load
from klaviyo_destination.klaviyo.facts import NEWEST_REVISION, REVISION
from tests.emulator.derive_schemas import OUT, SOURCES, SPEC, derived

NEWER: Final = sorted(name for name in SERVED if name != REVISION)
#: The class each derived operation draws on.
CLASSES: Final = {
    "POST /api/profile-import": EndpointClass.PROFILE_IMPORT,
    "POST /api/profile-subscription-bulk-create-jobs": EndpointClass.SUBSCRIPTIONS,
    "POST /api/profile-subscription-bulk-delete-jobs": EndpointClass.UNSUBSCRIPTIONS,
    "POST /api/events": EndpointClass.EVENTS,
}
#: The SDK's model of each request body and of the profile answer.
SDK_MODELS: Final[dict[str, type[BaseModel]]] = {
    "ProfileUpsertQuery": m.ProfileUpsertQuery,
    "EventCreateQueryV2": m.EventCreateQueryV2,
    "SubscriptionCreateJobCreateQuery": m.SubscriptionCreateJobCreateQuery,
    "SubscriptionDeleteJobCreateQuery": m.SubscriptionDeleteJobCreateQuery,
    "PostProfileResponse": m.PostProfileResponse,
}


@pytest.mark.skipif(not SPEC.is_dir(), reason=f"{SPEC} is absent (KLAVIYO_SPEC_DIR names it)")
def test_the_schemas_are_what_derive_writes() -> None:
    shipped = {path.name: path.read_text(encoding="utf-8") for path in OUT.glob("*.json")}
    assert shipped == derived(), "run: python -m tests.emulator.derive_schemas"


def test_every_revision_after_2023_02_22_has_its_schemas() -> None:
    assert NEWER == sorted(SOURCES) == ["2024-10-15", "2026-04-15", NEWEST_REVISION]


@pytest.mark.parametrize("revision", NEWER)
def test_each_revisions_tiers_are_its_documents_x_klaviyo_ratelimit(revision: str) -> None:
    """``facts.py``'s limits, as each served revision uses them, equal the OAS's."""
    served = SERVED[revision]
    for operation, content in load(revision).operations.items():
        documented = RateLimit(content["ratelimit"]["burst"], content["ratelimit"]["steady"])
        assert served.limits[CLASSES[operation]] == documented, operation


def test_the_newest_revisions_tiers_are_the_sdks_docstrings() -> None:
    """2026-10-15 has no subset; Klaviyo's SDK for it prints each operation's limits."""
    api = {
        "POST /api/profile-import": _doc("profiles_api", "create_or_update_profile"),
        "POST /api/profile-subscription-bulk-create-jobs": _doc(
            "profiles_api", "bulk_subscribe_profiles"
        ),
        "POST /api/profile-subscription-bulk-delete-jobs": _doc(
            "profiles_api", "bulk_unsubscribe_profiles"
        ),
        "POST /api/events": _doc("events_api", "create_event"),
    }
    limits = SERVED[NEWEST_REVISION].limits
    for operation, doc in api.items():
        limit = limits[CLASSES[operation]]
        assert f"Burst: `{limit.burst}/s`<br>Steady: `{limit.steady}/m`" in doc, operation


def _doc(module: str, method: str) -> str:
    api = __import__(f"openapi_client.api.{module}", fromlist=["*"])
    owner = next(v for v in vars(api).values() if isinstance(v, type) and hasattr(v, method))
    return str(getattr(owner, method).__doc__)


@pytest.mark.parametrize("name", sorted(SDK_MODELS))
def test_the_newest_revision_matches_the_sdks_models(name: str) -> None:
    """Member names and required members, schema against model, all the way down: the check
    that 2026-10-15 is 2026-07-15 plus the changes derive_schemas lists."""
    assert _differences(load(NEWEST_REVISION), {"$ref": f"#/definitions/{name}"},
                        SDK_MODELS[name], name) == []  # fmt: skip


def _differences(
    schemas: Schemas, schema: dict[str, Any], model: type[BaseModel], path: str
) -> list[str]:
    schema = _resolve(schemas, schema)
    if "items" in schema:
        schema = _resolve(schemas, schema["items"])
    members = schema.get("properties", {})
    fields = {field.alias or name: field for name, field in model.model_fields.items()}
    allowed = {"anonymous_id"} if path.endswith("ProfileUpsertQuery/data/attributes") else set()
    found = []
    if set(members) - allowed != set(fields):
        found.append(f"{path}: {sorted(set(members) ^ set(fields))}")
    required = {name for name, field in fields.items() if field.is_required()}
    if set(schema.get("required", ())) != required:
        found.append(f"{path} requires {sorted(schema.get('required', ()))} vs {sorted(required)}")
    for member in set(members) & set(fields):
        for inner in _models(fields[member].annotation):
            found += _differences(schemas, members[member], inner, f"{path}/{member}")
    return found


def _resolve(schemas: Schemas, schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = dict(schemas.definitions[schema["$ref"].rsplit("/", 1)[-1]])
    return schema


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [inner for arg in typing.get_args(annotation) for inner in _models(arg)]


def test_the_schema_files_are_structure_only() -> None:
    """No prose of Klaviyo's reaches the package: no descriptions, titles or examples."""
    for path in OUT.glob("*.json"):
        text = json.dumps(json.loads(path.read_text(encoding="utf-8"))["definitions"])
        for keyword in ('"description"', '"example"', '"default"'):
            assert keyword not in text, (path.name, keyword)
