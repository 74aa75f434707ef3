"""The queue settings the fault tests rely on: JSON only, late acks with requeue on a lost worker,
one message per thread, a visibility timeout above every deadline but within minutes, and a Redis
that persists (AOF) and never evicts — in our config file, in start.sh, and on a running server."""

from __future__ import annotations

import pickle
import re
import signal
import time
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Producer, Queue

from tests.conftest import REPO_ROOT
from tests.reliability.stack import REDIS_CONF, wait_until


def _conf(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            pairs[key] = value.strip()
    return pairs


def test_redis_config_persists_and_never_evicts():
    conf = _conf(REDIS_CONF)
    assert conf["appendonly"] == "yes"
    assert conf["maxmemory-policy"] == "noeviction"
    assert conf["bind"] == "127.0.0.1"


def test_start_script_runs_redis_with_our_config():
    script = (REPO_ROOT / "scripts" / "start.sh").read_text()
    assert re.search(r'redis-server "\$REPO_ROOT/docker/redis\.conf"', script)
    compose = (REPO_ROOT / "docker" / "docker-compose.yml").read_text()
    assert "appendonly" in compose or "redis.conf" in compose


def test_running_redis_has_aof_and_noeviction(stack_redis):
    client = stack_redis.client()
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}


def test_celery_settings():
    from django.conf import settings

    from docplatform.celery import app

    assert app.conf.accept_content == ["json"]
    assert app.conf.task_serializer == "json" and app.conf.result_serializer == "json"
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    timeout = app.conf.broker_transport_options["visibility_timeout"]
    assert timeout > settings.VISION_JOB_TIME_LIMIT and timeout > settings.OPENAI_REQUEST_TIMEOUT_SECONDS
    assert timeout <= 3600  # a message held by a killed worker comes back within the hour at most
    assert app.conf.broker_transport_options["socket_timeout"] <= 10


def test_visibility_timeout_below_a_deadline_is_refused_at_start():
    import subprocess
    import sys

    env = {"DJANGO_ENV": "test", "VISION_JOB_TIME_LIMIT": "600", "CELERY_VISIBILITY_TIMEOUT_SECONDS": "300"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='docplatform.settings'; django.setup()",
        ],
        cwd=REPO_ROOT,
        env={**__import__("os").environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "CELERY_VISIBILITY_TIMEOUT_SECONDS (300) must exceed" in result.stderr


class _Marker:
    """Unpickling this creates a file: proof that a pickle message was (or was not) deserialized."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.integration
def test_a_pickle_message_is_refused_by_the_worker(stack_redis, start_worker, tmp_path):
    """GIVEN a message serialized with pickle on the vision queue WHEN a worker receives it THEN
    it refuses to deserialize it (nothing runs, the marker file is never created) and keeps
    serving."""
    marker = tmp_path / "unpickled"
    worker = start_worker()
    worker.wait_ready()
    body = pickle.dumps(((_Marker(str(marker)),), {}, {}))
    with Connection(stack_redis.url()) as connection:
        producer = Producer(connection)
        queue = Queue("vision", Exchange("vision"), routing_key="vision")
        producer.publish(
            body,
            routing_key="vision",
            declare=[queue],
            content_type="application/x-python-serialize",
            content_encoding="binary",
            serializer=None,
            headers={
                "task": "vision.ping",
                "id": "pickle-probe",
                "lang": "py",
                "argsrepr": "",
                "kwargsrepr": "",
            },
        )
    wait_until(lambda: "pickle" in worker.log().lower(), timeout=20, what="the worker to refuse the message")
    time.sleep(0.5)
    assert not marker.exists()
    assert "Refusing to deserialize" in worker.log() or "ContentDisallowed" in worker.log()
    assert worker.process.poll() is None
    worker.kill(signal.SIGTERM)
    assert worker.wait_exit(timeout=30) == 0
