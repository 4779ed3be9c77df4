"""Prometheus metrics of the reward service, served as text by ``GET /metrics``.

Each app gets its own :class:`~prometheus_client.CollectorRegistry` (several apps in one
process — tests — never collide). Names::

    llm3d_http_requests_total{route, method, code}
    llm3d_http_request_seconds{route}              histogram
    llm3d_items_total{status}                      scored items by status
    llm3d_item_seconds                             histogram of one item's scoring time
    llm3d_cache_hits_total / llm3d_cache_misses_total
    llm3d_queue_depth                              items handed to the backend, not finished
    llm3d_broker_queue_length                      messages waiting in Redis (celery backend)
    llm3d_jobs{state}                              asynchronous jobs by state
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from llm3d.schemas import RewardResult

__all__ = ["Telemetry"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Telemetry:
    """The counters, gauges and histograms of one app."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "llm3d_http_requests", "HTTP requests", ["route", "method", "code"], registry=r
        )
        self.request_seconds = Histogram(
            "llm3d_http_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.items = Counter("llm3d_items", "scored items by status", ["status"], registry=r)
        self.item_seconds = Histogram(
            "llm3d_item_seconds", "scoring time of one item", buckets=LATENCY_BUCKETS, registry=r
        )
        self.cache_hits = Counter("llm3d_cache_hits", "items served from the cache", registry=r)
        self.cache_misses = Counter("llm3d_cache_misses", "items that had to be scored", registry=r)
        self.queue_depth = Gauge(
            "llm3d_queue_depth", "items handed to the backend and not finished", registry=r
        )
        self.broker_queue = Gauge(
            "llm3d_broker_queue_length", "messages waiting in the blender queue", registry=r
        )
        self.jobs = Gauge("llm3d_jobs", "asynchronous jobs by state", ["state"], registry=r)

    def record_results(self, results: Iterable[RewardResult]) -> None:
        for result in results:
            self.items.labels(status=result.status.value).inc()
            if not result.cached:
                self.item_seconds.observe(result.seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
