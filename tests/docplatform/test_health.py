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


def _beat(client, hostname: str, state: str, *, ocr: str | None = None, reason: str = "") -> None:
    """A worker's heartbeat with its engine in `state`; `ocr` adds the capabilities a worker
    reports (vlm from the engine state, ocr as given), None leaves them out (an older worker)."""
    beat = {
        "hostname": hostname,
        "pid": 1,
        "queues": ["vision"],
        "pool": "threads",
        "started_at": time.time(),
        "ts": time.time(),
        "engine": {"state": state, "model": "tiny"},
    }
    if ocr is not None:
        vlm = {"ready": "ready", "loading": "loading"}.get(state, "unavailable")
        beat["capabilities"] = {
            "ocr": {"state": ocr, "reason": ""},
            "vlm": {"state": vlm, "reason": reason if vlm != "ready" else ""},
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
    _beat(isolated_redis, "a@host", "loading", ocr="ready")
    _beat(isolated_redis, "b@host", "ready", ocr="ready")

    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert [(w["hostname"], w["engine"]["state"]) for w in body["workers"]] == [
        ("a@host", "loading"),
        ("b@host", "ready"),
    ]
    assert body["capabilities"]["ocr"] == {
        "state": "ready",
        "ready_workers": 2,
        "loading_workers": 0,
        "reason": "",
    }
    assert body["capabilities"]["vlm"]["ready_workers"] == 1
    assert body["summary"] == "OCR ready, VLM ready"


@pytest.mark.parametrize("state", ["loading", "error", "off"])
def test_readyz_with_no_ready_engine_and_no_ocr_is_503(client, isolated_redis, state):
    """A worker that reports no capabilities (an older release) has no OCR: nothing can run."""
    _beat(isolated_redis, "a@host", state)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["workers"][0]["engine"]["state"] == state
    assert body["capabilities"]["ocr"]["state"] == "unavailable"


@pytest.mark.parametrize(
    ("state", "vlm", "reason"),
    [
        ("off", "unavailable", "VISION_MODEL=none: an OCR-only deployment, no model is loaded"),
        ("error", "unavailable", "ModelNotFound: could not download Qwen/Qwen3-VL-2B-Instruct"),
        ("loading", "loading", "the model is loading"),
    ],
)
def test_readyz_with_ocr_but_no_vlm_is_degraded_200(client, isolated_redis, state, vlm, reason):
    """GIVEN a worker whose OCR is ready and whose VLM is not THEN the deployment is degraded
    (OCR and invoice jobs run), answered 200, with the VLM's reason in the one-line summary."""
    _beat(isolated_redis, "a@host", state, ocr="ready", reason=reason)

    response = client.get("/readyz")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["capabilities"]["vlm"] == {
        "state": vlm,
        "ready_workers": 0,
        "loading_workers": int(vlm == "loading"),
        "reason": reason,
    }
    assert body["summary"] == f"OCR ready, VLM {vlm}: {reason}"
    assert body["checks"]["workers"] == {"ok": False, "live": 1, "ready": 0}


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
