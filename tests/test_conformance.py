"""Every reference case through the mapping (plan + the identify look-up), compared whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from klaviyo_destination.protocol import process, route

from .conformance import (
    ScriptedLookup,
    case_files,
    expected_of,
    load,
    lookups_of,
    normalise_processor,
    normalise_router,
    processor_jobs,
    router_jobs,
    unordered,
)

pytestmark = pytest.mark.contract


@pytest.mark.anyio
@pytest.mark.parametrize("path", case_files())
async def test_reference_case(path: Path) -> None:
    case = load(path)
    expected = expected_of(case)
    lookup = ScriptedLookup(case.get("klaviyo_responses", []))
    filter_code = bool(case.get("request_features", {}).get("filter-code"))
    if case["source"] == "processor":
        items = await process(processor_jobs(case), lookup, filter_code=filter_code)
        got = normalise_processor(items, case["input"])
        want = {k: v for k, v in expected.items() if k != "lookups"}
        assert got == want
    else:
        outputs = await route(router_jobs(case), lookup, filter_code=filter_code)
        messages = {item["job_id"]: item["message"] for item in case["input"]}
        assert unordered(normalise_router(outputs, messages)) == unordered(expected["outputs"])
    assert lookups_of(lookup.calls) == expected.get("lookups", [])
