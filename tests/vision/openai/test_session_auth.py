"""/v1 with the portal's session cookie: the CSRF check runs without eating the JSON body."""

from __future__ import annotations

import json

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def session_client(django_user_model):
    user = django_user_model.objects.create_user(username="sess", password="pw-123456789")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.cookies["csrftoken"] = "k" * 32  # a CSRF secret, as the portal's pages set it
    return client


def test_session_post_without_csrf_token_is_a_403_error_object(session_client):
    response = session_client.post(
        "/v1/chat/completions",
        data=json.dumps({"model": "x", "messages": []}),
        content_type="application/json",
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"


def test_session_post_with_csrf_header_reaches_validation(session_client):
    token = session_client.cookies["csrftoken"].value
    response = session_client.post(
        "/v1/chat/completions",
        data=json.dumps({"model": "qwen3-vl-2b", "messages": [], "max_tokens": -1}),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    # Authenticated and the body was still readable: the request fails validation, not auth.
    assert response.status_code == 400, response.content
    assert response.json()["error"]["type"] == "invalid_request_error"
