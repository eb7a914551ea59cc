"""Prometheus metrics at ``GET /metrics`` (prometheus-client).

- ``gridgov_http_requests_total{method, route, status}`` and
  ``gridgov_http_request_duration_seconds{method, route}`` (histogram) per *route template*
  (``/api/cases/{case_id}``, never the raw path, so the label set stays small; ``unmatched`` for
  404s outside every route), ``gridgov_http_requests_in_flight``;
- ``gridgov_cases_intake_total{endpoint, outcome}``: reports through ``POST /api/cases``
  (``endpoint="api"``) and Open311 (``open311``), outcome ``created``, ``replayed``
  (Idempotency-Key retry), ``rate_limited``, ``refused`` (other 4xx) or ``error`` (5xx);
- ``gridgov_db_pool_*``: the SQLAlchemy pool (size, checked out, idle, overflow);
- ``gridgov_tile_cache_*``: hits, misses, evictions, bytes and entries of the tile cache;
  ``gridgov_page_cache_*`` the same for the feature pages cached beside the tiles.

Exposure: with ``GRIDGOV_METRICS_TOKEN`` set a scraper must send ``Authorization: Bearer
<token>``; without it only clients in ``GRIDGOV_METRICS_ALLOW`` (default loopback) may scrape.
Anything else answers 403. With several uvicorn workers, set ``PROMETHEUS_MULTIPROC_DIR`` (an
empty folder, cleared at each start) and counters are summed over the workers; pool and tile
cache figures are then those of the worker that answers the scrape.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import time
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.limits import INTAKE_PATHS
from api.middleware import request_method
from gis.settings import MetricsSettings

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class AppCollector(Collector):
    """Reads the pool and the tile cache of the app at scrape time."""

    def __init__(self, app: FastAPI):
        self.app = app

    def collect(self) -> Iterator[Metric]:
        engine = getattr(self.app.state, "engine", None)
        pool: Any = getattr(engine, "pool", None)
        if pool is not None and hasattr(pool, "checkedout"):
            for name, doc, value in (
                ("size", "configured pool size (GRIDGOV_POOL_SIZE)", pool.size()),
                ("checked_out", "connections in use", pool.checkedout()),
                ("idle", "connections idle in the pool", pool.checkedin()),
                ("overflow", "connections beyond the pool size (negative: not yet opened)",
                 pool.overflow()),
            ):
                yield GaugeMetricFamily(f"gridgov_db_pool_{name}", doc, value=value)
        cache = getattr(self.app.state, "tile_cache", None)
        if cache is not None:
            stats = cache.stats
            for kind, what, counts, size, entries in (
                ("tile", "tiles", (stats.hits, stats.misses, stats.evicted_by_change,
                                   stats.evicted_by_size), cache.size_bytes, len(cache)),
                ("page", "feature pages", (stats.page_hits, stats.page_misses,
                                           stats.pages_evicted_by_change,
                                           stats.pages_evicted_by_size),
                 cache.pages.bytes, len(cache.pages)),
            ):
                for (name, doc), value in zip(_CACHE_COUNTERS, counts, strict=True):
                    yield CounterMetricFamily(f"gridgov_{kind}_cache_{name}", doc.format(what),
                                              value=value)
                yield GaugeMetricFamily(f"gridgov_{kind}_cache_bytes", f"bytes of cached {what}",
                                        value=size)
                yield GaugeMetricFamily(f"gridgov_{kind}_cache_entries", f"cached {what}",
                                        value=entries)


# The counters of the tile cache and of its feature pages ({} is "tiles" or "feature pages").
_CACHE_COUNTERS = (("hits", "{} answered from the cache"),
                   ("misses", "{} not in the cache (rendered or read)"),
                   ("evicted_by_change", "{} evicted because their data changed"),
                   ("evicted_by_size", "{} evicted to stay under the size bound"))


class Metrics:
    """The app's metrics (``app.state.metrics``), in a registry of its own."""

    def __init__(self, app: FastAPI):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("gridgov_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("gridgov_http_request_duration_seconds",
                                 "time to answer, by route template", ["method", "route"],
                                 buckets=BUCKETS, registry=r)
        self.in_flight = Gauge("gridgov_http_requests_in_flight", "requests being answered",
                               registry=r, multiprocess_mode="livesum")
        self.intake = Counter("gridgov_cases_intake", "case reports by endpoint and outcome",
                              ["endpoint", "outcome"], registry=r)
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # (method, route, status) → its counter and histogram children: ``labels()`` checks
        # and converts the values and takes a lock on every call. As bounded as the label set.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.app_collector = AppCollector(app)
        r.register(self.app_collector)

    def record(self, scope: Scope, status: int, started: float) -> None:
        """Count and time an answered request (``started``: its ``time.perf_counter()``)."""
        method = request_method(scope)
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        children = self._children.get((method, route, status))
        if children is None:
            children = self._children[(method, route, status)] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route))
        children[0].inc()
        children[1].observe(time.perf_counter() - started)
        path = str(scope.get("path", ""))
        if method == "POST" and INTAKE_PATHS.match(path):
            endpoint = "open311" if path.startswith("/open311/") else "api"
            self.intake.labels(endpoint, _outcome(status)).inc()

    def exposition(self) -> bytes:
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            registry.register(self.app_collector)
            return generate_latest(registry)
        return generate_latest(self.registry)


def _outcome(status: int) -> str:
    if status == 201:
        return "created"
    if status == 200:
        return "replayed"
    if status == 429:
        return "rate_limited"
    return "error" if status >= 500 else "refused"


class MetricsMiddleware:
    """Counts and times every HTTP request by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        m = self.metrics
        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        m.in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            m.in_flight.dec()
            m.record(scope, status, started)


def _allowed(request: Request, settings: MetricsSettings) -> str | None:
    """None when the scrape is allowed, else why not."""
    if settings.token:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(),
                                                              settings.token.encode()):
            return None
        return "metrics need `Authorization: Bearer <GRIDGOV_METRICS_TOKEN>`"
    host = request.client.host if request.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"metrics are served to GRIDGOV_METRICS_ALLOW networks only, not {host!r}"
    networks = [ipaddress.ip_network(n.strip(), strict=False)
                for n in settings.allow.split(",") if n.strip()]
    if any(address in net for net in networks if net.version == address.version):
        return None
    return (f"metrics are served to GRIDGOV_METRICS_ALLOW networks only ({settings.allow}),"
            f" not {host}; or set GRIDGOV_METRICS_TOKEN")


def install(app: FastAPI, settings: MetricsSettings) -> Metrics | None:
    """Add the middleware and ``GET /metrics`` (when enabled)."""
    if not settings.enabled:
        return None
    for net in settings.allow.split(","):
        if net.strip():
            ipaddress.ip_network(net.strip(), strict=False)  # fail at start, not at scrape
    metrics = Metrics(app)
    app.state.metrics = metrics

    @app.get("/metrics", include_in_schema=False)
    def scrape(request: Request) -> Response:
        refusal = _allowed(request, settings)
        if refusal is not None:
            return JSONResponse({"detail": refusal, "field": "Authorization"},
                                status_code=403)
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return metrics
