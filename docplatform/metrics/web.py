"""The web process's own series: request latency per route, responses per status, open streams.

Kept in a registry of our own (not prometheus_client's global one), with the process collector
(memory, CPU, open files), so /metrics shows exactly what is documented.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

# No `_created` twin of every series: Prometheus does not need it and it doubles the page.
disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
# Seconds to the response's headers (for a stream: until it starts). /v1 waits for the model, so
# the top buckets reach minutes.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

REQUEST_LATENCY = Histogram(
    "docplatform_http_request_duration_seconds",
    "Time from the request to its response headers, per route pattern.",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
RESPONSES = Counter(
    "docplatform_http_responses",
    "Responses per route pattern and status code (4xx, 429 and 503 among them).",
    ["method", "route", "status"],
    registry=REGISTRY,
)
OPEN_STREAMS = Gauge(
    "docplatform_http_open_streams",
    "Server-sent event streams (/v1 and the portal chat) open right now.",
    ["route"],
    registry=REGISTRY,
)


V1_REQUESTS = Counter(
    "docplatform_v1_requests",
    "/v1 requests per organisation: the first METRICS_MAX_ORGANIZATIONS organisations a process "
    "serves by their slug, every later one as 'other' (bounded label values).",
    ["organization"],
    registry=REGISTRY,
)
_organization_labels: set[str] = set()
OTHER_ORGANIZATIONS = "other"


def organization_label(slug: str) -> str:
    """The label of an organisation on /metrics: its slug while fewer than
    METRICS_MAX_ORGANIZATIONS have one in this process, else 'other'."""
    if slug in _organization_labels:
        return slug
    if len(_organization_labels) < settings.METRICS_MAX_ORGANIZATIONS:
        _organization_labels.add(slug)
        return slug
    return OTHER_ORGANIZATIONS


def route_label(request: HttpRequest) -> str:
    """The URL pattern (`api/jobs/<int:pk>`), never the raw path: bounded label values."""
    match = getattr(request, "resolver_match", None)
    if match is not None and match.route:
        return match.route
    if request.path.startswith(settings.STATIC_URL):
        return "static"
    return "unmatched"


def _observe(request: HttpRequest, response: HttpResponseBase, started: float) -> None:
    method = request.method if request.method in _METHODS else "other"
    route = route_label(request)
    REQUEST_LATENCY.labels(method, route).observe(time.perf_counter() - started)
    RESPONSES.labels(method, route, str(response.status_code)).inc()


@sync_and_async_middleware
def http_metrics_middleware(get_response: Callable) -> Callable:
    """Outermost middleware: times every response, static files included. Async-capable, so an
    ASGI request (and a streaming /v1 one) never needs a thread for it."""
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponseBase:
            started = time.perf_counter()
            response = await get_response(request)
            _observe(request, response, started)
            return response

    else:

        def middleware(request: HttpRequest) -> HttpResponseBase:
            started = time.perf_counter()
            response = get_response(request)
            _observe(request, response, started)
            return response

    return middleware
