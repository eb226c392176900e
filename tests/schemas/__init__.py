"""JSON Schemas derived from Klaviyo's OpenAPI documents (see derive.py): revision 2023-02-22
here, 2024-10-15 and 2026-04-15 in folders of those names.

Each ``<Name>.json`` is a self-contained Draft 4 schema; ``operations.json`` names, for each
operation the service calls, the schema of its request body and of each answer status.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from jsonschema import Draft4Validator

SCHEMAS_DIR: Final = Path(__file__).resolve().parent


def load(file_name: str, revision: str | None = None) -> Any:
    """A file of revision 2023-02-22's schemas, or of ``revision``'s folder."""
    folder = SCHEMAS_DIR if revision is None else SCHEMAS_DIR / revision
    return json.loads((folder / file_name).read_text(encoding="utf-8"))


def validator(name: str, revision: str | None = None) -> Draft4Validator:
    """The validator of schema ``name``, refusing a file that is not a Draft 4 schema."""
    schema = load(f"{name}.json", revision)
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


def answer_schema(operation: str, status: int) -> str:
    """The schema the document declares for ``status`` answers of ``operation``.

    An exact status wins over its ``4XX``/``5XX`` range, as in OpenAPI.
    """
    responses: dict[str, str | None] = load("operations.json")[operation]["responses"]
    for key in (str(status), f"{status // 100}XX"):
        if key in responses:
            name = responses[key]
            if name is None:
                raise LookupError(f"{operation} declares no body for {key}")
            return name
    raise LookupError(f"{operation} declares no {status} answer")
