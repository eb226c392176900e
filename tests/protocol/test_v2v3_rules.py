"""The project's own apiVersion v2/v3 rules: one row per rule of docs/mapping.md §16-§24.

Rows live in ``tests/cases/v2v3/*.json`` (one file per area), in the conformance layout: the
config, the input (one message, or router jobs), and the whole expected output, compared on
method, endpoint, endpoint_path, all four headers and body (errors on status, message, category
and type). Each expected output is what the built reference (rudder-transformer c98d160) gave
for the input when the row was written (its ``checked`` field), with Part A applied (a
content-hash or text ``unique_id``, ``properties: {}``, ISO ``time``) and, in the rows that
name a ``fix_id``, that fix; such rows keep the reference's own output in ``reference``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import pytest

from klaviyo_destination.js import JsonObject
from klaviyo_destination.protocol import process, route
from tests.helpers.conformance import ScriptedLookup, error_of, from_envelope, unordered
from tests.helpers.tables import load_rows, table_params

ROWS_DIR: Final = Path(__file__).resolve().parents[1] / "cases" / "v2v3"
KEY: Final = "pk_test"
ROW_KEYS: Final = {"id", "why", "checked", "source", "config", "input", "expected"}
FIX_KEYS: Final = {"reference", "fix_id"}
KEBAB: Final = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

pytestmark = pytest.mark.contract


def config_of(row: JsonObject, item: JsonObject | None = None) -> JsonObject:
    config: JsonObject = (item or {}).get("destination_config") or row["config"]
    return {"privateApiKey": KEY, **config}


def destination(row: JsonObject, item: JsonObject | None = None) -> JsonObject:
    destination_id = (item or {}).get("destination_id", "dest-1")
    return {"ID": destination_id, "Name": "klaviyo", "Config": config_of(row, item)}


@pytest.mark.parametrize("path", sorted(ROWS_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_row_file_shape(path: Path) -> None:
    """Unique kebab ids, a reason citing docs/mapping.md, the reference check recorded."""
    found = load_rows(path)
    ids = [row["id"] for row in found]
    assert len(ids) == len(set(ids)), "duplicate row ids"
    for row in found:
        assert KEBAB.match(row["id"]), row["id"]
        assert set(row) in (ROW_KEYS, ROW_KEYS | FIX_KEYS), row["id"]
        assert "§" in row["why"], row["id"]
        assert row["checked"].startswith("reference c98d160"), row["id"]


@pytest.mark.anyio
@pytest.mark.parametrize("row", table_params(ROWS_DIR))
async def test_rule(row: JsonObject) -> None:
    if row["source"] == "processor":
        job = {
            "message": row["input"],
            "metadata": {"jobId": 1, "userId": "u1"},
            "destination": destination(row),
        }
        items = await process([job], ScriptedLookup([]))
        if len(items) == 1 and "output" not in items[0]:
            got: JsonObject = {"error": error_of(items[0])}
        else:
            got = {"requests": [from_envelope(item["output"]) for item in items]}
        assert got == row["expected"]
        return
    jobs = [
        {
            "message": item["message"],
            "metadata": {"jobId": item["job_id"], "userId": item["user_id"]},
            "destination": destination(row, item),
        }
        for item in row["input"]
    ]
    outputs = await route(jobs, ScriptedLookup([]))
    assert unordered([_router_output(o) for o in outputs]) == unordered(row["expected"]["outputs"])


def _router_output(output: JsonObject) -> JsonObject:
    job_ids = [m["jobId"] for m in output["metadata"]]
    if "batchedRequest" not in output:
        return {"job_ids": job_ids, "error": error_of(output)}
    raw = output["batchedRequest"]
    return {
        "job_ids": job_ids,
        "batched": output["batched"],
        "status": output["statusCode"],
        "requests": [from_envelope(r) for r in (raw if isinstance(raw, list) else [raw])],
    }
