"""Prometheus metrics of the service's own HTTP routes (the Klaviyo side is klaviyo/metrics.py)."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

from ..errors import DestinationError

# From a dry run's fraction of a millisecond to a delivery that waited for its deadline.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


#: The ``reason`` of an event that an error code outside the error tree (none today) would get.
OTHER_REASON: Final = "other"


def error_codes() -> frozenset[str]:
    """Every code of the error tree (``errors.py``): the ``reason`` label's values."""
    codes, pending = set(), [DestinationError]
    while pending:
        kind = pending.pop()
        codes.add(kind.code)
        pending.extend(kind.__subclasses__())
    return frozenset(codes)


class EventMetrics:
    """The events of ``/v1/events`` and the SDK routes: each counted by type and outcome, and
    each rejected or failed one by its error code (a bounded label: the error tree's codes)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "klaviyo_destination_events",
            "Events handled by /v1/events and the SDK routes, by event type and outcome.",
            ["type", "outcome"],
            registry=registry,
        )
        self.not_delivered = Counter(
            "klaviyo_destination_events_not_delivered",
            "Events rejected or failed by /v1/events and the SDK routes, by outcome and "
            "reason (the per-event error code).",
            ["outcome", "reason"],
            registry=registry,
        )
        self._reasons = error_codes()

    def count(self, event_type: str, outcome: str, code: str | None, events: int = 1) -> None:
        self.events.labels(type=event_type, outcome=outcome).inc(events)
        if outcome != "delivered":
            reason = code if code in self._reasons else OTHER_REASON
            self.not_delivered.labels(outcome=outcome, reason=reason).inc(events)


class HttpMetrics:
    """Requests and latencies per route template (never the raw path: its values are unbounded)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "klaviyo_destination_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "klaviyo_destination_http_request_duration_seconds",
            "Time from a request's arrival to its answer's end, by route template.",
            ["route"],
            buckets=_BUCKETS,
            registry=registry,
        )
        #: each label set's two children, kept: ``labels()`` (validation, a lock, the string key)
        #: was most of an observation's cost, on every request (bench/optimisations.md)
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(route=route, method=method, status=str(status)),
                self.latency.labels(route=route),
            )
        count, latency = children
        count.inc()
        latency.observe(seconds)
