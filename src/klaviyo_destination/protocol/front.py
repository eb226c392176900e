"""The rudder-server front for Klaviyo requests: serve v1 here, pass v2/v3 to the upstream.

One request may mix destinations of both kinds; each job goes its way and the answer holds
every job exactly once, as rudder-server checks. What the upstream says about its part is
handled as rudder-server would handle it had it asked the upstream itself
(``processor/internal/transformer/destination_transformer``, ``router/transformer``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from ..errors import UpstreamError, UpstreamFailed
from ..js import JsonObject
from .bodies import Limits, ProtocolBody
from .jobs import Job
from .lookup import ProfileLookup
from .processor import process_jobs
from .router import route_jobs
from .upstream import Upstream

#: Klaviyo destinations the real transformer serves with the newer API revisions.
UPSTREAM_VERSIONS: Final = frozenset({"v2", "v3"})
Headers = Iterable[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Front:
    """What the protocol routes of one app share."""

    lookup: ProfileLookup
    limits: Limits
    upstream: Upstream | None = None

    def _split(self, jobs: Sequence[Job]) -> tuple[list[int], list[int]]:
        if self.upstream is None:
            return list(range(len(jobs))), []
        here: list[int] = []
        there: list[int] = []
        for index, job in enumerate(jobs):
            (there if job.api_version in UPSTREAM_VERSIONS else here).append(index)
        return here, there

    async def processor(
        self, body: ProtocolBody, headers: Headers, *, path: str, filter_code: bool, base_url: str
    ) -> list[JsonObject]:
        """The items of every job, in input order; raises ``UpstreamError`` when the upstream
        failed in a way rudder-server retries (the whole request is then retried)."""
        here, there = self._split(body.jobs)
        per_job: list[list[JsonObject]] = [[] for _ in body.jobs]
        served = await process_jobs(
            [body.jobs[i] for i in here], self.lookup, filter_code=filter_code, base_url=base_url
        )
        for index, items in zip(here, served, strict=True):
            per_job[index] = items
        if there and self.upstream is not None:
            answer = await self.upstream.post(path, headers, body.subset(there))
            items = _processor_items(answer.status_code, answer.content, body, there)
            _place(items, body.jobs, there, per_job)
        return [item for items in per_job for item in items]

    async def router(
        self, body: ProtocolBody, headers: Headers, *, filter_code: bool, base_url: str
    ) -> list[JsonObject]:
        here, there = self._split(body.jobs)
        jobs = [body.jobs[i] for i in here]
        outputs = (
            await route_jobs(jobs, self.lookup, filter_code=filter_code, base_url=base_url)
            if jobs
            else []
        )
        if there and self.upstream is not None:
            outputs.extend(await self._router_upstream(body, headers, there))
        return outputs

    async def _router_upstream(
        self, body: ProtocolBody, headers: Headers, there: list[int]
    ) -> list[JsonObject]:
        assert self.upstream is not None  # noqa: S101 -- _split sends nothing there without one
        try:
            answer = await self.upstream.post("/routerTransform", headers, body.subset(there))
            status, content = answer.status_code, answer.content
        except UpstreamError as exc:
            status, content = exc.status, exc.message.encode()
        if status == 200:
            output = _json(content).get("output") if isinstance(_json(content), dict) else None
            if isinstance(output, list):
                return output
            content = b"upstream transformer answered 200 without an output array"
        # As rudder-server marks every job of a failed router request: 404 stays, else 500.
        code = 404 if status == 404 else 500
        text = content.decode(errors="replace")
        return [
            {
                "metadata": [body.jobs[i].metadata],
                "batched": False,
                "statusCode": code,
                "error": text,
                "destination": body.jobs[i].destination,
            }
            for i in there
        ]


def _json(content: bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None


def _terminal(status: int) -> bool:
    """rudder-server's ``IsJobTerminated``: 2xx-4xx except 408 and 429 are final."""
    return 200 <= status < 500 and status not in (408, 429)


def _processor_items(
    status: int, content: bytes, body: ProtocolBody, there: list[int]
) -> list[JsonObject]:
    if not _terminal(status):
        message = (
            f"upstream transformer answered {status}: {content[:200].decode(errors='replace')}"
        )
        raise UpstreamFailed(message, status=status)
    if status == 200:
        items = _json(content)
        if isinstance(items, list):
            return items
        raise UpstreamError("upstream transformer answered 200 without a JSON array")
    text = content.decode(errors="replace")
    return [{"metadata": body.jobs[i].metadata, "statusCode": status, "error": text} for i in there]


def _place(
    items: list[JsonObject], jobs: Sequence[Job], there: list[int], per_job: list[list[Any]]
) -> None:
    """Put the upstream's items with their jobs (by ``metadata.jobId``), so the answer keeps
    input order; an item naming no job of the request goes last."""
    by_id = {jobs[i].job_id: i for i in there if jobs[i].job_id is not None}
    stray: list[JsonObject] = []
    for item in items:
        metadata = item.get("metadata") if isinstance(item, dict) else None
        job_id = metadata.get("jobId") if isinstance(metadata, dict) else None
        index = by_id.get(job_id)
        (per_job[index] if index is not None else stray).append(item)
    if stray:
        per_job.append(stray)
