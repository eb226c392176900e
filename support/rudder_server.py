"""rudder-server's transformer client, as its Go code behaves, for contract tests.

Written from rudderlabs/rudder-server v1.83 (commit f2655fb), and checking what that code checks:

* ``services/transformer/features.go``, ``features_impl.go``: ``GET {DEST_TRANSFORM_URL}/features``
  at start and every 10 s; 200 replaces the document, 404 restores the built-in defaults, any
  other answer keeps the previous one; ``routerTransform.<DEST>`` and
  ``supportDestTransformCompactedPayloadV1`` are read as JSON booleans (gjson ``.Bool()``); a
  document with neither ``upgradedToSourceTransformV2`` nor ``supportSourceTransformV1`` panics.
* ``processor/internal/transformer/destination_transformer/destination_transformer.go``:
  ``POST {url}/v0/destinations/{lower(destType)}`` in batches of 100, plain (a JSON array of
  ``{message, metadata, destination, connection, ...}``) or compacted (``X-Content-Format:
  json+compactedv1``, ``{input, destinations, connections}``), with ``X-Feature-Gzip-Support``
  and ``X-Feature-Filter-Code``; an answer that ``IsJobTerminated`` rejects (408, 429, 5xx) is
  retried, then the processor panics; a 200 without ``apiVersion: 2`` panics; a 200 is a list
  of items whose ``statusCode`` 200 marks success; any other final status fails every event of
  the batch with that status and the body as the error.
* ``router/transformer/transformer.go``: ``POST {url}/routerTransform`` with ``{input,
  destType}`` (compacted: plus ``destinations`` and ``connections``); transport errors are
  retried, then it panics; a 200 without ``apiVersion: 2`` panics; the ``output`` must hold
  every input job id exactly once, with no empty metadata array and no unknown id, or every job
  is marked 500; a non-200 marks every job 500 (404 stays 404) with the body as the error.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import orjson

Json = Any
SUPPORTED_API_VERSION: Final = 2
COMPACTED: Final = "json+compactedv1"
#: ``defaultTransformerFeatures`` in features.go.
DEFAULT_FEATURES: Final = {
    "routerTransform": {"MARKETO": True, "HS": True},
    "regulations": ["AM"],
    "supportSourceTransformV1": True,
    "upgradedToSourceTransformV2": True,
}
BATCH_SIZE: Final = 100


class Panic(RuntimeError):
    """Where rudder-server would panic (and its process restart, crash-looping)."""


@dataclass
class Features:
    document: Json = field(default_factory=lambda: dict(DEFAULT_FEATURES))

    def router_transform(self, dest_type: str) -> bool:
        routed = self.document.get("routerTransform")
        return isinstance(routed, dict) and routed.get(dest_type) is True

    @property
    def compacted(self) -> bool:
        return self.document.get("supportDestTransformCompactedPayloadV1") is True

    def source_transformer_version(self) -> str:
        if self.document.get("upgradedToSourceTransformV2") is True:
            return "v2"
        if self.document.get("supportSourceTransformV1") is True:
            return "v1"
        raise Panic("Webhook source v0 version has been deprecated. This is a breaking change.")


@dataclass
class Response:
    """The processor's split of a transform: successes and failures (``types.Response``)."""

    events: list[Json]
    failed: list[Json]


def is_job_terminated(status: int) -> bool:
    """``IsJobTerminated`` in processor/internal/transformer/utils.go."""
    if status in (429, 408):
        return False
    return 200 <= status < 500


def _check_api_version(response: httpx.Response, url: str) -> None:
    received = response.headers.get("apiVersion", "")
    if received != str(SUPPORTED_API_VERSION):
        raise Panic(
            f"incompatible transformer version: Expected: {SUPPORTED_API_VERSION} "
            f"Received: {received!r}, URL: {url}"
        )


