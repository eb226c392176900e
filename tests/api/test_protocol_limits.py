"""What one protocol request may cost (issue 27 A1) and what a job too deep to echo gets (A4).

A1: a request's jobs are counted before any is read (``MAX_PROTOCOL_JOBS``), and a router
destination larger than ``MAX_ECHOED_DESTINATION_BYTES`` is echoed with only what rudder-server
reads from an output, so that a destination shared by many compacted jobs does not multiply
into the answer. A4: a job whose metadata or destination nests too deep to echo (orjson writes
at most 255 levels) gets its own 400; its neighbours their normal outputs.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from klaviyo_destination.settings import Settings
from support.events import signed_up
from tests.helpers.apps import Build, served

KEY = "pk_limits"
PROCESSOR = "/v0/destinations/klaviyo"
ROUTER = "/routerTransform"
JSON = {"Content-Type": "application/json"}
COMPACTED = {**JSON, "X-Content-Format": "json+compactedv1"}
DESTINATION: dict[str, Any] = {
    "ID": "d1",
    "Name": "klaviyo prod",
    "WorkspaceID": "w1",
    "Enabled": True,
    "DestinationDefinition": {"ID": "def1", "Name": "KLAVIYO", "DisplayName": "Klaviyo"},
    "Config": {"privateApiKey": KEY},
}

pytestmark = pytest.mark.anyio


def _metadata(n: int, destination_id: str = "d1") -> dict[str, Any]:
    return {"jobId": n, "destinationId": destination_id, "userId": f"u{n}"}


def _job(n: int, destination: dict[str, Any] = DESTINATION, **metadata: Any) -> dict[str, Any]:
    return {
        "message": signed_up(f"m{n}"),
        "metadata": _metadata(n, destination["ID"]) | metadata,
        "destination": destination,
    }


def _compacted(jobs: list[dict[str, Any]]) -> dict[str, Any]:
    destinations = {job["destination"]["ID"]: job["destination"] for job in jobs}
    inputs = [{"message": job["message"], "metadata": job["metadata"]} for job in jobs]
    return {"input": inputs, "destinations": destinations, "connections": {}}


#: (route, headers, the body of ``jobs``) for every shape a protocol body comes in
SHAPES: dict[str, tuple[str, dict[str, str], Any]] = {
    "processor": (PROCESSOR, JSON, lambda jobs: jobs),
    "processor, compacted": (PROCESSOR, COMPACTED, _compacted),
    "router": (ROUTER, JSON, lambda jobs: {"destType": "klaviyo", "input": jobs}),
    "router, compacted": (
        ROUTER,
        COMPACTED,
        lambda jobs: {"destType": "KLAVIYO", **_compacted(jobs)},
    ),
}


def _statuses(path: str, answer: Any) -> dict[int, int]:
    """Each job's status in an answer (a job in several processor items has one status)."""
    if path == PROCESSOR:
        return {item["metadata"]["jobId"]: item["statusCode"] for item in answer}
    return {
        metadata["jobId"]: output["statusCode"]
        for output in answer["output"]
        for metadata in output["metadata"]
    }


@pytest.fixture
async def client(build: Build) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        klaviyo_private_api_key=SecretStr(KEY),
        max_protocol_jobs=5,
        max_echoed_destination_bytes=2048,
    )
    async with served(build(settings), "http://localhost") as c:
        yield c


# --- A1: jobs per request -----------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
async def test_a_request_holds_at_most_max_protocol_jobs(
    client: httpx.AsyncClient, shape: str
) -> None:
    path, headers, body = SHAPES[shape]
    jobs = [_job(n) for n in range(6)]
    response = await client.post(path, content=orjson.dumps(body(jobs[:5])), headers=headers)
    assert response.status_code == 200, response.text
    assert _statuses(path, response.json()) == dict.fromkeys(range(5), 200)

    response = await client.post(path, content=orjson.dumps(body(jobs)), headers=headers)
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert "at most 5 jobs (MAX_PROTOCOL_JOBS), not 6" in error["message"]
    assert error["field"] == ("body" if shape == "processor" else "input")


@pytest.mark.parametrize("path", [PROCESSOR, ROUTER])
async def test_the_issues_million_zeros_cost_a_small_413(build: Build, path: str) -> None:
    """The issue's 1,979-byte gzip body: a JSON array of a million ``0``s (283 MB answered)."""
    body = gzip.compress(b"[" + b",".join([b"0"] * 1_000_000) + b"]", 9)
    if path == ROUTER:
        body = gzip.compress(b'{"input":[' + b",".join([b"0"] * 1_000_000) + b"]}", 9)
    assert len(body) < 4096
    headers = {**JSON, "Content-Encoding": "gzip"}
    async with served(build(Settings(klaviyo_private_api_key=SecretStr(KEY)))) as client:
        response = await client.post(path, content=body, headers=headers)
    assert response.status_code == 413
    assert "at most 1000 jobs (MAX_PROTOCOL_JOBS), not 1000000" in response.text
    assert len(response.content) < 1000


# --- A1: the destination echoed in router outputs ---------------------------------------------

