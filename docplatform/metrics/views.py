"""`GET /metrics`: the Prometheus exposition, behind `Authorization: Bearer $METRICS_TOKEN`.

Not public: worker names, queue depths and traffic are operational detail. Without METRICS_TOKEN
the endpoint does not exist (404); with it, any other credential is a 401.
"""

from __future__ import annotations

import asyncio
import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from docplatform.exception_handler import error_payload
from docplatform.metrics.collectors import WorkerCollector
from docplatform.metrics.web import REGISTRY

REGISTRY.register(WorkerCollector())


@never_cache
async def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        return JsonResponse(error_payload(request.path, 404, "Not found.", "not_found"), status=404)
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        response = JsonResponse(
            error_payload(request.path, 401, "A valid metrics token is required.", "not_authenticated"),
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    # The collectors read Redis with a sync client: off the event loop.
    body = await asyncio.to_thread(generate_latest, REGISTRY)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
