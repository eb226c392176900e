"""The service behind rudder-server, played by a client that does what rudder-server's Go code
does (``support/rudder_server.py`` cites the files), against the real service process, the
emulator, and a stand-in upstream rudder-transformer — all on 127.0.0.1.

Each check is one that rudder-server itself makes: the features document parses without a
panic, every 200 carries ``apiVersion: 2``, every job comes back exactly once, and what is not
Klaviyo reaches the upstream unchanged (Klaviyo at every apiVersion is served here).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from support.emulator_control import EmulatorControl
from support.rudder_server import DEFAULT_FEATURES, Panic, RudderServer
from support.servers import (
    Server,
    start_service,
    start_service_with,
    start_upstream_transformer,
)

Json = Any
KEY = "pk_rudder_server_test"


# --- servers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rudder-server")


def folder(logs: Path, name: str) -> Path:
    (logs / name).mkdir(exist_ok=True)
    return logs / name


@pytest.fixture(scope="module")
def upstream_server(logs: Path) -> Iterator[Server]:
    with start_upstream_transformer(logs) as server:
        yield server


@pytest.fixture(scope="module")
def front(emulator_server: Server, upstream_server: Server, logs: Path) -> Iterator[Server]:
    """The service with an upstream transformer."""
    env = {"RUDDER_TRANSFORMER_URL": upstream_server.url}
    with start_service(emulator_server.url, folder(logs, "with-upstream"), env) as server:
        yield server


@pytest.fixture(scope="module")
def alone(emulator_server: Server, logs: Path) -> Iterator[Server]:
    """The service without an upstream transformer."""
    with start_service(emulator_server.url, folder(logs, "alone")) as server:
        yield server


@pytest.fixture
def upstream(upstream_server: Server) -> Iterator[httpx.Client]:
    """A client of the stand-in upstream, its recordings and queued failures cleared."""
    with httpx.Client(base_url=upstream_server.url, timeout=10) as client:
        client.delete("/__requests")
        yield client


@pytest.fixture
def upstream_client(upstream: httpx.Client) -> httpx.Client:
    return upstream


def received(upstream: httpx.Client) -> list[Json]:
    requests: list[Json] = upstream.get("/__requests").json()
    return requests


@pytest.fixture
def rudder(front: Server) -> Iterator[RudderServer]:
    client = RudderServer(front.url)
    client.fetch_features()
    yield client
    client.close()


# --- rudder-server's objects ------------------------------------------------------------------

DESTINATIONS = {
    "d1": {"privateApiKey": KEY, "listId": "L1", "consent": ["email"]},
    "d3": {"privateApiKey": KEY, "apiVersion": "v3", "listId": "L3"},
    "d2": {"privateApiKey": KEY, "apiVersion": "v2"},
}


def destination(destination_id: str, name: str = "KLAVIYO") -> Json:
    return {
        "ID": destination_id,
        "Name": f"{name.lower()}-{destination_id}",
        "Config": DESTINATIONS.get(destination_id, {}),
        "DestinationDefinition": {"Name": name},
        "Enabled": True,
    }


def message(job_id: int, kind: str = "track") -> Json:
    base = {"userId": f"user-{job_id}", "messageId": f"m-{job_id}", "type": kind}
    if kind == "identify":
        return base | {"traits": {"email": f"u{job_id}@example.com", "plan": "pro"}}
    return base | {
        "event": "Order Completed",
        "properties": {"revenue": 10, "n": job_id},
        "context": {"traits": {"email": f"u{job_id}@example.com"}},
    }


def metadata(job_id: int, destination_id: str) -> Json:
    return {
        "jobId": job_id,
        "userId": f"user-{job_id}",
        "sourceId": "src1",
        "destinationId": destination_id,
        "workspaceId": "ws1",
        "messageId": f"m-{job_id}",
    }


def event(
    job_id: int, destination_id: str = "d1", kind: str = "track", name: str = "KLAVIYO"
) -> Json:
    """A processor ``TransformerEvent``."""
    return {
        "message": message(job_id, kind),
        "metadata": metadata(job_id, destination_id),
        "destination": destination(destination_id, name),
        "connection": {"sourceId": "src1", "destinationId": destination_id, "enabled": True},
        "libraries": None,
        "credentials": None,
    }


def router_job(job_id: int, destination_id: str = "d1", kind: str = "track") -> Json:
    """A router ``RouterJobT``."""
    job = event(job_id, destination_id, kind)
    return {k: job[k] for k in ("message", "metadata", "destination", "connection")}


def job_ids(items: list[Json]) -> list[int]:
    ids: list[int] = []
    for item in items:
        found = item["metadata"]
        ids.extend(m["jobId"] for m in (found if isinstance(found, list) else [found]))
    return ids


def use_compaction(client: RudderServer, compacted: bool) -> None:
    client.features.document["supportDestTransformCompactedPayloadV1"] = compacted


# --- /features ---------------------------------------------------------------------------------


def test_features_route_klaviyo_here_and_keep_the_upstreams(front: Server) -> None:
    client = RudderServer(front.url)
    features = client.fetch_features()  # a missing source-transform flag would panic here
    assert features.router_transform("KLAVIYO")
    assert features.router_transform("HS")  # the upstream's own, kept
    assert features.compacted
    assert features.document["regulations"] == ["AM"]
    assert features.source_transformer_version() == "v2"
    client.close()


def test_features_without_upstream_advertise_only_klaviyo(alone: Server) -> None:
    client = RudderServer(alone.url)
    features = client.fetch_features()
    assert features.router_transform("KLAVIYO")
    assert not features.router_transform("HS")
    assert features.compacted
    assert features.document["regulations"] == []
    client.close()


# --- the processor ----------------------------------------------------------------------------


@pytest.mark.parametrize("compacted", [False, True], ids=["plain", "compacted"])
def test_processor_serves_klaviyo_v1(
    rudder: RudderServer, emulator: EmulatorControl, emulator_server: Server, compacted: bool
) -> None:
    use_compaction(rudder, compacted)
    events = [event(1, kind="identify"), event(2), event(3, kind="identify")]
    response = rudder.processor_transform(events, "KLAVIYO")  # checks apiVersion on the 200
    assert response.failed == []
    assert job_ids(response.events) == [1, 2, 3]
    # rudder-server asks for filter codes: a profile just created is marked 299 (already there)
    assert [i["output"].get("statusCode") for i in response.events] == [299, None, 299]
    for item in response.events:
        output = item["output"]
        assert output["endpoint"].startswith(emulator_server.url + "/api/")
        assert output["headers"]["Authorization"] == f"Klaviyo-API-Key {KEY}"
    # identify's look-up went to the emulator, with the job's own key
    assert len(emulator.requests("/api/profiles")) == 2


def revisions(outputs: list[Json]) -> dict[int, str]:
    """The ``revision`` header of each job's requests, by job id."""
    found: dict[int, str] = {}
    for output in outputs:
        raw = output.get("output") or output["batchedRequest"]
        for envelope in raw if isinstance(raw, list) else [raw]:
            found.update((i, envelope["headers"]["revision"]) for i in job_ids([output]))
    return found


