import json
import socket
import time

import pytest
import redis

from tests.conftest import redis_db_url
from vision.heartbeat import heartbeat_key

pytestmark = pytest.mark.django_db

# A Redis database of its own, so the session worker's heartbeat does not count here.
HEALTH_DB = 7


@pytest.fixture
def isolated_redis(redis_url, settings):
    url = redis_db_url(redis_url, HEALTH_DB)
    settings.REDIS_URL = url
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def _beat(client, hostname: str, state: str) -> None:
    beat = {
        "hostname": hostname,
        "pid": 1,
        "queues": ["vision"],
        "pool": "threads",
        "started_at": time.time(),
        "ts": time.time(),
        "engine": {"state": state, "model": "tiny"},
    }
    client.set(heartbeat_key(hostname), json.dumps(beat), ex=20)


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_without_workers_is_503(client, isolated_redis):
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]
    assert body["checks"]["workers"] == {"ok": False, "live": 0, "ready": 0}


def test_readyz_with_a_ready_worker_is_200(client, isolated_redis):
    _beat(isolated_redis, "a@host", "loading")
    _beat(isolated_redis, "b@host", "ready")

    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert [(w["hostname"], w["engine"]["state"]) for w in body["workers"]] == [
        ("a@host", "loading"),
        ("b@host", "ready"),
    ]


@pytest.mark.parametrize("state", ["loading", "error", "off"])
def test_readyz_with_no_ready_engine_is_503(client, isolated_redis, state):
    _beat(isolated_redis, "a@host", state)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["workers"][0]["engine"]["state"] == state


def test_readyz_answers_fast_when_redis_is_down(client, settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"  # nothing listens there

    started = time.monotonic()
    response = client.get("/readyz")

    assert time.monotonic() - started < 2
    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["ok"] is False
