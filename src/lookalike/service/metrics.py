"""Prometheus metrics of one app (its own registry, so several apps in one process never collide)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["ServiceMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServiceMetrics:
    """Request counts and latencies per route template, forward passes and their batch sizes,
    the gallery's size."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "lookalike_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lookalike_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.forward_passes = Counter(
            "lookalike_embed_forward_passes", "Forward passes of the embedder.", registry=self.registry
        )
        self.batch_images = Histogram(
            "lookalike_embed_batch_images",
            "Images per forward pass (micro-batching puts several requests in one).",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "lookalike_embed_batch_requests",
            "Requests served by one forward pass.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.embed_seconds = Histogram(
            "lookalike_embed_duration_seconds",
            "Time of one forward pass.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.gallery_items = Gauge("lookalike_gallery_items", "Items in the gallery.", registry=self.registry)

    def observe_batch(self, n_images: int, n_requests: int, seconds: float) -> None:
        self.forward_passes.inc()
        self.batch_images.observe(n_images)
        self.batch_requests.observe(n_requests)
        self.embed_seconds.observe(seconds)

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Count and time every request under its route template (``/items/{item_id}``), so that ids
        never become label values; unmatched paths count as ``<unmatched>``."""
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            self.requests.labels(request.method, template, str(status)).inc()
            self.latency.labels(request.method, template).observe(time.perf_counter() - started)
