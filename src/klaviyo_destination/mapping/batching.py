"""Merging a batch's subscription jobs: one job per list, at most 100 profiles.

The rules are docs/mapping.md §12.4.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

from .. import planned
from ..klaviyo.facts import MAX_SUBSCRIPTIONS_PER_JOB
from ..planned import PlannedRequest

K = TypeVar("K", bound=Hashable)


def merge_subscriptions(
    jobs: Sequence[tuple[K, PlannedRequest]], limit: int = MAX_SUBSCRIPTIONS_PER_JOB
) -> list[tuple[PlannedRequest, list[K]]]:
    """Merge subscription requests that name the same list, keeping input order within a list.

    Each input is ``(key, request)``; the result pairs every merged request with the keys of the
    events it carries, so each event can still be given its own outcome. Groups come out in
    JavaScript object-key order (integer-like list ids first, ascending; then first appearance),
    as the reference emits them. Profiles are never de-duplicated.
    """
    groups: dict[str, list[tuple[K, PlannedRequest]]] = {}
    for key, request in jobs:
        groups.setdefault(_group_key(planned.subscription_list_id(request)), []).append(
            (key, request)
        )
    merged: list[tuple[PlannedRequest, list[K]]] = []
    for group_key in sorted(groups, key=_js_key_order(list(groups))):
        members = groups[group_key]
        for start in range(0, len(members), limit):
            chunk = members[start : start + limit]
            merged.append((_merge(chunk[0][1], [r for _, r in chunk]), [k for k, _ in chunk]))
    return merged


def _merge(first: PlannedRequest, requests: list[PlannedRequest]) -> PlannedRequest:
    subscriptions = [sub for request in requests for sub in planned.subscriptions_of(request)]
    data = first.body["data"]
    attributes = {**data["attributes"], "subscriptions": subscriptions}
    return PlannedRequest(first.method, first.path, {"data": {**data, "attributes": attributes}})


def _group_key(list_id: object) -> str:
    if list_id is None:
        return "undefined"
    if isinstance(list_id, bool):
        return "true" if list_id else "false"
    return str(list_id)


def _js_key_order(first_seen: list[str]) -> Callable[[str], tuple[int, int]]:
    def order(key: str) -> tuple[int, int]:
        # ASCII digits only ("²".isdigit() is true); array indexes have at most 10 digits.
        is_index = key.isascii() and key.isdigit() and len(key) <= 10
        if is_index and (key == "0" or not key.startswith("0")) and int(key) < 2**32 - 1:
            return (0, int(key))
        return (1, first_seen.index(key))

    return order