@pytest.mark.parametrize("compacted", [False, True], ids=["plain", "compacted"])
def test_processor_serves_every_api_version_here(
    rudder: RudderServer, upstream: httpx.Client, compacted: bool
) -> None:
    use_compaction(rudder, compacted)
    events = [event(1, "d1"), event(2, "d3"), event(3, "d1"), event(4, "d2", "identify")]
    response = rudder.processor_transform(events, "KLAVIYO")
    assert response.failed == []
    assert job_ids(response.events) == [1, 2, 3, 4]  # input order
    assert revisions(response.events) == {
        1: "2023-02-22",
        2: "2026-04-15",
        3: "2023-02-22",
        4: "2024-10-15",
    }
    [identify] = [i["output"] for i in response.events if i["metadata"]["jobId"] == 4]
    assert identify["endpointPath"] == "/api/profile-import"
    assert received(upstream) == []


def test_processor_serves_v3_while_the_upstream_fails(
    rudder: RudderServer, upstream: httpx.Client
) -> None:
    """Klaviyo's jobs never wait for the upstream: a failing one changes nothing for them."""
    upstream.post("/__fail", json={"status": 503, "count": 2})
    response = rudder.processor_transform([event(1, "d1"), event(2, "d3")], "KLAVIYO")
    assert response.failed == []
    assert job_ids(response.events) == [1, 2]
    assert received(upstream) == []


