"""A live ASGI server (uvicorn, a subprocess) in front of the real Redis and the real test worker.

Database: DJANGO_ENV=test makes pytest-django's test database a FILE (data/test-db.sqlite3, see
settings), the same path the worker and this uvicorn subprocess open as their default database.
The server starts after pytest-django created and migrated it (`django_db_setup`). Tests that
talk to the server use `transactional_db`: rows they create are committed, so the server sees
them (the `db` fixture's never-committed transaction would be invisible to it and would hold
SQLite's write lock), and the tables are flushed after each test; `serialized_rollback` then
restores what data migrations created (the role groups) for the tests that follow.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from accounts.scope import scope_for
from tests.conftest import REPO_ROOT, wait_for, web_command

# The live server's limits, small enough to test: 2 MB bodies, 4 images, image URL fetching on
# (so the SSRF checks run for real; every address the tests use is refused by them).
SERVER_ENV = {
    "OPENAI_MAX_BODY_BYTES": str(2 * 1024 * 1024),
    "OPENAI_MAX_IMAGES": "4",
    "OPENAI_IMAGE_URL_FETCH": "1",
    "OPENAI_IMAGE_FETCH_TIMEOUT_SECONDS": "3",
    "OPENAI_REQUEST_TIMEOUT_SECONDS": "120",
    "THROTTLE_USER_RATE": "off",
    "THROTTLE_ANON_RATE": "off",
    "METRICS_TOKEN": "metrics-test-token",
}


@dataclass
class LiveServer:
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def live_api(django_db_setup, django_db_blocker, redis_url) -> Iterator[LiveServer]:
    port = _free_port()
    log_path = REPO_ROOT / "data" / "test-run" / "uvicorn-openai.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DJANGO_ENV": "test", "REDIS_URL": redis_url, **SERVER_ENV}
    log = log_path.open("wb")
    process = subprocess.Popen(
        web_command(port),
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = LiveServer(url=f"http://127.0.0.1:{port}", log_path=log_path)

    def up() -> bool:
        if process.poll() is not None:
            pytest.fail(f"uvicorn exited with {process.returncode}:\n{server.log()}")
        try:
            return httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=30, message="uvicorn /healthz")
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="session")
def ready_worker(redis_url) -> dict:
    """The test worker's heartbeat once its engine (tiny checkpoint) is ready."""
    from vision.heartbeat import heartbeats_read

    client = redis.Redis.from_url(redis_url, socket_timeout=2)

    def ready() -> dict | None:
        beats = [b for b in heartbeats_read(client) if b["engine"].get("state") == "ready"]
        errors = [b for b in heartbeats_read(client) if b["engine"].get("state") == "error"]
        if errors:
            pytest.fail(f"worker engine failed: {json.dumps(errors[0]['engine'])[:500]}")
        return beats[0] if beats else None

    return wait_for(ready, timeout=180, interval=0.5, message="a worker with a ready engine")


@pytest.fixture
def make_api_user(transactional_db, django_db_serialized_rollback):
    """→ make(name) -> (user, raw API key), committed so the live server sees them."""
    from accounts.services import api_key_create, user_create

    def make(name: str = "alice"):
        user = user_create(username=f"{name}-{time.monotonic_ns()}", password="correct horse battery")
        return user, api_key_create(scope=scope_for(user), name="sdk").raw_key

    return make
