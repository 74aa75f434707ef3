"""A real Celery worker process over a real Redis, both started by scripts/test.sh."""

import os
import signal
import uuid

import pytest
import redis

from tests.conftest import redis_db_url, wait_for
from vision.heartbeat import heartbeats_read, worker_queue_name

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def session_worker_name() -> str:
    name = os.environ.get("TEST_WORKER_NAME")
    if not name:
        pytest.fail(
            "TEST_WORKER_NAME is not set: run the suite with scripts/test.sh, which starts the worker"
        )
    return name


def _heartbeats(url: str) -> dict[str, dict]:
    client = redis.Redis.from_url(url, socket_timeout=1)
    try:
        return {beat["hostname"]: beat for beat in heartbeats_read(client)}
    finally:
        client.close()


def test_ping_round_trip_through_the_worker(redis_url, session_worker_name):
    """GIVEN the test worker WHEN a task is sent through Redis THEN that worker answers."""
    from vision.tasks import ping

    result = ping.delay().get(timeout=60)

    assert result["pong"] is True
    assert result["hostname"] == session_worker_name
    assert result["engine"]["state"] in {"loading", "ready", "error"}


def test_session_worker_heartbeat(redis_url, session_worker_name):
    beats = wait_for(lambda: _heartbeats(redis_url).get(session_worker_name), timeout=30, message="heartbeat")
    # The VLM queue (-Q vision), the OCR queue every worker adds, and its own sticky queue.
    assert beats["queues"] == sorted(["ocr", "vision", worker_queue_name(session_worker_name)])
    assert set(beats["capabilities"]) == {"ocr", "vlm"}
    assert beats["pool"] == "threads"
    assert beats["pid"] > 0 and beats["ts"] >= beats["started_at"]
    assert "state" in beats["engine"]


@pytest.mark.django_db
def test_readyz_turns_unhealthy_when_the_worker_stops(client, settings, redis_url, worker_process):
    """GIVEN a live worker on an isolated Redis database WHEN it stops THEN /readyz drops it and
    answers 503."""
    url = redis_db_url(redis_url, 8)
    redis.Redis.from_url(url).flushdb()
    settings.REDIS_URL = url
    name = f"readyz-{uuid.uuid4().hex[:8]}@localhost"
    started = worker_process(name=name, redis_url=url, env={"VISION_ENGINE": "off"})

    def listed() -> list[dict]:
        return [w for w in client.get("/readyz").json()["workers"] if w["hostname"] == name]

    beat = wait_for(listed, timeout=60, message=f"{name} in /readyz")[0]
    assert beat["engine"]["state"] == "off"
    assert beat["pid"] == started.process.pid

    started.stop(signal.SIGTERM)

    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["workers"] == {"ok": False, "live": 0, "ready": 0}
    assert f"worker {name} ready" in started.log()


@pytest.mark.django_db
def test_killed_worker_expires_from_readyz(client, settings, redis_url, worker_process):
    """GIVEN a worker killed without a chance to clean up THEN its heartbeat expires (TTL 3 s)."""
    url = redis_db_url(redis_url, 9)
    redis.Redis.from_url(url).flushdb()
    settings.REDIS_URL = url
    name = f"killed-{uuid.uuid4().hex[:8]}@localhost"
    started = worker_process(name=name, redis_url=url, env={"VISION_ENGINE": "off"})
    wait_for(lambda: name in _heartbeats(url), timeout=60, message=f"{name} heartbeat")

    started.stop(signal.SIGKILL)

    wait_for(lambda: name not in _heartbeats(url), timeout=10, message=f"{name} heartbeat to expire")
    assert client.get("/readyz").status_code == 503


@pytest.mark.django_db
def test_readyz_is_ok_once_the_worker_engine_is_ready(client, redis_url, session_worker_name):
    """GIVEN the test worker loading the tiny checkpoint THEN /readyz turns 200 and shows the
    engine status the worker reports."""

    def ready():
        response = client.get("/readyz")
        beat = next((w for w in response.json()["workers"] if w["hostname"] == session_worker_name), None)
        if beat is not None and beat["engine"].get("state") == "error":
            pytest.fail(f"the test worker's engine failed to load: {beat['engine'].get('error')}")
        return response if response.status_code == 200 else None

    response = wait_for(ready, timeout=180, interval=0.5, message="/readyz 200 (see TEST_WORKER_LOG)")
    body = response.json()
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]
    engine = next(w for w in body["workers"] if w["hostname"] == session_worker_name)["engine"]
    assert engine["state"] == "ready"
    assert engine["model"] == os.environ["VISION_MODEL"]


def test_readyz_shows_the_format_verdict_and_its_evidence(client, redis_url, session_worker_name):
    """GIVEN the test worker on VISION_DTYPE=auto THEN /readyz shows what `auto` chose, on which
    evidence (timings, the machine's load while measuring) and when."""

    def verdict():
        beat = next(
            (w for w in client.get("/readyz").json()["workers"] if w["hostname"] == session_worker_name), None
        )
        return beat and beat["engine"].get("state") == "ready" and beat["engine"].get("format_verdict")

    found = wait_for(verdict, timeout=180, interval=0.5, message="format_verdict in /readyz")
    assert found["lm"] in ("fp32", "bf16", "int8") and found["vision"] in ("fp32", "bf16", "int8")
    assert found["measured_at"] and found["source"].startswith("weights of")
    assert {"loadavg_1m", "others_cpu", "steal"} <= set(found["load"])
    assert set(found["decode_token_s"]) == {"fp32", "bf16", "int8"} and found["decode8_step_s"]
