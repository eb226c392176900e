"""The emulator's own control surface under ``/__emulator`` (no auth, never faulted).

``GET /health``, ``GET|DELETE /requests``, ``POST /reset``, ``GET /state``,
``GET|POST|DELETE /faults`` and ``GET|POST /rate-limits``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from klaviyo_destination.emulator import resources
from klaviyo_destination.emulator.faults import FaultSpec
from klaviyo_destination.emulator.models import RecordedRequest
from klaviyo_destination.emulator.ratelimit import EndpointClass, RateLimit
from klaviyo_destination.emulator.web import StoreDep, base_url
from klaviyo_destination.klaviyo.facts import REVISION

router = APIRouter(prefix="/__emulator", tags=["emulator control"])


class LimitSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    burst: int = Field(ge=1)
    steady: int = Field(ge=1)


class RateLimitSpec(BaseModel):
    """Body of ``POST /__emulator/rate-limits``; omitted members stay as they are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool | None = None
    send_retry_after: bool | None = None
    limits: dict[EndpointClass, LimitSpec] | None = None


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok", "revision": REVISION}


@router.get("/requests")
async def requests(store: StoreDep, path: str | None = None) -> dict[str, Any]:
    """Recorded ``/api`` requests, oldest first; ``?path=`` keeps those under a prefix."""
    kept = [r for r in store.requests if path is None or r.path.startswith(path)]
    return {"requests": [_recorded(r) for r in kept]}


@router.delete("/requests", status_code=204)
async def forget_requests(store: StoreDep) -> Response:
    store.requests.clear()
    return Response(status_code=204)


@router.post("/reset", status_code=204)
async def reset(store: StoreDep) -> Response:
    store.reset()
    return Response(status_code=204)


@router.get("/state")
async def state(request: Request, store: StoreDep) -> dict[str, Any]:
    return resources.state(store, base_url(request))


@router.get("/faults")
async def faults(store: StoreDep) -> dict[str, Any]:
    return store.faults.describe()


@router.post("/faults", status_code=201)
async def add_fault(spec: FaultSpec, store: StoreDep) -> dict[str, Any]:
    store.faults.add(spec)
    return store.faults.describe()


@router.delete("/faults", status_code=204)
async def clear_faults(store: StoreDep) -> Response:
    store.faults.clear()
    return Response(status_code=204)


@router.get("/rate-limits")
async def rate_limits(store: StoreDep) -> dict[str, Any]:
    return resources.rate_limits(store)


@router.post("/rate-limits")
async def configure_rate_limits(spec: RateLimitSpec, store: StoreDep) -> dict[str, Any]:
    limiter = store.limiter
    if spec.enabled is not None:
        limiter.enabled = spec.enabled
    if spec.send_retry_after is not None:
        limiter.send_retry_after = spec.send_retry_after
    for name, limit in (spec.limits or {}).items():
        limiter.set_limit(name, RateLimit(limit.burst, limit.steady))
    limiter.reset()
    return resources.rate_limits(store)


def _recorded(entry: RecordedRequest) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "time": entry.time.isoformat(),
        "method": entry.method,
        "path": entry.path,
        "query": entry.query,
        "headers": entry.headers,
        "body": entry.body,
        "status": entry.status,
        "fault": entry.fault,
    }