def test_other_destinations_pass_through_unchanged(
    rudder: RudderServer, front: Server, upstream: httpx.Client
) -> None:
    events = [event(1, "h1", name="HS"), event(2, "h1", name="HS")]
    response = rudder.processor_transform(events, "HS")
    assert [i["output"]["destination"] for i in response.events] == ["hs", "hs"]
    sent = orjson.dumps(events)
    answer = httpx.post(
        front.url + "/v0/destinations/hs?x=1",
        content=sent,
        headers={"Content-Type": "application/json", "X-Feature-Filter-Code": "?1"},
    )
    assert answer.headers["x-upstream"] == "stand-in"  # the upstream's answer, headers included
    assert answer.headers["apiversion"] == "2"
    forwarded = received(upstream)[-1]
    assert (forwarded["path"], forwarded["query"]) == ("/v0/destinations/hs", "x=1")
    assert forwarded["body"] == sent.decode()  # byte for byte
    headers = dict(forwarded["headers"])
    assert headers["x-feature-filter-code"] == "?1"
    assert headers["host"] != httpx.URL(front.url).netloc.decode()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/customTransform"),
        ("POST", "/v0/validate"),
        ("POST", "/v2/sources/webhook?writeKey=w"),
        ("POST", "/deleteUsers"),
        ("POST", "/v1/destinations/hs/proxy"),
        ("GET", "/test-router/v0/health?id=1"),
    ],
)
def test_every_other_transformer_request_reaches_the_upstream(
    front: Server, upstream: httpx.Client, method: str, path: str
) -> None:
    content = b'{"payload": [1, 2, 3]}' if method == "POST" else None
    answer = httpx.request(method, front.url + path, content=content)
    assert answer.status_code == 200
    assert answer.headers["x-upstream"] == "stand-in"
    url = httpx.URL(path)
    assert answer.json()["echo"] == url.path
    forwarded = received(upstream)[-1]
    assert (forwarded["method"], forwarded["path"]) == (method, url.path)
    assert forwarded["query"] == url.query.decode()
    assert forwarded["body"] == (content or b"").decode()


def test_an_unreachable_upstream_is_a_5xx_rudder_server_retries(
    emulator_server: Server, logs: Path
) -> None:
    env = {"RUDDER_TRANSFORMER_URL": "http://127.0.0.1:9"}  # nothing listens on port 9
    with start_service(emulator_server.url, folder(logs, "down"), env) as server:
        answer = httpx.post(server.url + "/customTransform", json=[])
        assert answer.status_code == 502
        assert answer.json()["error"]["code"] == "upstream_unavailable"
        # Until the upstream has answered /features, a 5xx: rudder-server keeps what it had (its
        # defaults at start: compaction off), never compacted bodies the upstream may not read.
        answer = httpx.get(server.url + "/features")
        assert answer.status_code == 502
        assert answer.json()["error"]["code"] == "upstream_unavailable"
        assert "RUDDER_TRANSFORMER_URL" in answer.json()["error"]["message"]
        client = RudderServer(server.url, max_retry=1, retry_sleep=0.01)
        features = client.fetch_features()  # no panic
        assert features.document == DEFAULT_FEATURES
        assert not features.compacted
        with pytest.raises(Panic):
            client.processor_transform([event(1, "h1", name="HS")], "HS")
        client.close()


def test_without_upstream_other_requests_get_a_clear_501(alone: Server) -> None:
    answer = httpx.post(alone.url + "/v0/destinations/hs", json=[event(1, "h1", name="HS")])
    assert answer.status_code == 501
    error = answer.json()["error"]
    assert error["code"] == "not_served"
    assert "RUDDER_TRANSFORMER_URL" in error["message"]
    assert "RUDDER_TRANSFORMER_URL" in alone.output()  # and an ERROR line says so
    client = RudderServer(alone.url, max_retry=1, retry_sleep=0.01)
    with pytest.raises(Panic):  # retried, never dropped: rudder-server keeps the events
        client.processor_transform([event(1, "h1", name="HS")], "HS")
    client.close()


