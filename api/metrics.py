"""The API's Prometheus metrics, with labels bounded by the route table, not by the traffic.

A label taken from the raw path (job ids) or the raw method would grow without bound; the
route's template and a fixed method set cannot.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from api.errors import ApiError, Handler

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_UNMATCHED = "unmatched"
# From a local broker ack (a few ms) up to the Kafka timeout.
_SUBMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def submit_outcome(status: int) -> str:
    if status == 503:
        return "unavailable"
    return "rejected" if 400 <= status < 500 else "error"


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "kjs_api_requests",
            "HTTP requests answered, by route template and status class.",
            ["route", "method", "code_class"],
            registry=registry,
        )
        self.submit_seconds = Histogram(
            "kjs_api_submit_duration_seconds",
            "Time from receiving POST /v1/jobs to answering it, by outcome.",
            ["outcome"],
            buckets=_SUBMIT_BUCKETS,
            registry=registry,
        )

    @contextmanager
    def timing_submit(self) -> Iterator[None]:
        """Observes the enclosed submit, labelled by how it ended."""
        outcome = "error"
        started = time.perf_counter()
        try:
            yield
            outcome = "accepted"
        except (ApiError, web.HTTPException) as exc:
            outcome = submit_outcome(exc.status)
            raise
        finally:
            self.submit_seconds.labels(outcome).observe(time.perf_counter() - started)


METRICS = web.AppKey("kjs_api_metrics", ApiMetrics)


def route_label(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else _UNMATCHED


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts every answer; it sits outside the error middleware, so errors are counted too."""
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        method = request.method if request.method in _METHODS else "other"
        request.app[METRICS].requests.labels(
            route_label(request), method, f"{status // 100}xx"
        ).inc()
