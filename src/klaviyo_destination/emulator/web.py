"""HTTP plumbing shared by the gate, the Klaviyo routes and the control routes."""

from __future__ import annotations

from typing import Annotated, Any, Final

import orjson
from fastapi import Depends, Request
from starlette.responses import Response

from klaviyo_destination.emulator.errors import ApiError
from klaviyo_destination.emulator.revisions import LEGACY, Served, resolve
from klaviyo_destination.emulator.store import EmulatorStore

#: What Klaviyo answers with (observed on a real 429 in March 2023), though the OAS says JSON.
API_MEDIA_TYPE: Final = "application/vnd.api+json"


class JsonApiResponse(Response):
    media_type = API_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(error: ApiError) -> Response:
    return JsonApiResponse(error.body(), status_code=error.status, headers=error.headers)


def _store(request: Request) -> EmulatorStore:
    store: EmulatorStore = request.app.state.store
    return store


StoreDep = Annotated[EmulatorStore, Depends(_store)]


def _revision(request: Request) -> Served:
    """The revision the gate resolved from the ``revision`` header (mounted too: the gate reads
    paths below the mount). A request the gate did not see resolves its header here the same
    way, and without one is served 2023-02-22."""
    served: Served | None = getattr(request.state, "revision", None)
    header = request.headers.get("revision")
    return served or (LEGACY if header is None else resolve(header))


RevisionDep = Annotated[Served, Depends(_revision)]


def base_url(request: Request) -> str:
    """Scheme, host and mount prefix the client used, for ``links.self`` (Klaviyo:
    https://a.klaviyo.com; mounted on the service: http://host:8080/emulator)."""
    url = request.url
    return f"{url.scheme}://{url.netloc}{request.scope.get('root_path', '')}".rstrip("/")