class RudderServer:
    """The three transformer clients of rudder-server, pointed at ``DEST_TRANSFORM_URL``."""

    def __init__(self, url: str, *, max_retry: int = 3, retry_sleep: float = 0.05) -> None:
        self.url = url.rstrip("/")
        self.features = Features()
        self.max_retry = max_retry
        self.retry_sleep = retry_sleep
        self.http = httpx.Client(timeout=60)

    def close(self) -> None:
        self.http.close()

    # --- features -------------------------------------------------------------------------------

    def fetch_features(self) -> Features:
        response = self.http.get(self.url + "/features")
        if response.status_code == 200:
            self.features = Features(orjson.loads(response.content))
            self.features.source_transformer_version()  # panics on a deprecated transformer
        elif response.status_code == 404:
            self.features = Features()
        return self.features

    # --- processor --------------------------------------------------------------------------------

    def processor_transform(self, events: list[Json], dest_type: str) -> Response:
        """Destination transformation of ``events`` (``TransformerEvent`` objects)."""
        compacted = self.features.compacted
        url = f"{self.url}/v0/destinations/{dest_type.lower()}"
        out = Response([], [])
        for start in range(0, len(events), BATCH_SIZE):
            batch = events[start : start + BATCH_SIZE]
            for item in self._send_processor_batch(url, batch, compacted=compacted):
                (out.events if item.get("statusCode") == 200 else out.failed).append(item)
        return out

    def _send_processor_batch(self, url: str, batch: list[Json], *, compacted: bool) -> list[Json]:
        body = compact_processor(batch) if compacted else batch
        headers = self._headers(compacted)
        response = self._post_until_terminal(url, orjson.dumps(body), headers)
        if response.status_code == 200:
            _check_api_version(response, url)
            items: list[Json] = orjson.loads(response.content)
            return items
        return [
            {"statusCode": response.status_code, "error": response.text, "metadata": e["metadata"]}
            for e in batch
        ]

    def _post_until_terminal(
        self, url: str, body: bytes, headers: dict[str, str]
    ) -> httpx.Response:
        for _ in range(self.max_retry + 1):
            try:
                response = self.http.post(url, content=body, headers=headers)
            except httpx.TransportError:
                time.sleep(self.retry_sleep)
                continue
            if is_job_terminated(response.status_code):
                return response
            time.sleep(self.retry_sleep)
        raise Panic(f"transformer request failed after {self.max_retry} retries: {url}")

    # --- router -----------------------------------------------------------------------------------

    def router_transform(self, jobs: list[Json], dest_type: str) -> list[Json]:
        """Router transformation of ``jobs`` (``RouterJobT`` objects): destination jobs."""
        compacted = self.features.compacted
        url = self.url + "/routerTransform"
        message = {"input": jobs, "destType": dest_type}
        body = compact_router(message) if compacted else message
        response = self._post_router(url, orjson.dumps(body), self._headers(compacted))
        if response.status_code != 200:
            status = 404 if response.status_code == 404 else 500
            return [_failed_job(job, status, response.text) for job in jobs]
        _check_api_version(response, url)
        output = orjson.loads(response.content).get("output")
        problem = _accounting_problem(output, jobs)
        if problem is not None:
            return [_failed_job(job, 500, problem) for job in jobs]
        destination_jobs: list[Json] = output
        return destination_jobs

    def _post_router(self, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        for _ in range(self.max_retry + 1):
            try:
                return self.http.post(url, content=body, headers=headers)
            except httpx.TransportError:
                time.sleep(self.retry_sleep)
        raise Panic(f"JS HTTP connection error: URL: {url}")

    @staticmethod
    def _headers(compacted: bool) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "X-Feature-Gzip-Support": "?1",
            "X-Feature-Filter-Code": "?1",
        }
        if compacted:
            headers["X-Content-Format"] = COMPACTED
        return headers


def compact_processor(events: list[Json]) -> Json:
    """``getRequestPayload`` with compaction: one copy of each destination and connection."""
    destinations: dict[str, Json] = {}
    connections: dict[str, Json] = {}
    for event in events:
        metadata = event["metadata"]
        destinations.setdefault(metadata["destinationId"], event["destination"])
        key = f"{metadata['sourceId']}:{metadata['destinationId']}"
        connections.setdefault(key, event.get("connection", {}))
    return {
        "input": [{"message": e["message"], "metadata": e["metadata"]} for e in events],
        "destinations": destinations,
        "connections": connections,
    }


def compact_router(message: Json) -> Json:
    """``TransformMessageT.Compacted``."""
    compacted = compact_processor(message["input"])
    compacted["destType"] = message["destType"]
    return compacted


def _failed_job(job: Json, status: int, error: str) -> Json:
    return {
        "batchedRequest": None,
        "metadata": [job["metadata"]],
        "destination": job["destination"],
        "batched": False,
        "statusCode": status,
        "error": error,
    }


def _accounting_problem(output: Json, jobs: list[Json]) -> str | None:
    """What ``Transform`` checks before trusting a router answer; ``None`` when it holds."""
    if not isinstance(output, list):
        return "unmarshal error"
    sent = [job["metadata"]["jobId"] for job in jobs]
    received: list[Any] = []
    for destination_job in output:
        metadata = destination_job.get("metadata") or []
        if not metadata:
            return "empty metadata array"
        received.extend(m.get("jobId") for m in metadata)
    if len(received) != len(sent):
        return (
            f"Transformer returned invalid output size: {len(received)} for input size: {len(sent)}"
        )
    unknown = set(received) - set(sent)
    if unknown:
        return f"Transformer returned invalid jobIDs: {sorted(unknown)}"
    return None
