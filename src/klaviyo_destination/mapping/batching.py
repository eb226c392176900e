"""Batching a router chunk's planned events: one job per list, at most 100 profiles.

v1's rules are docs/mapping.md §12.4-§12.6 (the subscription jobs merged, each PATCH after its
own job); v2/v3's are §23.2 (profile-imports ahead of their own subscribe or unsubscribe job).
Both give :class:`Batch` es, which the router renders the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from .. import planned
from ..js import js_string
from ..klaviyo.facts import MAX_SUBSCRIPTIONS_PER_JOB, Endpoint
from ..planned import PlannedRequest

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

#: A chunk's successfully planned events: (the event's index in the chunk, its requests).
Planned = Sequence[tuple[int, list[PlannedRequest]]]


@dataclass(frozen=True, slots=True)
class Batch:
    """One router output: its requests in delivery order, and the events (indexes) it carries.

    ``batched`` is the reference's flag; an output that is not batched holds one request."""

    requests: list[PlannedRequest]
    events: list[int]
    batched: bool


def merge_subscriptions(
    jobs: Sequence[tuple[K, PlannedRequest]], limit: int = MAX_SUBSCRIPTIONS_PER_JOB
) -> list[tuple[PlannedRequest, list[K]]]:
    """Merge v1 subscription requests that name the same list, keeping input order per list.

    Each input is ``(key, request)``; the result pairs every merged request with the keys of the
    events it carries, so each event can still be given its own outcome. Groups come out in
    JavaScript object-key order (integer-like list ids first, ascending; then first appearance),
    as the reference emits them. Profiles are never de-duplicated.
    """
    merged: list[tuple[PlannedRequest, list[K]]] = []
    for _, members in _by_list(jobs, lambda job: planned.subscription_list_id(job[1])):
        for chunk in _chunks(members, limit):
            merged.append((_merge(chunk[0][1], [r for _, r in chunk]), [k for k, _ in chunk]))
    return merged


def batch_legacy(events: Planned) -> list[Batch]:
    """§12.4-§12.6: merged subscription jobs, each followed by its members' PATCHes (Q1 fixed);
    then every other event on its own."""
    subscribed = [(i, r) for i, r in events if r[-1].endpoint is Endpoint.SUBSCRIPTIONS]
    requests = dict(subscribed)
    batches = [
        Batch([job, *(r for i in keys for r in requests[i][:-1])], keys, True)
        for job, keys in merge_subscriptions([(i, r[-1]) for i, r in subscribed])
    ]
    batches.extend(Batch(r, [i], False) for i, r in events if i not in requests)
    return batches


def merge_list_jobs(
    jobs: Sequence[tuple[K, PlannedRequest]], limit: int = MAX_SUBSCRIPTIONS_PER_JOB
) -> list[tuple[PlannedRequest, list[K]]]:
    """§23.2: v2/v3 subscribe jobs, then unsubscribe jobs, each per list in JavaScript
    object-key order, in runs of at most ``limit`` events: one job holding all their profiles.

    The job names its list by the group key (a numeric id becomes text), as the reference does.
    """
    merged: list[tuple[PlannedRequest, list[K]]] = []
    for subscribe in (True, False):
        members = [job for job in jobs if planned.list_job_parts(job[1])[0] is subscribe]
        for list_key, group in _by_list(members, lambda job: planned.list_job_parts(job[1])[1]):
            for chunk in _chunks(group, limit):
                profiles = [p for _, job in chunk for p in planned.list_job_parts(job)[2]]
                job = planned.list_job(subscribe, list_key, profiles, chunk[0][1].revision)
                merged.append((job, [key for key, _ in chunk]))
    return merged


def merge_jobs(
    jobs: Sequence[tuple[K, PlannedRequest]], limit: int = MAX_SUBSCRIPTIONS_PER_JOB
) -> list[tuple[PlannedRequest, list[K]]]:
    """List jobs of one revision merged per list: v1's subscriptions (§12.4) or v2/v3's
    subscribe and unsubscribe jobs (§23.2); delivery merges a batch's jobs this way."""
    imports = [job for job in jobs if job[1].revision.profile_import]
    legacy = [job for job in jobs if not job[1].revision.profile_import]
    return [*merge_subscriptions(legacy, limit), *merge_list_jobs(imports, limit)]


def batch_imports(events: Planned, limit: int = MAX_SUBSCRIPTIONS_PER_JOB) -> list[Batch]:
    """§23.2: each track or screen alone; per operation (subscribe, then unsubscribe), per list
    in first-seen order, per run of ``limit`` events: their profile-imports, in event order,
    then one job holding all their profiles (:func:`merge_list_jobs`); last, each identify
    without a job, batched alone.
    """
    batches: list[Batch] = []
    jobs: list[tuple[int, PlannedRequest]] = []
    imports: dict[int, list[PlannedRequest]] = {}
    plain: list[Batch] = []
    for index, requests in events:
        last = requests[-1]
        if last.endpoint is Endpoint.EVENTS:
            batches.append(Batch(requests, [index], False))
        elif last.endpoint is Endpoint.PROFILE_IMPORT:
            plain.append(Batch(requests, [index], True))
        else:
            jobs.append((index, last))
            imports[index] = requests[:-1]
    for job, keys in merge_list_jobs(jobs, limit):
        batches.append(Batch([*(r for i in keys for r in imports[i]), job], keys, True))
    return batches + plain


def _by_list(items: Sequence[T], list_id: Callable[[T], Any]) -> Iterator[tuple[str, list[T]]]:
    """``items`` grouped as lodash's ``groupBy`` groups them by list id: the key is the id as a
    JavaScript object key, and groups come out in that object's key order."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(_group_key(list_id(item)), []).append(item)
    for key in sorted(groups, key=_js_key_order(list(groups))):
        yield key, groups[key]


def _chunks(members: list[T], limit: int) -> Iterator[list[T]]:
    for start in range(0, len(members), limit):
        yield members[start : start + limit]


def _merge(first: PlannedRequest, requests: list[PlannedRequest]) -> PlannedRequest:
    subscriptions = [sub for request in requests for sub in planned.subscriptions_of(request)]
    data = first.body["data"]
    attributes = {**data["attributes"], "subscriptions": subscriptions}
    body = {"data": {**data, "attributes": attributes}}
    return PlannedRequest(first.method, first.path, body, revision=first.revision)


def _group_key(list_id: object) -> str:
    """``String(listId)`` as an object key; an absent list (v1 only) is ``"undefined"``."""
    return "undefined" if list_id is None else js_string(list_id)


def _js_key_order(first_seen: list[str]) -> Callable[[str], tuple[int, int]]:
    def order(key: str) -> tuple[int, int]:
        # ASCII digits only ("²".isdigit() is true); array indexes have at most 10 digits.
        is_index = key.isascii() and key.isdigit() and len(key) <= 10
        if is_index and (key == "0" or not key.startswith("0")) and int(key) < 2**32 - 1:
            return (0, int(key))
        return (1, first_seen.index(key))

    return order
