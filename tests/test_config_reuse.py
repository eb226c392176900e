"""A job's ``destination.Config`` parsed once and reused: within a request while the next job's
config is equal, and across requests by its JSON (``protocol/jobs.py``). Reuse must never give
one config another's meaning."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from klaviyo_destination.errors import ConfigurationError
from klaviyo_destination.ingest.config import parse_config
from klaviyo_destination.protocol import jobs
from klaviyo_destination.protocol.jobs import known_config

KEY = "pk_reuse"

#: configs that compare equal in Python (``1 == True == 1.0``) but are different JSON
LOOK_ALIKES: list[dict[str, Any]] = [
    {"privateApiKey": KEY, "listId": 1},
    {"privateApiKey": KEY, "listId": True},
    {"privateApiKey": KEY, "listId": 1.0},
    {"privateApiKey": KEY, "listId": "1"},
    {"privateApiKey": KEY, "flattenProperties": True},
    {"privateApiKey": KEY, "flattenProperties": 1},
]


@pytest.fixture(autouse=True)
def forget() -> None:
    jobs._KNOWN.clear()


@pytest.mark.parametrize("raw", LOOK_ALIKES, ids=repr)
def test_a_known_config_is_the_one_parse_config_gives(raw: dict[str, Any]) -> None:
    for other in LOOK_ALIKES:  # every look-alike known first
        with contextlib.suppress(ConfigurationError):
            known_config(other)
    try:
        expected: Any = parse_config(raw)
    except ConfigurationError as error:
        with pytest.raises(ConfigurationError, match=error.message):
            known_config(raw)
        return
    found = known_config(raw)
    assert found == expected
    assert {k: (v, type(v)) for k, v in found} == {k: (v, type(v)) for k, v in expected}


def test_a_config_seen_before_is_not_validated_again() -> None:
    raw = {"privateApiKey": KEY, "listId": "L1"}
    first = known_config(raw)
    assert known_config(dict(raw)) is first  # another dict, the same JSON
    assert known_config({**raw, "listId": "L2"}) is not first


def test_an_invalid_config_is_refused_every_time_and_never_kept() -> None:
    raw = {"privateApiKey": KEY, "listId": {"not": "a scalar"}}
    for _ in range(2):
        with pytest.raises(ConfigurationError, match="listId"):
            known_config(raw)
    assert jobs._KNOWN == {}


def test_the_store_is_bounded() -> None:
    for index in range(jobs._KNOWN_MAX + 10):
        known_config({"privateApiKey": KEY, "listId": f"L{index}"})
    assert len(jobs._KNOWN) <= jobs._KNOWN_MAX