def test_large_batches_and_one_bad_event(rudder: RudderServer) -> None:
    """100 events of 60 kB (6 MB) are one ordinary request; one event nested too deep fails
    alone."""
    events = [event(i) for i in range(1, 101)]
    for item in events:
        item["message"]["properties"]["pad"] = "x" * 60_000
    deep: Json = 1
    for _ in range(100):
        deep = [deep]
    events[49]["message"]["properties"]["deep"] = deep
    response = rudder.processor_transform(events, "KLAVIYO")
    assert len(response.events) == 99
    [failed] = response.failed
    assert (failed["metadata"]["jobId"], failed["statusCode"]) == (50, 400)
    assert "deeper" in failed["error"]


# --- the router -------------------------------------------------------------------------------


@pytest.mark.parametrize("compacted", [False, True], ids=["plain", "compacted"])
def test_router_serves_every_api_version_here(
    rudder: RudderServer, upstream_client: httpx.Client, compacted: bool
) -> None:
    use_compaction(rudder, compacted)
    jobs = [router_job(1, "d1", "identify"), router_job(2, "d3"), router_job(3, "d1")]
    jobs.append(router_job(4, "d2", "identify"))
    outputs = rudder.router_transform(jobs, "KLAVIYO")  # accounting checked: every id once
    assert all(o["statusCode"] in (200, 299) for o in outputs), outputs
    assert sorted(job_ids(outputs)) == [1, 2, 3, 4]
    assert revisions(outputs) == {
        1: "2023-02-22",
        2: "2026-04-15",
        3: "2023-02-22",
        4: "2024-10-15",
    }
    assert received(upstream_client) == []


def test_router_for_another_destination_passes_through(
    rudder: RudderServer, upstream: httpx.Client
) -> None:
    jobs = [router_job(1, "h1"), router_job(2, "h1")]
    for job in jobs:
        job["destination"] = destination("h1", "HS")
    outputs = rudder.router_transform(jobs, "HS")
    assert sorted(job_ids(outputs)) == [1, 2]
    assert all(o["batchedRequest"] == {"upstream": True, "destType": "HS"} for o in outputs)
    assert received(upstream)[-1]["path"] == "/routerTransform"


def test_router_large_batch(rudder: RudderServer) -> None:
    jobs = [router_job(i) for i in range(1, 101)]
    for job in jobs:
        job["message"]["properties"]["pad"] = "x" * 60_000
    outputs = rudder.router_transform(jobs, "KLAVIYO")
    assert sorted(job_ids(outputs)) == list(range(1, 101))
    assert {o["statusCode"] for o in outputs} == {200}


# --- where the answers point ------------------------------------------------------------------


def test_embedded_mode_answers_point_at_the_emulator_on_the_service(logs: Path) -> None:
    with start_service_with({}, folder(logs, "embedded")) as server:
        ready = httpx.get(server.url + "/ready").json()
        assert "nothing reaches Klaviyo" in ready["klaviyo"]
        assert "nothing reaches Klaviyo" in server.output()
        client = RudderServer(server.url)
        client.fetch_features()
        response = client.processor_transform([event(1, kind="identify")], "KLAVIYO")
        patch = response.events[0]["output"]
        assert patch["endpoint"].startswith(server.url + "/emulator/api/profiles/")
        # rudder-server can deliver what it was given: the URL reaches the embedded emulator
        delivered = httpx.request(
            patch["method"],
            patch["endpoint"],
            headers=patch["headers"],
            content=orjson.dumps(patch["body"]["JSON"]),
        )
        assert delivered.status_code == 200
        client.close()


def test_a_set_base_url_is_where_every_request_goes(
    emulator_server: Server, emulator: EmulatorControl, logs: Path
) -> None:
    """No key but KLAVIYO_BASE_URL: no embedded emulator; look-ups reach that URL."""
    env = {"KLAVIYO_BASE_URL": emulator_server.url}
    with start_service_with(env, folder(logs, "base-url")) as server:
        assert httpx.get(server.url + "/ready").json()["klaviyo"] == emulator_server.url
        client = RudderServer(server.url)
        client.fetch_features()
        response = client.processor_transform([event(1, kind="identify")], "KLAVIYO")
        assert response.events[0]["output"]["endpoint"].startswith(emulator_server.url)
        assert len(emulator.requests("/api/profiles")) == 1
        client.close()
