"""The rudder-server front's pure parts: the features document, bodies plain and compacted, and
which jobs are served here; in process, with the upstream played by respx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import respx
from pydantic import SecretStr

from klaviyo_destination.errors import BadRequest
from klaviyo_destination.protocol import process
from klaviyo_destination.protocol.bodies import Limits, processor_body, router_body
from klaviyo_destination.protocol.features import merged_features, own_features
from klaviyo_destination.settings import Settings
from support.rudder_server import compact_processor
from tests.helpers.apps import Build, served
from tests.helpers.conformance import ScriptedLookup

LIMITS = Limits(max_depth=8, max_event_bytes=10_000)
UPSTREAM = "http://upstream.test"
KEY = "pk_front"


def job(job_id: int, destination_id: str = "d1", version: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"privateApiKey": KEY}
    if version is not None:
        config["apiVersion"] = version
    return {
        "message": {"type": "track", "event": "E", "userId": "u", "properties": {"n": job_id}},
        "metadata": {"jobId": job_id, "sourceId": "s1", "destinationId": destination_id},
        "destination": {"ID": destination_id, "Config": config},
        "connection": {"sourceId": "s1", "destinationId": destination_id},
    }


@pytest.mark.anyio
async def test_each_job_is_planned_with_its_own_config_even_when_equal_to_its_neighbours() -> None:
    """Jobs share a parsed config while their configs are equal; ``1 == True`` in Python, but
    a config with ``apiVersion: true`` is not the one with ``apiVersion: 1`` (each is named as
    the reference's JavaScript writes it)."""
    jobs = [job(1), job(2), job(3), job(4), job(5)]
    jobs[1]["destination"]["Config"]["apiVersion"] = 1
    jobs[2]["destination"]["Config"]["apiVersion"] = True
    jobs[3]["destination"]["Config"]["apiVersion"] = True
    items = await process(jobs, ScriptedLookup([]))
    assert [item["metadata"]["jobId"] for item in items] == [1, 2, 3, 4, 5]
    assert [item["statusCode"] for item in items] == [200, 400, 400, 400, 200]
    assert [item.get("error") for item in items[1:4]] == [
        "Unsupported Klaviyo apiVersion: 1",
        "Unsupported Klaviyo apiVersion: true",
        "Unsupported Klaviyo apiVersion: true",
    ]


# --- /features --------------------------------------------------------------------------------


def test_own_features_route_klaviyo_and_never_make_rudder_server_panic() -> None:
    document = own_features()
    assert document["routerTransform"] == {"KLAVIYO": True}
    assert document["upgradedToSourceTransformV2"] is True
    assert document["supportDestTransformCompactedPayloadV1"] is True


@pytest.mark.parametrize(
    ("upstream", "routed", "compacted"),
    [
        ({"routerTransform": {"HS": True}, "supportDestTransformCompactedPayloadV1": True},
         {"HS": True, "KLAVIYO": True}, True),
        ({"routerTransform": {"HS": True}}, {"HS": True, "KLAVIYO": True}, False),
        ({"routerTransform": {"KLAVIYO": False}, "supportDestTransformCompactedPayloadV1": False},
         {"KLAVIYO": True}, False),
        ({"routerTransform": "odd"}, {"KLAVIYO": True}, False),
    ],
    ids=["keeps-the-upstreams", "compaction-off-upstream", "klaviyo-is-ours", "odd-document"],
)  # fmt: skip
def test_merged_features(upstream: Any, routed: Any, compacted: bool) -> None:
    document = merged_features({**upstream, "upgradedToSourceTransformV2": True, "x": 1})
    assert document["routerTransform"] == routed
    assert document["supportDestTransformCompactedPayloadV1"] is compacted
    assert document["x"] == 1  # the rest of the upstream's document is kept


def test_no_upstream_document_gives_ours() -> None:
    assert merged_features(None) == own_features()


# --- bodies -----------------------------------------------------------------------------------


def test_a_compacted_body_gives_each_job_its_destination() -> None:
    body = compact_processor([job(1, "d1"), job(2, "d2"), job(3, "d1")])
    parsed = processor_body(body, compacted=True, size=100, limits=LIMITS)
    assert [j.destination["ID"] for j in parsed.jobs] == ["d1", "d2", "d1"]
    assert [j.job_id for j in parsed.jobs] == [1, 2, 3]


def test_a_router_body_reads_each_jobs_destination_plain_or_compacted() -> None:
    body = compact_processor([job(1, "d1"), job(2, "d2")])
    routed = router_body({**body, "destType": "KLAVIYO"}, compacted=True, size=1, limits=LIMITS)
    assert [j.destination["ID"] for j in routed.jobs] == ["d1", "d2"]
    plain = router_body({"input": [job(3, "d3")]}, compacted=False, size=1, limits=LIMITS)
    assert [j.destination["ID"] for j in plain.jobs] == ["d3"]
    assert router_body({"input": {}}, compacted=False, size=1, limits=LIMITS).jobs == []


@pytest.mark.parametrize(
    ("body", "field"),
    [([job(1)], "input"), ({"input": [job(1)]}, "destinations"), ({"input": {}}, "input")],
    ids=["array", "no-destinations", "input-not-array"],
)
def test_a_malformed_compacted_body_is_a_400_naming_the_field(body: Any, field: str) -> None:
    with pytest.raises(BadRequest) as caught:
        processor_body(body, compacted=True, size=1, limits=LIMITS)
    assert caught.value.field == field


def test_a_job_too_deep_or_too_large_is_marked_alone() -> None:
    deep, large, fine = job(1), job(2), job(3)
    deep["message"]["properties"]["d"] = [[[[[[[[[1]]]]]]]]]
    large["message"]["properties"]["pad"] = "x" * 20_000
    raw = orjson.dumps([deep, large, fine])
    parsed = processor_body(orjson.loads(raw), compacted=False, size=len(raw), limits=LIMITS)
    assert [j.error.status if j.error else None for j in parsed.jobs] == [400, 413, None]


# --- every Klaviyo job is served here, in process ---------------------------------------------


@pytest.fixture
def upstream() -> respx.MockRouter:
    return respx.MockRouter(base_url=UPSTREAM, assert_all_called=False)


async def _client(
    build: Build, upstream: respx.MockRouter | None
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        klaviyo_private_api_key=SecretStr(KEY),
        rudder_transformer_url=UPSTREAM if upstream is not None else None,
    )
    klaviyo = respx.MockRouter(assert_all_called=False)
    app = build(
        settings,
        transport=httpx.MockTransport(klaviyo.async_handler),
        upstream_transport=httpx.MockTransport(upstream.async_handler) if upstream else None,
    )
    async with served(app) as c:
        yield c


def _revisions(items: list[Any]) -> list[str]:
    return [item["output"]["headers"]["revision"] for item in items]


@pytest.mark.anyio
@pytest.mark.parametrize("with_upstream", [True, False], ids=["upstream-set", "no-upstream"])
async def test_every_api_version_is_served_here_and_never_upstream(
    build: Build, upstream: respx.MockRouter, with_upstream: bool
) -> None:
    """v2 and v3 jobs are mapped here like v1 ones, in input order, each at its revision;
    the upstream, set or not, is never asked (it answers 500 if it is)."""
    upstream.route().respond(500, text="must not be called")
    jobs = [job(1), job(2, "d3", "v3"), job(3, "d2", "v2"), job(4, "d1", "v1")]
    async for client in _client(build, upstream if with_upstream else None):
        answer = await client.post("/v0/destinations/klaviyo", json=jobs)
        routed = await client.post("/routerTransform", json={"input": jobs, "destType": "KLAVIYO"})
    assert answer.status_code == 200
    items = answer.json()
    assert [i["metadata"]["jobId"] for i in items] == [1, 2, 3, 4]
    assert _revisions(items) == ["2023-02-22", "2026-04-15", "2024-10-15", "2023-02-22"]
    outputs = routed.json()["output"]
    assert sorted(o["metadata"][0]["jobId"] for o in outputs) == [1, 2, 3, 4]
    assert {o["statusCode"] for o in outputs} == {200}
    assert not upstream.calls


@pytest.mark.anyio
async def test_a_get_we_do_not_serve_is_a_404_without_upstream(build: Build) -> None:
    async for client in _client(build, None):
        answer = await client.get("/v0/something")
    assert answer.status_code == 404
