"""How an error becomes an answer: the handlers FastAPI installs, shared with the fast lane."""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from ..errors import DestinationError
from .request_log import annotate
from .responses import JsonResponse, error_body

logger = logging.getLogger(__name__)
#: rudder-server panics on a 200 from its transformer without this header (apiVersion 2).
API_VERSION = {"apiVersion": "2"}


def error_response(error: DestinationError, *, protocol: bool = False) -> JsonResponse:
    headers = API_VERSION if protocol else None
    return JsonResponse(error_body(error.to_dict()), status_code=error.status, headers=headers)


async def destination_error(request: Request, error: Exception) -> JsonResponse:
    assert isinstance(error, DestinationError)  # noqa: S101 -- registered for that type
    annotate(request, error=error.code, reason=error.message[:200], field=error.field)
    return error_response(error, protocol=getattr(request.state, "protocol", False))


async def validation_error(request: Request, error: Exception) -> JsonResponse:
    assert isinstance(error, RequestValidationError)  # noqa: S101 -- registered for that type
    first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
    field = ".".join(str(part) for part in first.get("loc", ()))
    body = {"code": "invalid_request", "message": str(first.get("msg")), "field": field}
    annotate(request, error=body["code"], reason=body["message"], field=field)
    return JsonResponse(error_body(body), status_code=400)


async def http_error(request: Request, error: Exception) -> JsonResponse:
    assert isinstance(error, HTTPException)  # noqa: S101 -- registered for that type
    body = {"code": f"http_{error.status_code}", "message": str(error.detail), "field": None}
    annotate(request, error=body["code"], reason=body["message"])
    return JsonResponse(error_body(body), status_code=error.status_code)


async def client_left(request: Request, _: Exception) -> JsonResponse:
    """An ordinary event (a sender timed out or was stopped): its log line, no traceback.
    499 is nginx's "client closed request"; nobody receives this answer."""
    body = {
        "code": "client_disconnected",
        "message": "the client closed the connection before the whole body arrived",
        "field": None,
    }
    annotate(request, error=body["code"], reason=body["message"])
    return JsonResponse(error_body(body), status_code=499)


async def unexpected(_: Request, error: Exception) -> JsonResponse:
    logger.exception("unexpected error: %s", type(error).__name__)
    body = {"code": "internal_error", "message": "unexpected error", "field": None}
    return JsonResponse(error_body(body), status_code=500)


#: Exception type → handler, in the order they are tried.
HANDLERS = (
    (DestinationError, destination_error),
    (RequestValidationError, validation_error),
    (HTTPException, http_error),
    (ClientDisconnect, client_left),
)
