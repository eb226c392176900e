"""resolve_identify (docs/mapping.md §6.7-§6.9, Q9): the create-call answers, expected by hand."""

from __future__ import annotations

import json
from typing import Any

import pytest

from klaviyo_destination.errors import ProfileLookupError
from klaviyo_destination.planned import PlannedEvent, PlannedRequest
from klaviyo_destination.protocol.lookup import resolve_identify
from tests.helpers.planning import as_row

ATTRIBUTES = {"external_id": "u1", "email": "a@b.co"}
CREATE = PlannedRequest(
    "POST", "/api/profiles", {"data": {"type": "profile", "attributes": ATTRIBUTES}}, upsert=True
)
SUB_PATH = "/api/profile-subscription-bulk-create-jobs"
SUB_BODY = {
    "data": {
        "type": "profile-subscription-bulk-create-job",
        "attributes": {"list_id": "L1", "subscriptions": [{"email": "a@b.co"}]},
    }
}
SUBSCRIBE = PlannedRequest("POST", SUB_PATH, SUB_BODY)
SUB = {"method": "POST", "path": SUB_PATH, "body": SUB_BODY}


def _patch(profile_id: str) -> dict[str, Any]:
    """§6.8: same body, data.id after attributes, sent to /api/profiles/<id>."""
    body = {"data": {"type": "profile", "attributes": ATTRIBUTES, "id": profile_id}}
    return {"method": "PATCH", "path": f"/api/profiles/{profile_id}", "body": body}


RESOLVED = [
    # id, status, body, filter_code, with subscription, expected requests, expected 299 mark
    ("201-with-id", 201, {"data": {"id": "P1"}}, False, False, [_patch("P1")], None),
    ("201-with-id-and-sub", 201, {"data": {"id": "P1"}}, False, True, [_patch("P1"), SUB], None),
    (
        "409-duplicate-id",
        409,
        {"errors": [{"meta": {"duplicate_profile_id": "D1"}}]},
        False,
        True,
        [_patch("D1"), SUB],
        None,
    ),
    ("200-with-id-is-created-q9", 200, {"data": {"id": "P2"}}, False, False, [_patch("P2")], None),
    (
        "202-with-id-is-created-q9",
        202,
        {"data": {"id": "P3"}},
        False,
        True,
        [_patch("P3"), SUB],
        None,
    ),
    # §6.9: filter-code + 201 with a subscription: only the subscription
    ("299-with-sub", 201, {"data": {"id": "P1", "attributes": {}}}, True, True, [SUB], None),
    # §6.9: filter-code + 201 without one: the PATCH marked with {id, attributes}
    (
        "299-without-sub",
        201,
        {"data": {"id": "PROFILE201", "attributes": {"email": "x"}}},
        True,
        False,
        [_patch("PROFILE201")],
        '{"id":"PROFILE201","attributes":{"email":"x"}}',
    ),
    (
        "299-without-attributes",
        201,
        {"data": {"id": "P1"}},
        True,
        False,
        [_patch("P1")],
        '{"id":"P1"}',
    ),
    (
        "299-empty-attributes",
        201,
        {"data": {"id": "P1", "attributes": {}}},
        True,
        False,
        [_patch("P1")],
        '{"id":"P1","attributes":{}}',
    ),
    # Q9 decision: a 2xx with data.id is a created profile, so it suppresses like a 201
    ("299-for-200-created", 200, {"data": {"id": "P2"}}, True, True, [SUB], None),
    # §6.9: a 409 never suppresses
    (
        "409-never-suppresses-with-sub",
        409,
        {"errors": [{"meta": {"duplicate_profile_id": "D1"}}]},
        True,
        True,
        [_patch("D1"), SUB],
        None,
    ),
    (
        "409-never-suppresses-without-sub",
        409,
        {"errors": [{"meta": {"duplicate_profile_id": "D1"}}]},
        True,
        False,
        [_patch("D1")],
        None,
    ),
]


@pytest.mark.parametrize(
    ("status", "body", "filter_code", "with_sub", "requests", "mark"),
    [pytest.param(*row[1:], id=row[0]) for row in RESOLVED],
)
def test_resolved(
    status: int,
    body: Any,
    filter_code: bool,
    with_sub: bool,
    requests: list[dict[str, Any]],
    mark: str | None,
) -> None:
    planned = PlannedEvent("m1", "identify", "u1", [CREATE, SUBSCRIBE] if with_sub else [CREATE])
    resolved = resolve_identify(planned, status, body, filter_code=filter_code)
    assert resolved.error is None
    got = [as_row(request) for request in resolved.requests]
    assert got == requests
    assert json.dumps(got) == json.dumps(requests)  # data.id comes after attributes
    assert resolved.suppressed == mark


EMPTY_MESSAGE = '{"message":"Failed to create user due to \\"\\"","destinationResponse":"\\"\\""}'
ERRORS_MESSAGE = (
    '{"message":"Failed to create user due to {\\"errors\\":[]}",'
    '"destinationResponse":"{\\"errors\\":[]}"}'
)

FAILED = [
    # id, status, body, expected status, kind, message (None: not pinned here)
    (
        "201-without-id",
        201,
        {"data": {}},
        500,
        "retryable",
        '{"message":"Failed to create user due to {\\"data\\":{}}",'
        '"destinationResponse":"{\\"data\\":{}}"}',
    ),
    ("201-with-empty-id", 201, {"data": {"id": ""}}, 500, "retryable", None),
    ("409-without-id", 409, {"errors": []}, 500, "retryable", ERRORS_MESSAGE),
    ("409-meta-without-id", 409, {"errors": [{"meta": {}}]}, 500, "retryable", None),
    ("200-without-id-is-retryable-q9", 200, {"data": {}}, 500, "retryable", None),
    ("202-without-body-is-retryable-q9", 202, "", 500, "retryable", EMPTY_MESSAGE),
    ("429-throttled", 429, {"errors": []}, 429, "throttled", ERRORS_MESSAGE),
    ("503-retryable", 503, "", 503, "retryable", EMPTY_MESSAGE),
    ("500-empty-body", 500, "", 500, "retryable", EMPTY_MESSAGE),
    ("400-aborted", 400, {"errors": []}, 400, "aborted", ERRORS_MESSAGE),
    ("401-aborted", 401, {"errors": []}, 401, "aborted", ERRORS_MESSAGE),
    ("403-aborted", 403, "", 403, "aborted", EMPTY_MESSAGE),
    ("404-aborted", 404, "", 404, "aborted", EMPTY_MESSAGE),
    (
        "non-ascii-kept",
        400,
        {"detail": "é"},
        400,
        "aborted",
        '{"message":"Failed to create user due to {\\"detail\\":\\"é\\"}",'
        '"destinationResponse":"{\\"detail\\":\\"é\\"}"}',
    ),
]


@pytest.mark.parametrize(
    ("status", "body", "http_status", "kind", "message"),
    [pytest.param(*row[1:], id=row[0]) for row in FAILED],
)
def test_failed(status: int, body: Any, http_status: int, kind: str, message: str | None) -> None:
    """§6.7: no id → network error; 201/409 without id become 500; others keep their status."""
    planned = PlannedEvent("m1", "identify", "u1", [CREATE, SUBSCRIBE])
    resolved = resolve_identify(planned, status, body, filter_code=True)
    error = resolved.error
    assert isinstance(error, ProfileLookupError)
    assert resolved.requests == []
    assert (error.status, error.error_type, error.category) == (http_status, kind, "network")
    assert error.retryable is (kind != "aborted")
    if message is not None:
        assert error.message == message
