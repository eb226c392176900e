"""JSON answers: the response class (orjson; FastAPI's ORJSONResponse is deprecated) and the
error body every refusal uses."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class JsonResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_body(detail: dict[str, Any]) -> dict[str, Any]:
    """``{"error": detail}`` plus the top-level ``code`` and ``message`` that the RudderStack
    and Segment SDKs read from an error answer (rudder-sdk-python crashes without them)."""
    return {"error": detail, "code": detail["code"], "message": detail["message"]}
