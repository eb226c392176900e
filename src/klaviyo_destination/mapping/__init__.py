"""Pure mapping: a typed event, a destination config and a revision in, planned requests out.

No I/O and no settings: what each event type becomes is described in docs/mapping.md. A
revision is data here: it picks its flow (the legacy path or the profile-import path, §16), and
the flow's builders write requests for that revision. One ``match`` dispatches on the event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Final, assert_never

from ..ingest.config import DestinationConfig
from ..ingest.events import Event, Group, Identify, Screen, Track
from ..klaviyo.facts import Revision
from ..planned import PlannedRequest
from . import group, identify, track
from .batching import Batch, Planned, batch_imports, batch_legacy, merge_jobs, merge_subscriptions

__all__ = ["Batch", "Flow", "Planned", "flow_of", "merge_jobs", "merge_subscriptions", "plan"]


@dataclass(frozen=True, slots=True)
class Flow:
    """How one family of revisions maps each event kind, and how a router chunk is batched."""

    identify: Callable[[Identify, DestinationConfig, Revision], list[PlannedRequest]]
    track: Callable[[Track | Screen, DestinationConfig, Revision], list[PlannedRequest]]
    group: Callable[[Group, DestinationConfig, Revision], list[PlannedRequest]]
    batch: Callable[[Planned], list[Batch]]
    #: the router passes already-transformed messages through (§23.1); v1 maps them (§12.3)
    pass_through: bool


#: v1 (2023-02-22): create-profile with 409 → PATCH, v1 subscriptions (§6-§9, §12)
LEGACY: Final = Flow(identify.plan, track.plan, group.plan, batch_legacy, pass_through=False)
#: v2 and v3: profile-import, subscribe and unsubscribe jobs, the newer event (§16-§23)
PROFILE_IMPORT: Final = Flow(
    identify.plan_import, track.plan_import, group.plan_import, batch_imports, pass_through=True
)


#: v2 and v3 in the webhook path: a profile's phone string is not checked while mapping, because
#: the phone rule settles it afterwards (``phones.py``, Part A 11; docs/mapping.md §13)
PROFILE_IMPORT_PHONES_SETTLED: Final = Flow(
    partial(identify.plan_import, phone_check=False),
    partial(track.plan_import, phone_check=False),
    group.plan_import,
    batch_imports,
    pass_through=True,
)


def flow_of(revision: Revision, *, phones_settled: bool = False) -> Flow:
    if not revision.profile_import:
        return LEGACY
    return PROFILE_IMPORT_PHONES_SETTLED if phones_settled else PROFILE_IMPORT


def plan(
    event: Event, config: DestinationConfig, revision: Revision, *, phones_settled: bool = False
) -> list[PlannedRequest]:
    """The Klaviyo requests for one validated event at ``revision``, in delivery order;
    ``phones_settled``: the caller applies the webhook path's phone rule to them."""
    flow = flow_of(revision, phones_settled=phones_settled)
    match event:
        case Identify():
            return flow.identify(event, config, revision)
        case Track() | Screen():
            return flow.track(event, config, revision)
        case Group():
            return flow.group(event, config, revision)
        case _:
            assert_never(event)
