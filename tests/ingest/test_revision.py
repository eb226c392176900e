"""``apiVersion`` → the revision a destination's requests are written for (docs/mapping.md §16),
and the endpoint class of each path a planned request can have (§16.2)."""

from __future__ import annotations

from typing import Any

import pytest

from klaviyo_destination.errors import InvalidEvent
from klaviyo_destination.ingest import parse_config, revision_of
from klaviyo_destination.klaviyo.facts import Endpoint, endpoint_of
from klaviyo_destination.planned import PlannedRequest, import_profile, list_job


@pytest.mark.parametrize(
    ("version", "name", "profile_import", "required"),
    [
        (None, "2023-02-22", False, False),
        ("v1", "2023-02-22", False, False),
        ("v2", "2024-10-15", True, False),
        ("v3", "2026-04-15", True, True),
    ],
)
def test_a_named_api_version_selects_its_revision(
    version: Any, name: str, profile_import: bool, required: bool
) -> None:
    config = {} if version is None else {"apiVersion": version}
    revision = revision_of(parse_config(config))
    assert (revision.name, revision.profile_import) == (name, profile_import)
    assert revision.subscriptions_required is required


@pytest.mark.parametrize(
    ("version", "written"),
    [
        ("", ""),
        ("V2", "V2"),
        ("v2 ", "v2 "),
        (2, "2"),
        (2.5, "2.5"),
        (True, "true"),
        (["v2"], "v2"),  # the reference's key look-up would take it as v2 (§16.1, decision)
        (["v1", "v2"], "v1,v2"),
        ({}, "[object Object]"),
        ("constructor", "constructor"),
    ],
)
def test_anything_else_is_unsupported_as_javascript_writes_it(version: Any, written: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        revision_of(parse_config({"apiVersion": version}))
    assert caught.value.message == f"Unsupported Klaviyo apiVersion: {written}"
    assert (caught.value.category, caught.value.error_type) == ("dataValidation", "instrumentation")
    assert caught.value.field == "apiVersion"


@pytest.mark.parametrize(
    ("path", "endpoint"),
    [
        ("/api/profiles", Endpoint.PROFILES),
        ("/api/profiles/01P", Endpoint.PROFILES),
        ("/api/events", Endpoint.EVENTS),
        ("/api/profile-import", Endpoint.PROFILE_IMPORT),
        ("/api/profile-subscription-bulk-create-jobs", Endpoint.SUBSCRIPTIONS),
        ("/api/profile-subscription-bulk-delete-jobs", Endpoint.UNSUBSCRIPTIONS),
    ],
)
def test_every_path_has_its_endpoint_class(path: str, endpoint: Endpoint) -> None:
    assert endpoint_of(path) is endpoint
    assert PlannedRequest("POST", path, {}).endpoint is endpoint


def test_an_unknown_path_has_no_class() -> None:
    with pytest.raises(ValueError, match="no Klaviyo endpoint class"):
        endpoint_of("/api/lists")


def test_v2v3_builders_carry_their_revision() -> None:
    revision = revision_of(parse_config({"apiVersion": "v3"}))
    upsert = import_profile({"type": "profile", "attributes": {}}, revision)
    job = list_job(False, "L1", [], revision)
    assert (upsert.revision, upsert.endpoint) == (revision, Endpoint.PROFILE_IMPORT)
    assert (job.revision, job.endpoint) == (revision, Endpoint.UNSUBSCRIPTIONS)
    assert job.body["data"]["type"] == "profile-subscription-bulk-delete-job"
