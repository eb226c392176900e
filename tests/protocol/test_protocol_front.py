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
    a config with ``apiVersion: true`` is not the one with ``apiVersion: 1``."""
    jobs = [job(1), job(2), job(3), job(4), job(5)]
    jobs[1]["destination"]["Config"]["apiVersion"] = 1
    jobs[2]["destination"]["Config"]["apiVersion"] = True
    jobs[3]["destination"]["Config"]["apiVersion"] = True
    items = await process(jobs, ScriptedLookup([]))
    assert [item["metadata"]["jobId"] for item in items] == [1, 2, 3, 4, 5]
    assert [item["statusCode"] for item in items] == [200, 400, 400, 400, 200]
    assert [item.get("error") for item in items[1:4]] == [
        "Unsupported Klaviyo apiVersion: 1",
        "Unsupported Klaviyo apiVersion: True",
        "Unsupported Klaviyo apiVersion: True",
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


def test_a_subset_keeps_the_form_and_only_its_destinations() -> None:
    body = compact_processor([job(1, "d1"), job(2, "d2"), job(3, "d1")])
    parsed = processor_body(body, compacted=True, size=100, limits=LIMITS)
    subset = orjson.loads(parsed.subset([1]))
    assert [i["metadata"]["jobId"] for i in subset["input"]] == [2]
    assert list(subset["destinations"]) == ["d2"]
    assert list(subset["connections"]) == ["s1:d2"]
    plain = processor_body([job(1), job(2)], compacted=False, size=100, limits=LIMITS)
    assert orjson.loads(plain.subset([1])) == [job(2)]
    routed = router_body(
        {"input": [job(1), job(2)], "destType": "KLAVIYO"}, compacted=False, size=1, limits=LIMITS
    )
    assert orjson.loads(routed.subset([0])) == {"input": [job(1)], "destType": "KLAVIYO"}


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


# --- the split, in process --------------------------------------------------------------------


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


@pytest.mark.anyio
async def test_upstream_items_keep_input_order_and_strays_go_last(
    build: Build,
    upstream: respx.MockRouter,
) -> None:
    upstream.post("/v0/destinations/klaviyo").respond(
        200,
        json=[
            {"metadata": {"jobId": 99}, "statusCode": 200, "output": {"stray": True}},
            {"metadata": {"jobId": 3}, "statusCode": 200, "output": {"upstream": True}},
            {"metadata": {"jobId": 2}, "statusCode": 200, "output": {"upstream": True}},
        ],
        headers={"apiVersion": "2"},
    )
    jobs = [job(1), job(2, "d3", "v3"), job(3, "d3", "v3"), job(4)]
    async for client in _client(build, upstream):
        answer = await client.post("/v0/destinations/klaviyo", json=jobs)
    assert answer.status_code == 200
    assert [i["metadata"]["jobId"] for i in answer.json()] == [1, 2, 3, 4, 99]


@pytest.mark.anyio
async def test_without_upstream_v3_jobs_name_the_setting(
    build: Build, upstream: respx.MockRouter
) -> None:
    async for client in _client(build, None):
        answer = await client.post("/v0/destinations/klaviyo", json=[job(1), job(2, "d3", "v3")])
    first, second = answer.json()
    assert first["statusCode"] == 200
    assert second["statusCode"] == 400
    assert "RUDDER_TRANSFORMER_URL" in second["error"]
    assert not upstream.calls


@pytest.mark.anyio
async def test_a_retryable_upstream_answer_fails_the_whole_request(
    build: Build,
    upstream: respx.MockRouter,
) -> None:
    upstream.post("/v0/destinations/klaviyo").respond(429, text="slow down")
    async for client in _client(build, upstream):
        answer = await client.post("/v0/destinations/klaviyo", json=[job(1), job(2, "d3", "v3")])
    assert answer.status_code == 503  # rudder-server retries the batch; nothing is dropped
    assert answer.headers["apiVersion"] == "2"
    assert answer.json()["error"]["code"] == "upstream_unavailable"


@pytest.mark.anyio
async def test_a_get_we_do_not_serve_is_a_404_without_upstream(build: Build) -> None:
    async for client in _client(build, None):
        answer = await client.get("/v0/something")
    assert answer.status_code == 404
