"""Prometheus metrics of the Klaviyo client.

Each :class:`DeliveryMetrics` owns its registry instead of using prometheus-client's global
one: several apps (and every test) can then build their own without "Duplicated timeseries"
errors, and ``/metrics`` renders ``generate_latest(metrics.registry)``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .ratelimit import RateLimiter

# Klaviyo answers in tens to hundreds of milliseconds; the tail covers the 10 s read timeout.
#: How many (endpoint, status) counters are kept at most (a bound, should statuses vary).
_KEPT_ANSWERS = 256
_LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class DeliveryMetrics:
    """Counters, latency and in-flight gauge of the requests sent to Klaviyo."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # No ``<name>_created`` series (a start timestamp per counter and histogram child):
        # twice the series for nothing an alert reads. prometheus-client's switch is
        # process-wide (as PROMETHEUS_DISABLE_CREATED_SERIES is); every registry the service
        # renders starts here, so it is thrown before anything is collected.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "klaviyo_requests",
            "Requests sent to Klaviyo, by endpoint class and HTTP status (or transport error).",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "klaviyo_request_duration_seconds",
            "Time from sending a request to Klaviyo to its answer (or transport error).",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter(
            "klaviyo_retries",
            "Retries scheduled, by endpoint class and reason (status code or error kind).",
            ["endpoint", "reason"],
            registry=self.registry,
        )
        self.throttled = Counter(
            "klaviyo_throttled",
            "429 answers from Klaviyo, by endpoint class.",
            ["endpoint"],
            registry=self.registry,
        )
        self.limiter_wait = Histogram(
            "klaviyo_rate_limiter_wait_seconds",
            "Time a request waited for a client-side rate-limit slot, by endpoint class.",
            ["endpoint"],
            buckets=(0.0, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "klaviyo_requests_in_flight",
            "Requests to Klaviyo currently waiting for an answer.",
            ["endpoint"],
            registry=self.registry,
        )

        # The labelled children, kept: ``labels()`` checks its arguments, takes a lock and
        # builds a key on every call, four times a request.
        self._per_endpoint: dict[str, tuple[Gauge, Histogram, Histogram]] = {}
        self._answers: dict[tuple[str, int | str], Counter] = {}

    def _of(self, endpoint: str) -> tuple[Gauge, Histogram, Histogram]:
        found = self._per_endpoint.get(endpoint)
        if found is None:
            found = self._per_endpoint[endpoint] = (
                self.in_flight.labels(endpoint=endpoint),
                self.latency.labels(endpoint=endpoint),
                self.limiter_wait.labels(endpoint=endpoint),
            )
        return found

    def timed(self, endpoint: str) -> _Timed:
        """Count one request in flight and observe its latency, whatever the outcome (a
        context manager)."""
        gauge, latency, _ = self._of(endpoint)
        return _Timed(gauge, latency)

    def answered(self, endpoint: str, status: int | str) -> None:
        counter = self._answers.get((endpoint, status))
        if counter is None:
            counter = self.requests.labels(endpoint=endpoint, status=str(status))
            if len(self._answers) < _KEPT_ANSWERS:  # statuses and error names: a few dozen
                self._answers[(endpoint, status)] = counter
        counter.inc()
        if status == 429:
            self.throttled.labels(endpoint=endpoint).inc()

    def retried(self, endpoint: str, reason: str) -> None:
        self.retries.labels(endpoint=endpoint, reason=reason).inc()

    def waited(self, endpoint: str, seconds: float) -> None:
        self._of(endpoint)[2].observe(seconds)

    def watch(self, limits: RateLimiter) -> None:
        """Report the limiters' free slots at each scrape (``klaviyo_rate_limiter_available``)."""
        self.registry.register(_LimiterBudget(limits))


class _Timed:
    """:meth:`DeliveryMetrics.timed`, as a class: ``@contextmanager`` costs a generator and its
    frames on every request (1.5 of its 3.1 us)."""

    __slots__ = ("_gauge", "_latency", "_start")

    def __init__(self, gauge: Gauge, latency: Histogram) -> None:
        self._gauge = gauge
        self._latency = latency
        self._start = 0.0

    def __enter__(self) -> None:
        self._gauge.inc()
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._latency.observe(time.perf_counter() - self._start)
        self._gauge.dec()


class _LimiterBudget(Collector):
    """Read at scrape time, so the gauge is the budget now, not when a request last passed."""

    def __init__(self, limits: RateLimiter) -> None:
        self._limits = limits

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "klaviyo_rate_limiter_available",
            "Free client-side rate-limit slots now, by endpoint class and window "
            "(burst: 1 s, steady: 1 min); 0 while Klaviyo's Retry-After holds the endpoint.",
            labels=["endpoint", "window"],
        )
        for endpoint, limiter in self._limits.items():
            for window, free in limiter.available().items():
                family.add_metric([endpoint.value, window], free)
        yield family
        yield GaugeMetricFamily(
            "klaviyo_rate_limits_shared",
            "1 while the rate limits are shared with other processes through Redis (REDIS_URL), "
            "0 while each process keeps its own.",
            value=int(self._limits.shared),
        )
        if self._limits.per_account:
            yield CounterMetricFamily(
                "klaviyo_rate_limit_redis_calls",
                "Round trips to Redis for the shared rate limits (each takes the slots asked "
                "for since the last one and records the answers).",
                value=self._limits.redis_calls,
            )
