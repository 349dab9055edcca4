"""Prometheus metrics of one API process: request latency by route, the distribution of the
scores given, and how often the fallback stood in for a model.

Each worker process keeps its own registry (scrape each worker, or run one per port); the
timing middleware is plain ASGI, so measuring a request costs microseconds, not a thread hop.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from erp_core.policy import Actor
from serving.security import ANY_ROLE, admits

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 20))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "erpx_request_seconds",
            "Time to answer a request, by route template, method and status.",
            ("route", "method", "status"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.scores = Histogram(
            "erpx_score",
            "Scores given to order lines, by kind and by the model (or fallback) that gave them.",
            ("kind", "model"),
            buckets=SCORE_BUCKETS,
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "erpx_fallback_scores",
            "Order lines scored by a fallback because no champion was in service.",
            ("kind",),
            registry=self.registry,
        )

    def observe_score(self, kind: str, model: str, score: float, fallback: bool) -> None:
        self.scores.labels(kind, model).observe(score)
        if fallback:
            self.fallbacks.labels(kind).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class TimingMiddleware:
    """Times every HTTP request under its route template (``/v1/orders/{order_id}``, so the
    label set stays small); a path no route matched is counted as ``unmatched``."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.metrics.latency.labels(template, scope["method"], str(status["code"])).observe(
                time.perf_counter() - started
            )


async def metrics_of(request: Request) -> Metrics:
    metrics = request.app.state.metrics
    assert isinstance(metrics, Metrics)
    return metrics


MetricsDep = Annotated[Metrics, Depends(metrics_of)]
router = APIRouter(tags=["system"])


@router.get("/metrics", summary="Prometheus metrics of this process (any role's key)")
async def exposition(
    metrics: MetricsDep, _actor: Annotated[Actor, Depends(admits(ANY_ROLE))]
) -> Response:
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def install(app: FastAPI) -> Metrics:
    """Give the app its registry, time every request, and serve ``/metrics``."""
    metrics = Metrics()
    app.state.metrics = metrics
    app.add_middleware(TimingMiddleware, metrics=metrics)
    app.include_router(router)
    return metrics
