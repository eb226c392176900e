"""merge_subscriptions (docs/mapping.md §12.4) and merge_jobs (§23.2): a row per batching rule,
jobs written by hand."""

from __future__ import annotations

from typing import Any

import pytest

from klaviyo_destination import planned
from klaviyo_destination.klaviyo.facts import (
    MAX_PROFILES_PER_CALL,
    MAX_SUBSCRIPTIONS_PER_JOB,
    REVISIONS,
    ApiVersion,
)
from klaviyo_destination.mapping import merge_jobs, merge_subscriptions
from klaviyo_destination.planned import PlannedRequest
from tests.helpers.planning import as_row

PATH = "/api/profile-subscription-bulk-create-jobs"
ABSENT = object()  # a job without list_id


def _body(list_id: Any, entries: list[dict[str, Any]]) -> dict[str, Any]:
    attributes: dict[str, Any] = {} if list_id is ABSENT else {"list_id": list_id}
    attributes["subscriptions"] = entries
    return {"data": {"type": "profile-subscription-bulk-create-job", "attributes": attributes}}


def _job(list_id: Any, email: str) -> PlannedRequest:
    return PlannedRequest("POST", PATH, _body(list_id, [{"email": email}]))


def _expected(list_id: Any, emails: list[str]) -> dict[str, Any]:
    return {"method": "POST", "path": PATH, "body": _body(list_id, [{"email": e} for e in emails])}


def _merged(jobs: list[tuple[str, Any, str]], limit: int | None = None) -> list[Any]:
    pairs = [(key, _job(list_id, email)) for key, list_id, email in jobs]
    result = merge_subscriptions(pairs) if limit is None else merge_subscriptions(pairs, limit)
    return [(as_row(request), keys) for request, keys in result]


def test_same_list_merged_in_event_order() -> None:
    """§12.4 step 3: one job per list, entries appended in event order, keys alongside."""
    got = _merged([("e1", "L1", "a@x.co"), ("e2", "L1", "b@x.co"), ("e3", "L1", "c@x.co")])
    assert got == [(_expected("L1", ["a@x.co", "b@x.co", "c@x.co"]), ["e1", "e2", "e3"])]


def test_150_subscriptions_become_100_and_50() -> None:
    """§12.4 step 3: consecutive chunks of at most 100."""
    jobs = [(f"e{i}", "L1", f"u{i}@x.co") for i in range(150)]
    got = _merged(jobs)
    assert got == [
        (_expected("L1", [f"u{i}@x.co" for i in range(100)]), [f"e{i}" for i in range(100)]),
        (
            _expected("L1", [f"u{i}@x.co" for i in range(100, 150)]),
            [f"e{i}" for i in range(100, 150)],
        ),
    ]


def test_limit_is_a_parameter() -> None:
    got = _merged([("e1", "L1", "a@x.co"), ("e2", "L1", "b@x.co"), ("e3", "L1", "c@x.co")], 2)
    assert got == [
        (_expected("L1", ["a@x.co", "b@x.co"]), ["e1", "e2"]),
        (_expected("L1", ["c@x.co"]), ["e3"]),
    ]


def test_two_lists_stay_apart() -> None:
    """§12.4 step 2: grouped by list_id; groups in first-appearance order for non-index keys."""
    got = _merged([("e1", "L1", "a@x.co"), ("e2", "L2", "b@x.co"), ("e3", "L1", "c@x.co")])
    assert got == [
        (_expected("L1", ["a@x.co", "c@x.co"]), ["e1", "e3"]),
        (_expected("L2", ["b@x.co"]), ["e2"]),
    ]


def test_js_key_order_of_list_ids() -> None:
    """§12.4 step 2: array-index keys first (ascending), then the rest by first appearance.

    "007" has a leading zero and 4294967295 is 2^32-1: neither is an array index.
    """
    jobs = [
        ("e1", "B", "1@x.co"),
        ("e2", "10", "2@x.co"),
        ("e3", ABSENT, "3@x.co"),
        ("e4", "A", "4@x.co"),
        ("e5", "2", "5@x.co"),
        ("e6", "007", "6@x.co"),
        ("e7", 5, "7@x.co"),
        ("e8", "4294967295", "8@x.co"),
        ("e9", "4294967294", "9@x.co"),
        ("e10", "B", "10@x.co"),
    ]
    assert _merged(jobs) == [
        (_expected("2", ["5@x.co"]), ["e5"]),
        (_expected(5, ["7@x.co"]), ["e7"]),
        (_expected("10", ["2@x.co"]), ["e2"]),
        (_expected("4294967294", ["9@x.co"]), ["e9"]),
        (_expected("B", ["1@x.co", "10@x.co"]), ["e1", "e10"]),
        (_expected(ABSENT, ["3@x.co"]), ["e3"]),
        (_expected("A", ["4@x.co"]), ["e4"]),
        (_expected("007", ["6@x.co"]), ["e6"]),
        (_expected("4294967295", ["8@x.co"]), ["e8"]),
    ]


