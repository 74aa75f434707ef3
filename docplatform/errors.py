"""The `ApplicationError` family raised by services.

Services raise these instead of DRF exceptions so business code stays free of HTTP;
`docplatform.exception_handler` is the single place that turns them into responses. No DRF
imports here: DRF loads the authentication classes (which import services) while its own
modules are still initialising.
"""

from http import HTTPStatus
from typing import Any


class ApplicationError(Exception):
    """Base of the errors services raise. Subclasses set the HTTP status and a stable code."""

    status_code: int = HTTPStatus.BAD_REQUEST
    code: str = "invalid_request"

    def __init__(self, message: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class ValidationFailed(ApplicationError):
    status_code = HTTPStatus.BAD_REQUEST
    code = "invalid_request"


class NotFound(ApplicationError):
    status_code = HTTPStatus.NOT_FOUND
    code = "not_found"


class PermissionDenied(ApplicationError):
    status_code = HTTPStatus.FORBIDDEN
    code = "permission_denied"


class Conflict(ApplicationError):
    status_code = HTTPStatus.CONFLICT
    code = "conflict"


class RetryLater(ApplicationError):
    """Too many requests or a full queue: the client should retry after `retry_after` seconds."""

    status_code = HTTPStatus.TOO_MANY_REQUESTS
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message, extra=extra)
        self.retry_after = max(int(retry_after), 1)


class ServiceUnavailable(RetryLater):
    status_code = HTTPStatus.SERVICE_UNAVAILABLE
    code = "service_unavailable"


class CapabilityUnavailable(ServiceUnavailable):
    """No worker can run what was asked now (the vision-language model is off, failed to load, or
    still loading); the message says why. OCR work is not refused this way."""

    code = "engine_unavailable"
