"""Prometheus metrics at /metrics: request counts and latencies, executions by status, jobs by state.

Each app has its own registry (tests build many apps in one process). Request metrics are labelled by the route
template, never the raw path, so ids cannot blow up the label space. Job and execution gauges are computed when
Prometheus scrapes: jobs from the cache, executions with one indexed count per status.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pymongo.database import Database
from pymongo.errors import PyMongoError
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from syncjob import mongo
from syncjob.model import ExecutionStatus
from syncjob_api.services.cache import SyncJobCache

UNMATCHED = "<unmatched>"


class StateCollector(Collector):
    def __init__(self, cache: SyncJobCache, db: Callable[[], Database[dict[str, Any]]]) -> None:
        self.cache = cache
        self.db = db

    def collect(self) -> Iterable[Metric]:
        jobs = GaugeMetricFamily("syncjob_api_jobs", "SyncJobs served, by state (active or paused).",
                                 labels=["state"])
        entries = self.cache.entries()
        paused = sum(1 for e in entries if e.job.spec.paused)
        jobs.add_metric(["active"], len(entries) - paused)
        jobs.add_metric(["paused"], paused)
        yield jobs
        status = self.cache.status()
        yield GaugeMetricFamily("syncjob_api_cache_stale", "1 while the SyncJob watch is failing or not synced.",
                                value=1 if status.stale else 0)
        executions = GaugeMetricFamily("syncjob_api_executions", "Execution records kept, by status.",
                                       labels=["status"])
        up = 1
        try:
            coll = self.db()[mongo.EXECUTIONS]
            for s in ExecutionStatus:
                executions.add_metric([s.value], coll.count_documents({"status": s.value}))
        except PyMongoError:
            up = 0
        if up:
            yield executions
        yield GaugeMetricFamily("syncjob_api_mongodb_up", "1 when the last scrape could read MongoDB.", value=up)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("syncjob_api_requests", "HTTP requests answered.", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram(
            "syncjob_api_request_duration_seconds", "Time to answer an HTTP request.", ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=self.registry,
        )

    def watch_state(self, cache: SyncJobCache, db: Callable[[], Database[dict[str, Any]]]) -> None:
        self.registry.register(StateCollector(cache, db))


class RouteTemplates:
    """Maps a request path to its route template (/api/scheduler/jobs/{job_id}), from the OpenAPI paths."""

    def __init__(self, templates: Callable[[], Iterable[str]]) -> None:
        self._source = templates
        self._compiled: list[tuple[re.Pattern[str], str]] | None = None

    def match(self, path: str) -> str:
        if self._compiled is None:
            self._compiled = [(compile_path(t)[0], t) for t in self._source()]
        for regex, template in self._compiled:
            if regex.match(path):
                return template
        return UNMATCHED


class MetricsMiddleware:
    """Pure ASGI middleware (no per-request task, unlike BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, templates: Callable[[], Iterable[str]]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = RouteTemplates(templates)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            template = self.routes.match(scope.get("path", ""))
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
