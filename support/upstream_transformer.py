"""A stand-in for rudder-transformer, the upstream this service passes requests through to.

It answers the way the real transformer's contract does for rudder-server (``apiVersion: 2``
on every answer, one processor item per job, every router job in one output) and marks what it
produced (``"upstream": true``), so a test can tell which side served a job. It records every
request (``GET /__requests``) and can be told to fail the next requests (``POST /__fail``).

    python -m support.upstream_transformer --port 9090
"""

from __future__ import annotations

import argparse
from typing import Any, Final

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Json = Any
HEALTH: Final = "/health"
FEATURES: Final = {
    "routerTransform": {"HS": True, "MARKETO": True},
    "regulations": ["AM"],
    "supportSourceTransformV1": True,
    "upgradedToSourceTransformV2": True,
    "supportDestTransformCompactedPayloadV1": True,
    "supportTransformerProxyV1": True,
}
#: What the stand-in adds to every answer, so a test sees the answer's headers come back.
MARK: Final = {"apiVersion": "2", "X-Upstream": "stand-in"}


class StandIn:
    def __init__(self) -> None:
        self.requests: list[Json] = []
        self.failures: list[int] = []

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(HEALTH, self.health),
                Route("/__requests", self.recorded, methods=["GET", "DELETE"]),
                Route("/__fail", self.fail, methods=["POST"]),
                Route("/features", self.features),
                Route("/v0/destinations/{destination}", self.processor, methods=["POST"]),
                Route("/routerTransform", self.router, methods=["POST"]),
                Route("/{path:path}", self.echo, methods=["GET", "POST", "PUT", "DELETE"]),
            ]
        )

    async def health(self, _: Request) -> Response:
        return _json({"status": "ok"})

    async def recorded(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.requests.clear()
            self.failures.clear()
        return _json(self.requests)

    async def fail(self, request: Request) -> Response:
        spec = orjson.loads(await request.body())
        self.failures.extend([int(spec["status"])] * int(spec.get("count", 1)))
        return _json({"queued": len(self.failures)})

    async def _record(self, request: Request) -> tuple[bytes, Response | None]:
        body = await request.body()
        self.requests.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "headers": [[k.decode(), v.decode()] for k, v in request.headers.raw],
                "body": body.decode(errors="replace"),
            }
        )
        if self.failures:
            status = self.failures.pop(0)
            return body, Response(b"stand-in failure", status_code=status, headers=MARK)
        return body, None

    async def features(self, request: Request) -> Response:
        _, failed = await self._record(request)
        return failed or _json(FEATURES)

    async def processor(self, request: Request) -> Response:
        raw, failed = await self._record(request)
        if failed is not None:
            return failed
        destination = request.path_params["destination"]
        items = [
            {
                "output": {"upstream": True, "destination": destination, "message": message},
                "metadata": metadata,
                "statusCode": 200,
            }
            for message, metadata, _ in _jobs(orjson.loads(raw))
        ]
        return _json(items)

    async def router(self, request: Request) -> Response:
        raw, failed = await self._record(request)
        if failed is not None:
            return failed
        body = orjson.loads(raw)
        outputs = [
            {
                "batchedRequest": {"upstream": True, "destType": body.get("destType")},
                "metadata": [metadata],
                "batched": False,
                "statusCode": 200,
                "destination": destination,
            }
            for _, metadata, destination in _jobs(body)
        ]
        return _json({"output": outputs})

    async def echo(self, request: Request) -> Response:
        raw, failed = await self._record(request)
        return failed or _json(
            {"echo": request.url.path, "query": request.url.query, "bytes": len(raw)}
        )


def _jobs(body: Json) -> list[tuple[Json, Json, Json]]:
    """(message, metadata, destination) of each job of a plain or compacted body."""
    if isinstance(body, list):
        return [(j.get("message"), j.get("metadata"), j.get("destination")) for j in body]
    destinations = body.get("destinations")
    out = []
    for job in body.get("input", []):
        metadata = job.get("metadata") or {}
        destination = (
            destinations.get(metadata.get("destinationId"))
            if isinstance(destinations, dict)
            else job.get("destination")
        )
        out.append((job.get("message"), metadata, destination))
    return out


def _json(value: Json, status: int = 200) -> Response:
    return Response(
        orjson.dumps(value), status_code=status, media_type="application/json", headers=MARK
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="stand-in rudder-transformer")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(StandIn().app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
