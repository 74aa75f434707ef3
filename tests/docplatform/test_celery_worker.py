"""`celery -A docplatform worker` as an operator types it: no pool, queue or concurrency flags.

Real worker processes on the test Redis (a database number of their own, so they never take the
suite's jobs), each with its own node name; the test worker's tiny checkpoint (VISION_MODEL from
scripts/test.sh) is their engine.
"""

import json
import os
import socket
import subprocess
import sys
import uuid

import pytest
import redis
from celery import Celery

from docplatform.celery import pool_from_argv
from tests.conftest import REPO_ROOT, redis_db_url, wait_for

pytestmark = pytest.mark.integration

# Database 0 is the suite's broker, 1 its cache; the fixtures in tests/ use small numbers.
WORKER_REDIS_DB = 11


def _start(name: str, broker: str, *extra: str) -> tuple[subprocess.Popen, object]:
    log_path = REPO_ROOT / "data" / "test-run" / f"plain-{name.split('@')[0]}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    env = {**os.environ, "REDIS_URL": broker, "WORKER_HEARTBEAT_INTERVAL_SECONDS": "1"}
    command = [sys.executable, "-m", "celery", "-A", "docplatform", "worker", "-n", name, *extra]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return process, log_path


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_plain_worker_command_becomes_a_ready_vision_worker(redis_url):
    broker = redis_db_url(redis_url, WORKER_REDIS_DB)
    client = redis.Redis.from_url(broker, socket_timeout=2)
    client.flushdb()
    name = f"plain-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    process, log_path = _start(name, broker, "-l", "info")
    app = Celery(broker=broker, backend=broker, set_as_current=False)
    try:

        def engine_ready() -> dict | None:
            assert process.poll() is None, (
                f"worker exited {process.returncode}:\n{log_path.read_text()[-3000:]}"
            )
            raw = client.get(f"docplatform:worker:{name}")
            beat = json.loads(raw) if raw else None
            return beat if beat and beat["engine"].get("state") == "ready" else None

        beat = wait_for(engine_ready, timeout=120, interval=0.5, message=f"{name} engine ready")
        assert beat["pool"] == "threads"
        # The shared VLM queue, the OCR queue (every worker consumes both) and its own queue.
        assert beat["queues"] == sorted(["ocr", "vision", f"vision.w.{name}"])

        assert app.control.ping(destination=[name], timeout=5) == [{name: {"ok": "pong"}}]
        stats = app.control.inspect(destination=[name], timeout=5).stats()[name]
        assert stats["pool"]["implementation"] == "celery.concurrency.thread:TaskPool"
        assert stats["pool"]["max-concurrency"] == 4  # WORKER_CONCURRENCY's default

        # It serves the shared queue: a task sent to "vision" comes back from this worker.
        result = app.send_task("vision.ping", queue="vision").get(timeout=60)
        assert result["pong"] is True
        assert result["hostname"] == name
        assert result["engine"]["state"] == "ready"
    finally:
        _stop(process)
        app.close()
        client.flushdb()


@pytest.mark.parametrize("flags", [["-P", "prefork"], ["--pool=solo"], ["-Pprefork", "-c", "2"]])
def test_worker_with_an_unusable_pool_exits_non_zero_at_once(redis_url, flags):
    broker = redis_db_url(redis_url, WORKER_REDIS_DB)
    name = f"badpool-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    process, log_path = _start(name, broker, *flags)
    try:
        code = process.wait(timeout=60)
    finally:
        _stop(process)
    assert code == 2
    log = log_path.read_text()
    assert "must run with the threads pool" in log
    assert f"{name} ready" not in log
    assert redis.Redis.from_url(broker).get(f"docplatform:worker:{name}") is None


def test_worker_overrides_concurrency_on_the_command_line(redis_url):
    broker = redis_db_url(redis_url, WORKER_REDIS_DB)
    name = f"c2-{uuid.uuid4().hex[:6]}@{socket.gethostname()}"
    process, log_path = _start(name, broker, "-P", "threads", "-c", "2", "-Q", "vision")
    app = Celery(broker=broker, backend=broker, set_as_current=False)
    try:

        def stats() -> dict | None:
            assert process.poll() is None, (
                f"worker exited {process.returncode}:\n{log_path.read_text()[-3000:]}"
            )
            return (app.control.inspect(destination=[name], timeout=2).stats() or {}).get(name)

        found = wait_for(stats, timeout=90, interval=0.5, message=f"{name} answers inspect")
        assert found["pool"]["max-concurrency"] == 2
    finally:
        _stop(process)
        app.close()


@pytest.mark.parametrize(
    ("argv", "pool"),
    [
        (["celery", "-A", "docplatform", "worker"], None),
        (["celery", "worker", "-P", "threads"], "threads"),
        (["celery", "worker", "--pool", "prefork"], "prefork"),
        (["celery", "worker", "--pool=solo"], "solo"),
        (["celery", "worker", "-Pgevent"], "gevent"),
    ],
)
def test_pool_from_argv(argv, pool):
    assert pool_from_argv(argv) == pool
