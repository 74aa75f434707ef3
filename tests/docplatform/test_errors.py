import pytest
from rest_framework.test import APIRequestFactory

from docplatform.errors import NotFound, RetryLater, ServiceUnavailable, ValidationFailed
from docplatform.exception_handler import api_exception_handler

factory = APIRequestFactory()


def _handle(exc: Exception, path: str = "/api/things/"):
    return api_exception_handler(exc, {"request": factory.get(path)})


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (ValidationFailed("bad input"), 400, "invalid_request"),
        (NotFound("no such thing"), 404, "not_found"),
        (RetryLater("slow down", retry_after=7), 429, "rate_limited"),
        (ServiceUnavailable("queue full", retry_after=3), 503, "service_unavailable"),
    ],
)
def test_application_errors_map_to_http(exc, status, code):
    response = _handle(exc)
    assert response.status_code == status
    assert response.data == {"detail": exc.message, "code": code}


def test_retry_later_sets_retry_after():
    assert _handle(RetryLater("slow down", retry_after=7))["Retry-After"] == "7"


def test_unexpected_exception_is_json_500_without_traceback():
    response = _handle(ZeroDivisionError("secret internals"))
    assert response.status_code == 500
    assert response.data == {"detail": "Internal server error.", "code": "internal_error"}


def test_database_unreachable_is_a_retryable_503_not_a_500():
    from django.db import OperationalError

    response = _handle(OperationalError("server closed the connection unexpectedly"))
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.data == {
        "detail": "The database is unavailable; retry shortly.",
        "code": "database_unavailable",
    }


def test_v1_errors_use_the_openai_error_object():
    response = _handle(ServiceUnavailable("queue full", retry_after=3), path="/v1/chat/completions")
    assert response.data == {
        "error": {
            "message": "queue full",
            "type": "server_error",
            "param": None,
            "code": "service_unavailable",
        }
    }


@pytest.mark.django_db
def test_unknown_api_url_is_json_404(client):
    response = client.get("/api/does-not-exist/")
    assert response.status_code == 404
    assert response.json()["detail"] == "Not found."
    response = client.get("/v1/nothing")
    assert response.json()["error"]["type"] == "not_found_error"
