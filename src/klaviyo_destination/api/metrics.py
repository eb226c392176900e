"""Prometheus metrics of the service's own HTTP routes (the Klaviyo side is klaviyo/metrics.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# From a dry run's fraction of a millisecond to a delivery that waited for its deadline.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


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
