"""``create_emulator()``: the Klaviyo emulator as one FastAPI app."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from starlette.responses import Response

from klaviyo_destination.emulator import control, routes
from klaviyo_destination.emulator.errors import ApiError, for_status, invalid_object
from klaviyo_destination.emulator.gate import KlaviyoGate
from klaviyo_destination.emulator.ratelimit import DEFAULT_RATE_LIMITS, EndpointClass, RateLimit
from klaviyo_destination.emulator.revisions import SERVED
from klaviyo_destination.emulator.store import EmulatorStore
from klaviyo_destination.emulator.web import error_response
from klaviyo_destination.klaviyo.facts import NEWEST_REVISION


def create_emulator(
    store: EmulatorStore | None = None,
    *,
    rate_limits: bool | Mapping[EndpointClass, RateLimit] = True,
) -> FastAPI:
    """Klaviyo in-process: ``/api/...`` at each revision ``revisions.py`` serves, plus the
    ``/__emulator/...`` controls.

    ``rate_limits``: ``True`` keeps the store's limits (Klaviyo's tiers for a new store),
    ``False`` turns limiting off, a mapping replaces the limits of the classes it names.
    Pass your own ``store`` to inspect or prepare state directly, or to inject a clock.
    """
    if store is None:
        store = EmulatorStore(rate_limits=DEFAULT_RATE_LIMITS if rate_limits else None)
    if rate_limits is False:
        store.limiter.enabled = False
    elif rate_limits is not True:
        for endpoint, limit in rate_limits.items():
            store.limiter.set_limit(endpoint, limit)
        store.limiter.enabled = True
    app = FastAPIOffline(
        title=f"Klaviyo API emulator (revisions {', '.join(SERVED)})",
        version=NEWEST_REVISION,
    )
    app.state.store = store
    app.include_router(routes.router)
    app.include_router(control.router)
    app.add_middleware(KlaviyoGate, store=store)
    app.exception_handler(ApiError)(_api_error)
    app.exception_handler(HTTPException)(_http_error)
    app.exception_handler(RequestValidationError)(_request_error)
    return app


async def _api_error(_: Request, exc: ApiError) -> Response:
    return error_response(exc)


async def _http_error(_: Request, exc: HTTPException) -> Response:
    """Unknown paths and methods answer in Klaviyo's error format too."""
    response = error_response(for_status(exc.status_code, exc.detail))
    response.headers.update(exc.headers or {})
    return response


async def _request_error(_: Request, exc: RequestValidationError) -> Response:
    """Bad control bodies or parameters: a 400 naming each offending member."""
    objects = [
        invalid_object(str(error.get("msg")), pointer="/" + "/".join(map(str, error["loc"])))
        for error in exc.errors()
    ]
    return error_response(ApiError(*objects))
