"""The webhook and dry-run work: events in, one result per event out, and the HTTP status.

Routes call :func:`dry_run` or :func:`deliver_events`; everything here is independent of FastAPI.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import Counter
from pydantic import SecretStr

from .delivery import EventPlan, KlaviyoClient, Outcome
from .errors import DestinationError, InvalidEvent
from .klaviyo import JsonObject, PlannedRequest, auth_headers
from .mapping import transform
from .rudder import DestinationConfig
from .settings import Settings

logger = logging.getLogger(__name__)

#: Shown instead of the key in dry-run headers.
MASKED_KEY: Final = SecretStr("***")
#: Retry-After for a retryable failure when neither Klaviyo nor the limiter named a wait.
DEFAULT_RETRY_AFTER: Final = 5


def destination_config(settings: Settings) -> DestinationConfig:
    """The service's settings as the RudderStack destination config the mapping reads."""
    return DestinationConfig.model_validate(
        {
            "privateApiKey": settings.klaviyo_private_api_key,
            "publicApiKey": settings.klaviyo_public_api_key,
            "listId": settings.klaviyo_list_id,
            "consent": list(settings.klaviyo_consent),
            "enforceEmailAsPrimary": settings.klaviyo_enforce_email_as_primary,
            "flattenProperties": settings.klaviyo_flatten_properties,
        }
    )


def dry_run_config(config: DestinationConfig) -> DestinationConfig:
    """The config for a dry run: it shows the key masked anyway, so it works without one."""
    if config.private_api_key is not None:
        return config
    return config.model_copy(update={"private_api_key": MASKED_KEY})


@dataclass(frozen=True, slots=True)
class Planned:
    """One input event after the mapping: its requests, or why it cannot be sent."""

    message: Any
    requests: list[PlannedRequest]
    error: DestinationError | None

    @property
    def header(self) -> JsonObject:
        message = self.message if isinstance(self.message, dict) else {}
        return {"messageId": message.get("messageId"), "type": message.get("type")}

    @property
    def user_key(self) -> str:
        message = self.message if isinstance(self.message, dict) else {}
        return str(message.get("userId") or message.get("anonymousId") or "")


def plan_all(messages: Sequence[Any], config: DestinationConfig) -> list[Planned]:
    planned = []
    for message in messages:
        try:
            if not isinstance(message, dict):
                raise InvalidEvent("each event must be a JSON object", field="event")
            planned.append(Planned(message, transform(message, config), None))
        except DestinationError as error:
            planned.append(Planned(message, [], error))
    return planned


def dry_run(messages: Sequence[Any], config: DestinationConfig, base_url: str) -> list[JsonObject]:
    """What ``/v1/events`` would send, with the key masked; nothing is sent."""
    results = []
    for item in plan_all(messages, config):
        result: JsonObject = {**item.header}
        if item.error is not None:
            result.update(status="rejected", requests=[], error=item.error.to_dict())
        else:
            result.update(status="planned", requests=[_shown(r, base_url) for r in item.requests])
        results.append(result)
    return results


def _shown(request: PlannedRequest, base_url: str) -> JsonObject:
    shown: JsonObject = {
        "method": request.method,
        "url": base_url.rstrip("/") + request.path,
        "headers": auth_headers(MASKED_KEY),
        "body": request.body,
    }
    if request.upsert:
        shown["on_conflict"] = "PATCH /api/profiles/{duplicate_profile_id} with data.id set"
    return shown


async def deliver_events(
    messages: Sequence[Any], config: DestinationConfig, client: KlaviyoClient
) -> list[tuple[Planned, Outcome]]:
    planned = plan_all(messages, config)
    plans = [EventPlan(p.user_key, p.requests, p.error) for p in planned]
    outcomes = await client.deliver_batch(plans, api_key=config.private_api_key)
    return list(zip(planned, outcomes, strict=True))


def record(delivered: Sequence[tuple[Planned, Outcome]], counter: Counter) -> None:
    """Count outcomes per event type, and log one line per request (per event at debug only)."""
    tally = {"delivered": 0, "rejected": 0, "failed": 0}
    for planned, outcome in delivered:
        counter.labels(type=str(planned.header["type"]).lower(), outcome=outcome.status).inc()
        tally[outcome.status] += 1
        if logger.isEnabledFor(logging.DEBUG):
            code = (outcome.error or {}).get("code")
            logger.debug("event %s %s: %s %s", *planned.header.values(), outcome.status, code)
    logger.info(
        "events: %d delivered, %d rejected, %d failed",
        tally["delivered"],
        tally["rejected"],
        tally["failed"],
    )


def webhook_answer(
    delivered: Sequence[tuple[Planned, Outcome]], *, single: bool
) -> tuple[JsonObject, int, dict[str, str]]:
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


def result_of(planned: Planned, outcome: Outcome) -> JsonObject:
    result: JsonObject = {**planned.header, "status": outcome.status}
    result["requests"] = [
        {"method": r.method, "path": r.path, "status": r.status_code} for r in outcome.requests
    ]
    if outcome.error is not None:
        result["error"] = outcome.error
    if outcome.retry_after is not None:
        result["retry_after"] = outcome.retry_after
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
    known = [w for w in waits if w is not None]
    return str(max(1, math.ceil(max(known)))) if known else str(DEFAULT_RETRY_AFTER)