#: What rudder-server reads from an output's destination, all an oversized one keeps.
IDS = {key: value for key, value in DESTINATION.items() if key != "Config"}


def _padded(size: int) -> dict[str, Any]:
    """DESTINATION, its Config padded to about ``size`` bytes of JSON."""
    return DESTINATION | {"Config": DESTINATION["Config"] | {"pad": "x" * size}}


#: (the destination, how outputs echo it); the limit is 2,048 bytes
ECHOES = {
    "small: whole": (DESTINATION, DESTINATION),
    "just under the limit: whole": (_padded(1700), _padded(1700)),
    "over the limit: ids and names": (_padded(200_000), IDS),
    "a huge name too: nothing": (_padded(9000) | {"Name": "n" * 3000}, {}),
}


@pytest.mark.parametrize("case", ECHOES)
@pytest.mark.parametrize("compacted", [False, True], ids=["plain", "compacted"])
async def test_router_outputs_echo_a_large_destination_by_its_ids(
    client: httpx.AsyncClient, case: str, compacted: bool
) -> None:
    """Successes and failures alike; each job still in exactly one output."""
    destination, echoed = ECHOES[case]
    jobs = [_job(n, destination) for n in range(5)]
    jobs[2]["message"] = {"type": "page", "messageId": "m2"}  # refused: an error output
    body = _compacted(jobs) if compacted else {"input": jobs}
    raw = orjson.dumps({"destType": "klaviyo", **body})
    response = await client.post(ROUTER, content=raw, headers=COMPACTED if compacted else JSON)
    assert response.status_code == 200, response.text
    outputs = response.json()["output"]
    assert _statuses(ROUTER, response.json()) == {0: 200, 1: 200, 2: 400, 3: 200, 4: 200}
    assert all(output["destination"] == echoed for output in outputs)
    if compacted:  # the destination once in, once per output out: bounded by the limit
        assert len(response.content) < len(raw) + 5 * 2048 + 5 * 1024


async def test_a_group_with_a_bad_config_echoes_a_large_destination_by_its_ids(
    client: httpx.AsyncClient,
) -> None:
    destination = _padded(200_000)
    destination["Config"]["apiVersion"] = "v9"  # served by no revision: the group's 400
    body = {"destType": "klaviyo", **_compacted([_job(n, destination) for n in range(5)])}
    response = await client.post(ROUTER, content=orjson.dumps(body), headers=COMPACTED)
    assert response.status_code == 200, response.text
    [output] = response.json()["output"]
    assert output["statusCode"] == 400
    assert output["destination"] == IDS


# --- A4: metadata or a destination too deep to echo --------------------------------------------


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


#: (the part made deep, its depth, the job's error); json writes them (orjson stops at 255)
DEEP = {
    "metadata 254 levels": ("metadata", 254, "metadata is nested deeper than 64 levels"),
    "metadata 300 levels": ("metadata", 300, "metadata is nested deeper than 64 levels"),
    "metadata 65 levels": ("metadata", 65, "metadata is nested deeper than 64 levels"),
    "destination Config 255 levels": (
        "destination",
        255,
        "destination is nested deeper than 64 levels",
    ),
}


@pytest.mark.parametrize("case", DEEP)
@pytest.mark.parametrize("shape", SHAPES)
async def test_a_job_too_deep_to_echo_gets_its_own_400(
    client: httpx.AsyncClient, shape: str, case: str
) -> None:
    part, depth, reason = DEEP[case]
    path, headers, body = SHAPES[shape]
    if part == "metadata":
        deep = _job(2, trace=_nested(depth))
    else:
        config = DESTINATION["Config"] | {"deep": _nested(depth)}
        deep = _job(2, DESTINATION | {"ID": "d2", "Config": config})
    jobs = [_job(1), deep, _job(3)]
    response = await client.post(path, content=json.dumps(body(jobs)), headers=headers)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert _statuses(path, answer) == {1: 200, 2: 400, 3: 200}
    items = answer if path == PROCESSOR else answer["output"]
    [failed] = [item for item in items if item["statusCode"] == 400]
    assert failed["error"] == reason
    metadata = failed["metadata"] if path == PROCESSOR else failed["metadata"][0]
    assert metadata == _metadata(2, deep["destination"]["ID"])  # all but the deep part


@pytest.mark.parametrize("path", [PROCESSOR, ROUTER])
async def test_a_max_json_depth_past_what_orjson_writes_is_not_a_500(
    build: Build, path: str
) -> None:
    """MAX_JSON_DEPTH=1000: the protocol routes still hold a job's parts to 250 levels."""
    settings = Settings(klaviyo_private_api_key=SecretStr(KEY), max_json_depth=1000)
    jobs = [_job(1), _job(2, trace=_nested(254)), _job(3)]
    _, _, body = SHAPES["processor" if path == PROCESSOR else "router"]
    async with served(build(settings)) as client:
        response = await client.post(path, content=json.dumps(body(jobs)), headers=JSON)
    assert response.status_code == 200, response.text
    assert _statuses(path, response.json()) == {1: 200, 2: 400, 3: 200}
