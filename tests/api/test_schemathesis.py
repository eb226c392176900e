"""schemathesis (v4 API: ``schemathesis.openapi.from_asgi``) against the service's own OpenAPI.

The app runs in-process over ASGI; Klaviyo is an ``httpx.MockTransport`` that answers like
Klaviyo: 201 with an id for create-profile, 202 for events and subscription jobs, and, chosen
by a hash of the body so that every declared status code shows up, a 400 with JSON:API errors,
a 429 with ``Retry-After`` or a 503. Checks: no 5xx but the declared 503 that passes that
Klaviyo 503 on, every status code declared, JSON content type, bodies and required headers as
declared.

Short by default; ``make fuzz`` sets ``FUZZ_EXAMPLES`` for a long run.
"""

from __future__ import annotations

import os
import zlib
from typing import Any

import httpx
import orjson
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from klaviyo_destination import serving
from klaviyo_destination.app import create_app
from klaviyo_destination.klaviyo.facts import PROFILES_PATH
from klaviyo_destination.settings import Settings

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or 0)
KEY = "pk_schemathesis_secret"
TOKEN = "schemathesis-token"
ENDPOINTS = ["/v1/events", "/v1/transform", "/v0/destinations/klaviyo", "/routerTransform"]


def _klaviyo_unavailable(response: Response) -> bool:
    """The webhook's answer to Klaviyo's 503: a 503 to resend later, every failure Klaviyo's."""
    if response.status_code != 503 or "retry-after" not in response.headers:
        return False
    results = orjson.loads(response.content).get("results") or []
    failed = [r for r in results if r["status"] == "failed"]
    return bool(failed) and all(r["error"]["code"] == "klaviyo_unavailable" for r in failed)


@schemathesis.check
def no_server_error_of_ours(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """``not_a_server_error``, but for the declared 503 passing on the fake Klaviyo's 503: now
    that the event schemas are real, valid events reach that Klaviyo."""
    if _klaviyo_unavailable(response):
        return None
    return not_a_server_error(ctx, response, case)


CHECKS = [
    no_server_error_of_ours,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def klaviyo(request: httpx.Request) -> httpx.Response:
    """Klaviyo at revision 2023-02-22, with a failure now and then (same body, same answer)."""
    roll = zlib.crc32(request.content) % 8
    if roll == 5:
        errors = [{"id": "e1", "status": 400, "code": "invalid", "detail": "bad value"}]
        return httpx.Response(400, json={"errors": errors})
    if roll == 6:
        return httpx.Response(429, headers={"Retry-After": "30"}, json={"errors": []})
    if roll == 7:
        return httpx.Response(503, text="<html>upstream down</html>")
    if request.url.path == PROFILES_PATH:
        return httpx.Response(201, json={"data": {"type": "profile", "id": "01PROFILE"}})
    if request.url.path.startswith(PROFILES_PATH + "/"):
        return httpx.Response(200, json={"data": {"type": "profile", "id": "01PROFILE"}})
    return httpx.Response(202)


SETTINGS = Settings(
    klaviyo_private_api_key=SecretStr(KEY),
    klaviyo_list_id="L1",
    webhook_token=SecretStr(TOKEN),
    max_attempts=2,
    delivery_deadline=1.0,
    backoff_initial=0.001,
    backoff_max=0.002,
    max_batch_events=50,
)
#: As ``serve`` serves it: the hot routes by their lanes (tests/serving/test_serving.py checks
#: that the plain app answers the same bytes).
APP = serving.wrap(create_app(SETTINGS, transport=httpx.MockTransport(klaviyo)), SETTINGS)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(path=ENDPOINTS)


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES or 25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi(case: Any) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES or 5, deadline=None, suppress_health_check=list(HealthCheck))
def test_without_token_the_answer_conforms_too(case: Any) -> None:
    """401 on the webhook endpoints (declared), the protocol endpoints need none."""
    response = case.call_and_validate(checks=CHECKS)
    if case.method == "POST" and case.path in ("/v1/events", "/v1/transform"):
        assert response.status_code == 401