def test_number_and_string_list_id_share_a_group_first_wins() -> None:
    """§12.4: the key is the list id as a string; the merged job keeps the first event's list_id."""
    got = _merged([("e1", 10, "a@x.co"), ("e2", "10", "b@x.co")])
    assert got == [(_expected(10, ["a@x.co", "b@x.co"]), ["e1", "e2"])]


def test_profiles_are_never_deduplicated() -> None:
    """§12.4 step 3: the same email twice gives two entries."""
    got = _merged([("e1", "L1", "a@x.co"), ("e2", "L1", "a@x.co")])
    assert got == [(_expected("L1", ["a@x.co", "a@x.co"]), ["e1", "e2"])]


def test_whole_entries_and_first_job_fields_are_kept() -> None:
    """§12.4 step 3: entries are appended as they are (channels, phone); list_id and type stay."""
    first = PlannedRequest(
        "POST", PATH, _body("L1", [{"email": "a@x.co", "channels": {"email": ["MARKETING"]}}])
    )
    second = PlannedRequest("POST", PATH, _body("L1", [{"phone_number": "+1555"}, {}]))
    got = [(as_row(r), keys) for r, keys in merge_subscriptions([(1, first), (2, second)])]
    entries: list[dict[str, Any]] = [
        {"email": "a@x.co", "channels": {"email": ["MARKETING"]}},
        {"phone_number": "+1555"},
        {},
    ]
    assert got == [({"method": "POST", "path": PATH, "body": _body("L1", entries)}, [1, 2])]


@pytest.mark.parametrize("jobs", [[]], ids=["no-jobs"])
def test_nothing_to_merge(jobs: list[tuple[str, PlannedRequest]]) -> None:
    assert merge_subscriptions(jobs) == []


# --- v2/v3: merge_jobs over subscribe and unsubscribe jobs (§23.2) ------------------------------


def _list_job(subscribe: bool, list_id: Any, email: str) -> PlannedRequest:
    profile = {"type": "profile", "attributes": {"email": email}}
    return planned.list_job(subscribe, list_id, [profile], REVISIONS[ApiVersion.V3])


def _row(request: PlannedRequest) -> tuple[str, Any, list[str]]:
    subscribe, list_id, profiles = planned.list_job_parts(request)
    kind = "subscribe" if subscribe else "unsubscribe"
    return kind, list_id, [p["attributes"]["email"] for p in profiles]


@pytest.mark.parametrize(
    ("jobs", "limit", "expected"),
    [
        pytest.param(
            [(1, True, "L1", "a"), (2, False, "L1", "b"), (3, True, "L1", "c")],
            100,
            [(("subscribe", "L1", ["a", "c"]), [1, 3]), (("unsubscribe", "L1", ["b"]), [2])],
            id="per-operation-subscribes-first",
        ),
        pytest.param(
            [(1, True, "B", "a"), (2, True, 7, "b"), (3, True, "A", "c"), (4, True, "7", "d")],
            100,
            [
                (("subscribe", "7", ["b", "d"]), [2, 4]),  # integer-like first; 7 is "7"
                (("subscribe", "B", ["a"]), [1]),
                (("subscribe", "A", ["c"]), [3]),
            ],
            id="js-key-order-and-group-key",
        ),
        pytest.param(
            [(n, True, "L1", f"e{n}") for n in range(5)],
            2,
            [
                (("subscribe", "L1", ["e0", "e1"]), [0, 1]),
                (("subscribe", "L1", ["e2", "e3"]), [2, 3]),
                (("subscribe", "L1", ["e4"]), [4]),
            ],
            id="chunked-never-dropped",
        ),
    ],
)
def test_merge_jobs_at_v3(
    jobs: list[tuple[int, bool, Any, str]], limit: int, expected: list[Any]
) -> None:
    pairs = [(key, _list_job(subscribe, list_id, email)) for key, subscribe, list_id, email in jobs]
    merged = merge_jobs(pairs, limit)
    assert [(_row(request), keys) for request, keys in merged] == expected
    assert {request.revision.name for request, _ in merged} == {"2026-04-15"}


def test_the_job_size_is_within_klaviyos_maxima() -> None:
    """The router's 100 profiles a job (the reference's MAX_BATCH_SIZE) is within what Klaviyo
    takes in one call: 1000 to subscribe, 100 to unsubscribe (shared spec §4)."""
    assert min(MAX_PROFILES_PER_CALL.values()) >= MAX_SUBSCRIPTIONS_PER_JOB
