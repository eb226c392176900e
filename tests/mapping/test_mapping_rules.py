"""The project's golden mapping rules: one row per mapping rule, each with its reason.

Rows live in ``tests/cases/*.json`` (one file per area). Their expected requests are written by
hand from the rules in ``docs/mapping.md`` (a row's ``why`` cites its section), never produced
by running the mapping. Each row is compared whole: equal as data, and equal as JSON text, so
key order (the reference's emitted order), ``0`` vs ``false`` and ``1000`` vs ``1000.0`` count.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from klaviyo_destination.errors import DestinationError
from klaviyo_destination.ingest import parse_config
from tests.helpers.planning import as_row, plan_or_raise
from tests.helpers.tables import Row, load_rows, table_params

CASES_DIR = Path(__file__).resolve().parents[1] / "cases"
KEBAB = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
ROW_KEYS = {"id", "why", "config", "event"}


def _as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@pytest.mark.parametrize("path", sorted(CASES_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_case_file_shape(path: Path) -> None:
    """Every row has a unique kebab id, a reason citing docs/mapping.md, and one outcome."""
    rows = load_rows(path)
    ids = [row["id"] for row in rows]
    assert len(ids) == len(set(ids)), "duplicate row ids"
    for row in rows:
        assert KEBAB.match(row["id"]), row["id"]
        assert set(row) in (ROW_KEYS | {"requests"}, ROW_KEYS | {"error"}), row["id"]
        assert "§" in row["why"] or re.search(r"\b(D\d|Q\d+)\b", row["why"]), row["id"]


@pytest.mark.parametrize("row", table_params(CASES_DIR))
def test_mapping_rule(row: Row) -> None:
    if "error" in row:
        with pytest.raises(DestinationError) as caught:
            plan_or_raise(row["event"], parse_config({"privateApiKey": "pk_test", **row["config"]}))
        error = caught.value
        assert {"message": error.message, "field": error.field, "status": error.status} == (
            row["error"]
        )
        return
    config = parse_config({"privateApiKey": "pk_test", **row["config"]})
    got = [as_row(request) for request in plan_or_raise(row["event"], config)]
    assert got == row["requests"]
    assert _as_json(got) == _as_json(row["requests"])
