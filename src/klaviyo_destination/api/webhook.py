"""``/v1/events``: deliver planned events, count them, and build the answer and its status.

Independent of FastAPI; ``routes.py`` calls these.
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Sequence
from typing import Any, Final

from prometheus_client import Counter

from ..ingest.config import DestinationConfig
from ..js import JsonObject
from ..klaviyo import KlaviyoSession, Outcome
from ..phones import PhoneRule
from ..pipeline import plan_events
from ..planned import PlannedEvent

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


def record(delivered: Delivered, counter: Counter) -> dict[str, int]:
    """Count outcomes per event type (the metric) and in total (the request's log line);
    a line per warning (which never holds the phone number itself); one line per event at
    debug only."""
    tally = {"delivered": 0, "rejected": 0, "failed": 0}
    # The metric counted once per (type, outcome) of the request: ``labels()`` costs 2 us.
    counted: collections.Counter[tuple[str, str]] = collections.Counter()
    for planned, outcome in delivered:
        counted[str(planned.type).lower(), outcome.status] += 1
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
        if logger.isEnabledFor(logging.DEBUG):
            code = (outcome.error or {}).get("code")
            logger.debug(
                "event %s",
                outcome.status,
                extra={"message_id": planned.message_id, "type": planned.type, "error": code},
            )
    for (kind, status), count in counted.items():
        counter.labels(type=kind, outcome=status).inc(count)
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

    The SDKs resend a batch on any answer but 2xx, so a batch whose events were all delivered
    or permanently rejected is a 200 (the rejections are in the body, the log and the
    metrics). A retryable failure is a 503 or 429 with ``Retry-After``, and the body carries
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
