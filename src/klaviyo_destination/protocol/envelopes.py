"""What the protocol answers are made of: the REST envelope and the reference's error items."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from pydantic import SecretStr

from ..errors import DestinationError
from ..js import JsonObject
from ..klaviyo.facts import DEFAULT_BASE_URL, klaviyo_headers
from ..planned import PlannedRequest

DEST_TYPE: Final = "KLAVIYO"


class Envelopes:
    """The reference's REST envelopes for one protocol request (``userId`` only in processor
    mode), each (key, revision)'s headers built once and shared by the envelopes that carry
    them: a request's jobs nearly always share one destination, and orjson writes a shared
    dict exactly as it writes equal copies. Each path's endpoint and ``endpointPath`` are
    worked out once a request too."""

    __slots__ = ("_base_url", "_headers", "_paths", "_processor")

    def __init__(self, *, processor: bool, base_url: str = DEFAULT_BASE_URL) -> None:
        self._processor = processor
        self._base_url = base_url
        self._headers: dict[tuple[str, str], dict[str, str]] = {}
        self._paths: dict[str, tuple[str, str]] = {}

    def of(self, request: PlannedRequest, key: str) -> JsonObject:
        """The envelope of ``request``, sent with the private API ``key``."""
        revision = request.revision.name
        headers = self._headers.get((key, revision))
        if headers is None:
            headers = self._headers[key, revision] = klaviyo_headers(SecretStr(key), revision)
        path = request.path
        endpoint = self._paths.get(path)
        if endpoint is None:
            endpoint = self._paths[path] = (self._base_url + path, request.endpoint.value)
        out: JsonObject = {
            "version": "1",
            "type": "REST",
            "method": request.method,
            "endpoint": endpoint[0],
            "endpointPath": endpoint[1],
            "headers": headers,
            "params": {},
            "body": {"JSON": request.body, "JSON_ARRAY": {}, "XML": {}, "FORM": {}},
            "files": {},
        }
        if self._processor:
            out["userId"] = ""
        return out


def stat_tags(error: DestinationError, metadata: Any, *, feature: str) -> JsonObject:
    """RudderStack's ``statTags`` for an error item."""
    meta = metadata if isinstance(metadata, dict) else {}
    tags: JsonObject = {"errorCategory": error.category}
    kind = error.error_type
    if kind is not None:
        tags["errorType"] = kind
    tags.update(
        destType=DEST_TYPE,
        module="destination",
        implementation="native",
        feature=feature,
        destinationId=meta.get("destinationId"),
        workspaceId=meta.get("workspaceId"),
    )
    return tags


def processor_error(error: DestinationError, metadata: Any) -> JsonObject:
    return {
        "metadata": metadata,
        "statusCode": error.status,
        "error": error.message,
        "statTags": stat_tags(error, metadata, feature="processor"),
    }


def router_error(error: DestinationError, metadata: Sequence[Any], destination: Any) -> JsonObject:
    return {
        "metadata": list(metadata),
        "batched": False,
        "statusCode": error.status,
        "error": error.message,
        "statTags": stat_tags(error, metadata[0] if metadata else None, feature="router"),
        "destination": destination,
    }
