"""``/v1/events``: deliver planned events, count them, and build the answer and its status.

Independent of FastAPI; ``routes.py`` calls these.
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Sequence
from typing import Any, Final

from ..ingest.config import DestinationConfig
from ..js import JsonObject
from ..klaviyo import KlaviyoSession, Outcome
from ..phones import PhoneRule
from ..pipeline import plan_events
from ..planned import PlannedEvent
from .metrics import EventMetrics

logger = logging.getLogger(__name__)

#: Retry-After for a retryable failure when neither Klaviyo nor the limiter named a wait.
DEFAULT_RETRY_AFTER: Final = 5
MAX_RETRY_AFTER_HEADER: Final = 7 * 24 * 3600

Delivered = Sequence[tuple[PlannedEvent, Outcome]]


async def deliver_events(
    messages: Sequence[Any],
    config: DestinationConfig,
    session: KlaviyoSession,
    *,
    phones: PhoneRule,
) -> list[tuple[PlannedEvent, Outcome]]:
    planned = plan_events(messages, config, phones=phones)
    outcomes = await session.deliver_batch(planned)
    return list(zip(planned, outcomes, strict=True))


def record(delivered: Delivered, metrics: EventMetrics) -> dict[str, int]:
    """Count outcomes per event type and reason (the metrics) and in total (the request's log
    line); a WARNING line per rejected or failed event and per warning, naming the event, its
    code and field and never a value from it (no email, no phone, no message); one line per
    delivered event at debug only.

    The SDK routes answer 200 for a batch whose events were rejected (docs/clients.md): these
    lines and ``klaviyo_destination_events_not_delivered_total`` are where an SDK's operator
    sees them."""
    tally = {"delivered": 0, "rejected": 0, "failed": 0}
    # The metrics counted once per (type, outcome, code) of the request: ``labels()`` costs 2 us.
    counted: collections.Counter[tuple[str, str, str | None]] = collections.Counter()
    for planned, outcome in delivered:
        error = outcome.error or {}
        counted[str(planned.type).lower(), outcome.status, error.get("code")] += 1
        tally[outcome.status] += 1
        for warning in planned.warnings:
            logger.warning(
                warning["message"],
                extra={
                    "message_id": planned.message_id,
                    "type": planned.type,
                    "warning": warning["code"],
                    "field": warning["field"],
                },
            )
        if outcome.status != "delivered":
            logger.warning(
                "event %s: %s",
                outcome.status,
                error.get("code"),
                extra={
                    "message_id": planned.message_id,
                    "type": planned.type,
                    "error": error.get("code"),
                    "field": error.get("field"),
                    "klaviyo_status": error.get("klaviyo_status"),
                },
            )
        elif logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "event delivered",
                extra={"message_id": planned.message_id, "type": planned.type},
            )
    for (kind, status, code), count in counted.items():
        metrics.count(kind, status, code, count)
    return tally


def webhook_answer(delivered: Delivered, *, single: bool) -> tuple[JsonObject, int, dict[str, str]]:
    """Body, HTTP status and headers of a ``/v1/events`` answer."""
    outcomes = [outcome for _, outcome in delivered]
    status = status_code(
        [o.status for o in outcomes],
        single=single,
        throttled=any(o.throttled for o in outcomes if o.status == "failed"),
    )
    headers = {}
    if (retry_after := retry_after_header(outcomes)) is not None:
        headers["Retry-After"] = retry_after
    results = [result_of(planned, outcome) for planned, outcome in delivered]
    return {"results": results}, status, headers


def sdk_answer(delivered: Delivered) -> tuple[JsonObject, int, dict[str, str]]:
    """Body, status and headers for the SDK routes (``/v1/batch``, ``/v1/<type>``).

    The Python SDKs drop a batch on a 4xx other than 429 and rudder-sdk-python resends on
    anything but 200 (docs/clients.md, "Answers"), so a batch whose events were all delivered
    or permanently rejected is a 200 (the rejections are in the body, a WARNING line each and
    the metrics). A retryable failure is a 503 or 429 with ``Retry-After``, and the body carries
    the top-level ``code`` and ``message`` the SDKs read from an error answer.
    """
    body, status, headers = webhook_answer(delivered, single=False)
    if status in (429, 503):
        failed = next(o.error for _, o in delivered if o.status == "failed" and o.error)
        body.update(code=failed["code"], message=failed["message"])
        return body, status, headers
    return body, 200, headers


def result_of(planned: PlannedEvent, outcome: Outcome) -> JsonObject:
    result: JsonObject = {**planned.header, "status": outcome.status}
    result["requests"] = [
        {"method": r.method, "path": r.path, "status": r.status_code} for r in outcome.requests
    ]
    if outcome.error is not None:
        result["error"] = outcome.error
    if outcome.retry_after is not None:
        result["retry_after"] = outcome.retry_after
    if planned.warnings:
        result["warnings"] = list(planned.warnings)
    return result


def status_code(statuses: Sequence[str], *, single: bool, throttled: bool) -> int:
    """The HTTP status for the whole request (see the README's status table)."""
    if "failed" in statuses:
        return 429 if throttled else 503
    rejected = statuses.count("rejected")
    if rejected == 0:
        return 200
    if rejected == len(statuses):
        return 400
    return 400 if single else 207


def retry_after_header(outcomes: Sequence[Outcome]) -> str | None:
    waits = [o.retry_after for o in outcomes if o.status == "failed"]
    if not waits:
        return None
    known = [w for w in waits if w is not None and math.isfinite(w)]
    if not known:
        return str(DEFAULT_RETRY_AFTER)
    # A week at most: a hint beyond that is passed on as a week, not as a 300-digit number.
    return str(min(MAX_RETRY_AFTER_HEADER, max(1, math.ceil(max(known)))))
