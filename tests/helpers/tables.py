"""Golden tables: JSON files of rows (``{"id", "why", ...}``), one pytest param per row."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

Row = dict[str, Any]


def load_rows(path: Path) -> list[Row]:
    rows: list[Row] = json.loads(path.read_text(encoding="utf-8"))
    return rows


def table_params(folder: Path) -> list[Any]:
    """Every row of every ``*.json`` in ``folder``, with the id ``<file>/<row id>``."""
    return [
        pytest.param(row, id=f"{path.stem}/{row['id']}")
        for path in sorted(folder.glob("*.json"))
        for row in load_rows(path)
    ]
