"""The fault matrix (``support/fault_matrix/``) reduced to 200 events per fault.

The emulator and the service run as real servers on loopback (compose's commands), the service
tuned for speed (``FAST_SERVICE_ENV``). Each fault kind is injected into ~30% of the Klaviyo
requests while mixed batches are sent and the retryable events resent; the claim is that no
event is lost or stored twice and every permanent failure carries its reason.
``make reliability`` runs the full matrix (2,000 events per fault) and prints the table.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from support.events import generate
from support.fault_matrix.checking import MAPPING_CODES, Row
from support.fault_matrix.faults import FAULTS, Fault
from support.fault_matrix.report import problems, table
from support.fault_matrix.running import FAST_SERVICE_ENV, SEED, clients, run_fault
from support.servers import Servers, running

EVENTS_PER_FAULT: Final = 200


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    logs: Path = tmp_path_factory.mktemp("fault-matrix")
    with running(FAST_SERVICE_ENV, logs) as started:
        yield started


async def _row(servers: Servers, fault: Fault, index: int) -> Row:
    events = generate(EVENTS_PER_FAULT, seed=SEED + index, prefix=f"t{index}")
    async with clients(servers.service.url, servers.emulator.url, servers.auth) as (svc, ctl):
        return await run_fault(fault, events, service=svc, control=ctl, seed=SEED + index)


@pytest.mark.parametrize(("index", "fault"), list(enumerate(FAULTS)), ids=[f.name for f in FAULTS])
def test_nothing_is_lost_or_duplicated(servers: Servers, index: int, fault: Fault) -> None:
    row = asyncio.run(_row(servers, fault, index))

    report = f"\n{table([row])}\n{problems([row])}"
    assert (row.duplicated, row.lost) == (0, 0), report
    assert (row.wrong, row.no_reason) == (0, 0), report
    assert row.sent == EVENTS_PER_FAULT
    assert row.delivered + row.rejected == row.sent, report
    # Every run has events the mapping rejects; each is reported with the mapping's reason.
    assert MAPPING_CODES & set(row.reasons), report
    if fault.permanent:
        assert row.reasons["klaviyo_revision_retired (410)"] > 0, report
        assert "Klaviyo: Gone." in row.samples["klaviyo_revision_retired (410)"]
    if fault.injection in ("rate", "burst") and fault.per_batch is None:
        assert row.injected / row.klaviyo_requests > 0.2, report  # the faults did happen
    if fault.refused_subscriptions:  # both ways of refusing happened, each to its event only
        assert {"invalid_event", "klaviyo_rejected (400)"} <= set(row.reasons), report
