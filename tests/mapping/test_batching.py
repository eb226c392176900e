"""merge_subscriptions (docs/mapping.md §12.4): a row per batching rule, jobs written by hand."""

from __future__ import annotations

from typing import Any

import pytest

from klaviyo_destination.mapping import merge_subscriptions
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
