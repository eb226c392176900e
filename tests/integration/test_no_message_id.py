"""Issue 15, item 3, over real sockets: events without a messageId, resent after connections
dropped once Klaviyo had applied them, are stored once each (their unique_id is a digest of the
event, docs/mapping.md D1)."""

from __future__ import annotations

from typing import Any

import httpx

from support.emulator_control import EmulatorControl


def _events(count: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "track",
            "event": "Signed Up",
            "userId": f"nomid-{i}",
            "properties": {"n": i},
            "context": {"traits": {"email": f"nomid-{i}@example.com"}},
            "timestamp": "2026-12-01T00:00:00.000Z",
        }
        for i in range(count)
    ]


def test_resends_after_drops_store_each_event_once(
    service: httpx.Client, emulator: EmulatorControl
) -> None:
    # The first 20 event requests are applied, then their connection is cut before the answer.
    emulator.fault(drop_connection=True, after_processing=True, count=20, path="/api/events")
    pending = _events(60)
    rounds = 0
    while pending and rounds < 20:  # the caller resends what came back failed, as told to
        rounds += 1
        results = service.post("/v1/events", json=pending).json()["results"]
        pending = [e for e, r in zip(pending, results, strict=True) if r["status"] == "failed"]
    assert pending == []
    # 20 were applied and then lost their answer, so the service sent them again: 80 in all ...
    assert len(emulator.requests("/api/events")) == 80
    stored = emulator.state()["events"]
    users = sorted(e["attributes"]["event_properties"]["n"] for e in stored)
    assert users == list(range(60))  # ... and still each event is stored once
