"""Probes and the JSON-aware error pages."""

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.defaults import page_not_found as html_page_not_found
from django.views.defaults import server_error as html_server_error

from docplatform.exception_handler import error_payload
from vision.health import readiness_check

_JSON_PREFIXES = ("/api/", "/v1/")


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving requests. Checks nothing else, on purpose."""
    return JsonResponse({"status": "ok"})


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """200 when the database and Redis answer and a live worker can run OCR (status "ok" when the
    VLM is ready too, "degraded" when not); 503 "unavailable" otherwise. Per capability in the body."""
    readiness = readiness_check()
    response = JsonResponse(readiness.to_dict(), status=200 if readiness.ok else 503)
    # Probes poll every few seconds; a 503 here is a state report (the reason is in the body),
    # not a server error for django.request to log at ERROR each time.
    response._has_been_logged = True
    return response


def _wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(_JSON_PREFIXES) or request.path == "/v1"


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(error_payload(request.path, 404, "Not found.", "not_found"), status=404)
    return html_page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse(
            error_payload(request.path, 500, "Internal server error.", "internal_error"), status=500
        )
    return html_server_error(request)
