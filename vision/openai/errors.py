"""OpenAI error objects for every failure on /v1.

Views raise `OpenAIError` (or let an `ApplicationError` from a service through); `error_response`
turns either into `{"error": {"message", "type", "param", "code"}}` with the right status and, for
429/503, `Retry-After`.
"""

from __future__ import annotations

import redis
from django.http import JsonResponse
from kombu.exceptions import OperationalError as BrokerError

from docplatform.errors import ApplicationError, RetryLater
from docplatform.exception_handler import error_payload


class OpenAIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        error_type: str | None = None,  # overrides the type derived from the status
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.error_type = error_type
        self.retry_after = retry_after

    @classmethod
    def from_application_error(cls, exc: ApplicationError) -> OpenAIError:
        retry_after = exc.retry_after if isinstance(exc, RetryLater) else None
        param = exc.extra.get("param") if exc.extra else None
        return cls(int(exc.status_code), exc.message, code=exc.code, param=param, retry_after=retry_after)

    def payload(self) -> dict:
        body = error_payload("/v1/", self.status, self.message, self.code, self.param)
        if self.error_type:
            body["error"]["type"] = self.error_type
        return body


def invalid(message: str, *, param: str | None = None, code: str | None = "invalid_value") -> OpenAIError:
    return OpenAIError(400, message, param=param, code=code)


# Redis or the Celery broker cannot be reached: the request is answered 503 queue_unavailable.
QUEUE_ERRORS = (redis.RedisError, BrokerError, OSError)


def queue_unavailable() -> OpenAIError:
    return OpenAIError(
        503, "The request queue is unavailable; retry shortly.", code="queue_unavailable", retry_after=5
    )


def error_response(exc: OpenAIError | ApplicationError) -> JsonResponse:
    if isinstance(exc, ApplicationError):
        exc = OpenAIError.from_application_error(exc)
    response = JsonResponse(exc.payload(), status=exc.status)
    if exc.retry_after is not None:
        response["Retry-After"] = str(max(int(exc.retry_after), 1))
    return response
