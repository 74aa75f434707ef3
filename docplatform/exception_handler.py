"""The DRF exception handler: every error on /api and /v1 becomes JSON.

On `/v1` errors use OpenAI's error object `{"error": {"message", "type", "param", "code"}}`,
elsewhere DRF's `{"detail": ...}` shape. No client ever receives a stack trace or an HTML 500.
"""

import logging
from typing import Any

import redis
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from docplatform.errors import ApplicationError, RetryLater

logger = logging.getLogger(__name__)

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    429: "rate_limit_error",
}


def is_openai_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def error_payload(
    path: str, status_code: int, message: str, code: str | None, param: str | None = None
) -> dict:
    """The error body for `path`: OpenAI's object on /v1, DRF's `detail` shape elsewhere."""
    if is_openai_path(path):
        error_type = _OPENAI_TYPES.get(
            status_code, "server_error" if status_code >= 500 else "invalid_request_error"
        )
        return {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    body: dict[str, Any] = {"detail": message}
    if code:
        body["code"] = code
    return body


def api_exception_handler(exc: Exception, context: dict) -> Response:
    request = context.get("request")
    path = request.path if request is not None else ""

    if isinstance(exc, ApplicationError):
        response = Response(
            error_payload(path, exc.status_code, exc.message, exc.code), status=exc.status_code
        )
        if isinstance(exc, RetryLater):
            response["Retry-After"] = str(exc.retry_after)
        return response

    if isinstance(exc, (redis.RedisError, BrokerError)):
        # Redis (broker, cache, throttle counters) is down or frozen: a clear, retryable 503 instead
        # of a 500. The client timeouts in settings keep this quick.
        logger.warning("%s: Redis unavailable: %s", path, exc)
        return _unavailable(path, "The queue service is unavailable; retry shortly.", "queue_unavailable")

    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database is restarting or unreachable: retryable, like Redis above.
        logger.warning("%s: database unavailable: %s", path, exc)
        return _unavailable(path, "The database is unavailable; retry shortly.", "database_unavailable")

    response = exception_handler(exc, context)
    if response is None:
        # Anything unexpected: log it with the traceback, answer with JSON, never HTML.
        logger.exception("unhandled error in %s", path)
        return Response(
            error_payload(path, 500, "Internal server error.", "internal_error"),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )

    if is_openai_path(path):
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else None
        message = _flatten_detail(response.data)
        response.data = error_payload(
            path, response.status_code, message, code if isinstance(code, str) else None
        )
    return response


def _flatten_detail(data: Any) -> str:
    if isinstance(data, dict):
        if "detail" in data:
            return str(data["detail"])
        return "; ".join(f"{key}: {_flatten_detail(value)}" for key, value in data.items())
    if isinstance(data, list):
        return " ".join(_flatten_detail(item) for item in data)
    return str(data)


def _unavailable(path: str, message: str, code: str) -> Response:
    """A retryable 503: a service the request needs is away for a moment."""
    response = Response(error_payload(path, 503, message, code), status=status.HTTP_503_SERVICE_UNAVAILABLE)
    response["Retry-After"] = "5"
    return response
