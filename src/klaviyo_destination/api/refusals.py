"""How an error becomes an answer: one function for both ways in (FastAPI's exception handlers
and the lanes), so a refusal reads the same whichever served it."""

from __future__ import annotations

import logging
from typing import Any, Final

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Scope

from ..errors import DestinationError
from .exchange import Answer
from .request_log import annotate_scope
from .responses import error_body

logger = logging.getLogger(__name__)
#: rudder-server panics on a 200 from its transformer without this header (apiVersion 2).
API_VERSION: Final = {"apiVersion": "2"}
#: the state key a protocol route sets: its error answers carry ``apiVersion`` too
PROTOCOL: Final = "protocol"
#: what a routing refusal is about: no route at this path, or not with this method
_HTTP_FIELDS: Final = {404: "path", 405: "method"}
_DISCONNECTED: Final = "the client closed the connection before the whole body arrived"


def refusal(scope: Scope, error: BaseException) -> Answer | None:
    """The answer to an error a route may raise (its fields added to the log line), or None
    for one no route should raise (a bug: see :func:`unexpected_answer`)."""
    protocol = bool(scope.get("state", {}).get(PROTOCOL, False))
    if isinstance(error, DestinationError):
        fields: dict[str, Any] = {"field": error.field}
        detail, status = error.to_dict(), error.status
    elif isinstance(error, RequestValidationError):
        errors = error.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(part) for part in first.get("loc", ()))
        detail = {"code": "invalid_request", "message": str(first.get("msg")), "field": field}
        fields, status, protocol = {"field": field}, 400, False
    elif isinstance(error, HTTPException):
        about = _HTTP_FIELDS.get(error.status_code)
        detail = {"code": f"http_{error.status_code}", "message": str(error.detail), "field": about}
        fields, status, protocol = {"field": about}, error.status_code, False
    elif isinstance(error, ClientDisconnect):
        # An ordinary event (a sender timed out or was stopped): its log line, no traceback.
        # 499 is nginx's "client closed request"; nobody receives this answer.
        detail = {"code": "client_disconnected", "message": _DISCONNECTED, "field": None}
        fields, status, protocol = {}, 499, False
    else:
        return None
    annotate_scope(scope, error=detail["code"], reason=detail["message"][:200], **fields)
    return Answer.json(error_body(detail), status, API_VERSION if protocol else None)


def unexpected_answer(error: BaseException) -> Answer:
    logger.exception("unexpected error: %s", type(error).__name__, exc_info=error)
    body = {"code": "internal_error", "message": "unexpected error", "field": None}
    return Answer.json(error_body(body), 500)


async def refused(request: Request, error: Exception) -> Response:
    """FastAPI's handler for the errors :func:`refusal` knows."""
    answer = refusal(request.scope, error)
    return (answer or unexpected_answer(error)).response()


async def unexpected(_: Request, error: Exception) -> Response:
    return unexpected_answer(error).response()


#: The exception types :func:`refused` answers.
REFUSED: Final = (DestinationError, RequestValidationError, HTTPException, ClientDisconnect)
