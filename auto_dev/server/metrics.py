"""``GET /metrics`` in the Prometheus text format (prometheus-client).

Counters of what this process did come from the routes (requests, ingested items, review
decisions made through the API); ``autodev_process_info{pid}`` names the process, since each
worker of ``serve --workers N`` counts its own. Everything else is read from the database at
scrape time by :class:`DatabaseCollector`, so the figures are those of the whole deployment,
whichever process is scraped: event deliveries and cycle jobs by status, candidates by kind and
status,
promotions and rollbacks (every decision recorded, by the API, the CLI or auto-dev itself),
runs by status and their durations, and the LLM ledger (calls, cost, tokens, errors by model).

Each app has its own registry (no global state), and ``/metrics`` needs no token: it shows
counts only, no tenant, agent or tool names. Keep it on an internal network all the same.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auto_dev.queries.metrics import CYCLE_BUCKETS, read_figures

if TYPE_CHECKING:
    from auto_dev.service import AutoDev

log = structlog.get_logger(__name__)

router = APIRouter(tags=["operations"])


class ServiceMetrics:
    """The registry of one app and the counters its routes update."""

    def __init__(self, autodev: AutoDev) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("autodev_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("autodev_http_request_duration_seconds",
                                 "Time to answer an HTTP request", ["method", "route"],
                                 registry=self.registry,
                                 buckets=(.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10))
        self.ingested_items = Counter("autodev_ingested", "Items recorded by the ingest API",
                                      ["kind"], registry=self.registry)
        self.api_decisions = Counter("autodev_api_decisions",
                                     "Promotions and rollbacks made through this process's API",
                                     ["decision"], registry=self.registry)
        # Under ``serve --workers N`` each worker keeps its own counters; the pid says whose
        # a scrape shows.
        Info("autodev_process", "The process that answered this scrape",
             registry=self.registry).info({"pid": str(os.getpid())})
        self.registry.register(DatabaseCollector(autodev))

    def ingested(self, kind: str, count: int) -> None:
        self.ingested_items.labels(kind=kind).inc(count)

    def decided(self, decision: str) -> None:
        self.api_decisions.labels(decision=decision).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class DatabaseCollector(Collector):
    """Gauges and counters read from the database at each scrape."""

    def __init__(self, autodev: AutoDev) -> None:
        self.autodev = autodev

    def describe(self) -> list[Metric]:
        return []  # collected on demand only (not when the collector is registered)

    def collect(self) -> Iterator[Metric]:
        try:
            figures = read_figures(self.autodev.database)
            deliveries = self.autodev.events.stats()
            jobs = self.autodev.jobs.counts()
        except Exception as exc:  # a scrape must answer; the database's state shows in /readyz
            log.warning("metrics_unavailable", error=str(exc))
            up = GaugeMetricFamily("autodev_database_up", "Whether the scrape read the database")
            up.add_metric([], 0)
            yield up
            return
        up = GaugeMetricFamily("autodev_database_up", "Whether the scrape read the database")
        up.add_metric([], 1)
        yield up
        yield _gauge("autodev_event_deliveries", "Event deliveries by status", ["status"],
                     {(k,): v for k, v in deliveries.items()})
        yield _gauge("autodev_cycle_jobs", "Cycle jobs by status (queued, running, done, "
                     "failed)", ["status"], {(k,): v for k, v in jobs.items()})
        yield _gauge("autodev_candidates", "Candidates by kind and status", ["kind", "status"],
                     figures.candidates)
        decisions = CounterMetricFamily("autodev_review_decisions",
                                        "Candidate decisions recorded (approved, rejected, "
                                        "promoted, rolled_back, failed)", labels=["decision"])
        for decision, count in sorted(figures.decisions.items()):
            decisions.add_metric([decision], count)
        yield decisions
        yield _gauge("autodev_runs", "Evolution runs by engine and status",
                     ["engine", "status"], figures.runs)
        durations = HistogramMetricFamily("autodev_cycle_duration_seconds",
                                          "Durations of finished evolution runs",
                                          labels=["engine"])
        bounds = [*(floatToGoString(b) for b in CYCLE_BUCKETS), "+Inf"]
        for engine, hist in sorted(figures.cycle_durations.items()):
            durations.add_metric([engine], list(zip(bounds, hist.buckets, strict=True)),
                                 sum_value=hist.total_s)
        yield durations
        calls = CounterMetricFamily("autodev_llm_calls", "LLM calls by model and status "
                                    "(ok, error, cache_hit, reserved)", labels=["model", "status"])
        cost = CounterMetricFamily("autodev_llm_cost_usd", "LLM spend in USD by model",
                                   labels=["model"])
        tokens = CounterMetricFamily("autodev_llm_tokens", "LLM tokens by model and kind",
                                     labels=["model", "kind"])
        by_model: dict[str, list[float]] = {}
        for (model, status), row in sorted(figures.llm.items()):
            calls.add_metric([model, status], row.calls)
            totals = by_model.setdefault(model, [0.0, 0.0, 0.0])
            totals[0] += row.cost_usd
            totals[1] += row.prompt_tokens
            totals[2] += row.completion_tokens
        for model, (usd, prompt, completion) in by_model.items():
            cost.add_metric([model], usd)
            tokens.add_metric([model, "prompt"], prompt)
            tokens.add_metric([model, "completion"], completion)
        yield calls
        yield cost
        yield tokens


def _gauge(name: str, documentation: str, labels: list[str],
           values: Mapping[Any, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=True,
            response_class=Response)
async def metrics(request: Request) -> Response:
    body = await asyncio.to_thread(request.app.state.metrics.render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """ASGI middleware counting requests by route template (never by raw path: ids in paths
    would make a series per id) and timing them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            metrics: ServiceMetrics | None = getattr(scope["app"].state, "metrics", None)
            if metrics is not None:
                route = getattr(scope.get("route"), "path", "unmatched")
                method = scope.get("method", "?")
                metrics.requests.labels(method=method, route=route, status=str(status)).inc()
                metrics.latency.labels(method=method, route=route).observe(
                    time.perf_counter() - started)


