"""Full queue → 429, no ready worker → 503, both with Retry-After and an OpenAI error object.
In-process (Django's test client runs the async view) with the bound lowered via settings."""

from __future__ import annotations

import time

import pytest
import redis

from accounts.scope import scope_for
from tests.conftest import redis_db_url
from vision.chat.admission import PENDING_KEY

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

BODY = {"model": "qwen3-vl-2b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@pytest.fixture
def key(user_factory) -> str:
    from accounts.services import api_key_create

    return api_key_create(scope=scope_for(user_factory()), name="sdk").raw_key


def _post(client, key):
    return client.post(
        "/v1/chat/completions", BODY, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}"
    )


def test_full_queue_is_429_with_retry_after(client, settings, redis_url, ready_worker, key):
    settings.OPENAI_MAX_PENDING = 2
    sync = redis.Redis.from_url(redis_url)
    occupied = {f"chatcmpl-test-{i}": time.time() for i in range(2)}  # two generations in flight
    sync.zadd(PENDING_KEY, occupied)
    try:
        response = _post(client, key)
    finally:
        sync.zrem(PENDING_KEY, *occupied)
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    error = response.json()["error"]
    assert error["type"] == "rate_limit_error" and "queue is full" in error["message"]


def test_no_ready_worker_is_503_with_retry_after(client, settings, redis_url, key):
    isolated = redis_db_url(redis_url, 9)  # a Redis database without any worker heartbeat
    redis.Redis.from_url(isolated).flushdb()
    settings.REDIS_URL = isolated
    response = _post(client, key)
    assert response.status_code == 503
    assert int(response["Retry-After"]) >= 1
    assert response.json()["error"]["type"] == "server_error"
    assert redis.Redis.from_url(isolated).zcard(PENDING_KEY) == 0  # nothing enqueued


def test_throttled_user_gets_429_error_object(client, settings, key):
    settings.API_THROTTLE_RATES = {"anon": "off", "user": "1/minute"}
    client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {key}")
    response = client.get("/v1/models", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
