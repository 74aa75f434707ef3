"""A private DocPlatform stack for fault and load tests: our own Redis (started with the production
`docker/redis.conf`: AOF on, noeviction, loopback only), real Celery worker processes and a real
uvicorn, all subprocesses on free loopback ports, all pointed at that Redis.

Database: like tests/vision/openai/conftest.py, the subprocesses open the test database FILE that
pytest-django created (DJANGO_ENV=test, see settings), or on PostgreSQL the test database pytest
is using (`database_env`); tests use `transactional_db` so the rows they create are committed and
visible to the subprocesses. `PostgresCluster` restarts the private cluster of scripts/test.sh
(TEST_PG_DATA, TEST_PG_BIN) for the database fault.

Every wait here is bounded; every process is stopped by the fixture that started it (by its own
pid, never by name).
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from tests.conftest import REPO_ROOT, poll_until, web_command

REDIS_CONF = REPO_ROOT / "docker" / "redis.conf"
# tests/reliability/worker_hooks.py: a vqa job with this question ends its worker with this code.
POISON_QUESTION = "__reliability_poison__"
POISON_EXIT_CODE = 70

# Fast clocks so a fault is noticed in seconds, not minutes (production keeps the defaults in
# docplatform/settings: heartbeat TTL 20 s, stuck grace 60 s, visibility timeout 35 min).
FAST_ENV = {
    "DJANGO_ENV": "test",
    "WORKER_HEARTBEAT_INTERVAL_SECONDS": "1",
    "WORKER_HEARTBEAT_TTL_SECONDS": "3",
    "JOB_STUCK_GRACE_SECONDS": "4",
    "JOB_MAX_ATTEMPTS": "3",
    "VISION_JOB_TIME_LIMIT": "60",
    "OPENAI_REQUEST_TIMEOUT_SECONDS": "60",
    "CELERY_VISIBILITY_TIMEOUT_SECONDS": "90",
    "STICKY_START_TIMEOUT_SECONDS": "3",
    "VISION_THREADS": "1",
}


def database_env() -> dict[str, str]:
    """DATABASE_URL for the subprocesses: the database this pytest process is using (on
    PostgreSQL pytest-django may use a `test_` database that the URL in the environment does not
    name); nothing to add for SQLite (the shared file comes from DATA_DIR)."""
    from urllib.parse import quote

    from django.db import connection

    params = connection.settings_dict
    if connection.vendor != "postgresql":
        return {}
    user = quote(params.get("USER") or "", safe="")
    password = quote(params.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = quote(params.get("HOST") or "", safe="")
    port = f":{params['PORT']}" if params.get("PORT") else ""
    return {"DATABASE_URL": f"postgres://{auth}{host}{port}/{quote(params['NAME'], safe='')}"}


class PostgresCluster:
    """The private PostgreSQL cluster scripts/test.sh started (env TEST_PG_DATA, TEST_PG_BIN), if
    the tests run on it; it runs as the `postgres` system user."""

    def __init__(self, data: str, bin_dir: str) -> None:
        self.data = data
        self.pg_ctl = str(Path(bin_dir) / "pg_ctl")

    @classmethod
    def from_env(cls) -> PostgresCluster | None:
        from django.db import connection

        data, bin_dir = os.environ.get("TEST_PG_DATA"), os.environ.get("TEST_PG_BIN")
        if not data or not bin_dir or connection.vendor != "postgresql":
            return None
        return cls(data, bin_dir)

    def restart(self) -> float:
        """`pg_ctl restart -m fast -w` (every connection is cut); returns the seconds it took."""
        started = time.monotonic()
        command = ["runuser", "-u", "postgres", "--", self.pg_ctl, "-D", self.data, "restart", "-m", "fast"]
        # No pipes: the new postmaster inherits pg_ctl's stdout, and a pipe it holds open would
        # keep run() waiting for an end of file that never comes.
        subprocess.run(
            command + ["-w", "-t", "60"],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=90,
        )
        return time.monotonic() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_dir() -> Path:
    base = Path(os.environ.get("DATA_DIR") or REPO_ROOT / "data") / "test-run" / "reliability"
    base.mkdir(parents=True, exist_ok=True)
    return base


def wait_until(
    predicate: Callable[[], object], *, timeout: float, interval: float = 0.2, what: str
) -> object:
    value = poll_until(predicate, timeout=timeout, interval=interval)
    if not value:
        raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
    return value


def logged_successes(processes, job_ids, *, timeout: float = 30.0) -> collections.Counter:
    """How often each job's "job N succeeded: " line appears over the processes' logs, once every
    job in `job_ids` has one. A worker writes that line just after the database commit that the
    caller saw, so reading the logs at once can miss the last jobs' lines."""
    pattern = re.compile(r"job (\d+) succeeded: ")
    logs = {p.log_path: p for p in processes}.values()  # a restarted worker shares its log

    def count() -> collections.Counter:
        return collections.Counter(int(m) for p in logs for m in pattern.findall(p.log()))

    def complete() -> collections.Counter | None:
        stored = count()
        return stored if all(stored[pk] for pk in job_ids) else None

    try:
        return wait_until(complete, timeout=timeout, interval=0.2, what="every job's success line")
    except TimeoutError:  # the caller's assertion names the jobs without a line
        return count()


def _stop(process: subprocess.Popen, sig: int, timeout: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


class RedisServer:
    """redis-server with our production config on a free port and a private data folder."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="rel-redis-"))
        self.log_path = run_dir() / f"redis-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url(), socket_connect_timeout=1, socket_timeout=2)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                str(REDIS_CONF),
                "--port",
                str(self.port),
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.log_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

        def up() -> bool:
            try:
                return bool(self.client().ping())
            except redis.RedisError:
                return False

        wait_until(up, timeout=15, what=f"redis on {self.port}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            _stop(self.process, sig, timeout=15)

    def remove(self) -> None:
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


class Worker:
    """`celery -A docplatform worker -P threads -Q vision` on the stack's Redis, with the tiny
    checkpoint (VISION_MODEL from scripts/test.sh) and the test hooks."""

    def __init__(
        self,
        *,
        redis_url: str,
        env: dict[str, str] | None = None,
        name: str | None = None,
        concurrency: int = 2,
    ) -> None:
        self.concurrency = concurrency
        self.name = name or f"rel-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        self.redis_url = redis_url
        self.env = {**os.environ, **FAST_ENV, **database_env(), "REDIS_URL": redis_url, **(env or {})}
        self.log_path = run_dir() / f"worker-{self.name.split('@')[0]}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Worker:
        command = [sys.executable, "-m", "celery", "-A", "docplatform", "worker", "-P", "threads"]
        command += [
            "-c",
            str(self.concurrency),
            "-Q",
            "vision",
            "-n",
            self.name,
            "--include",
            "tests.reliability.worker_hooks",
        ]
        command += ["--without-gossip", "--without-mingle", "-l", "info"]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self

    def heartbeat(self) -> dict | None:
        import json

        from vision.heartbeat import heartbeat_key

        raw = redis.Redis.from_url(self.redis_url, socket_timeout=2).get(heartbeat_key(self.name))
        return json.loads(raw) if raw else None

    def wait_ready(self, timeout: float = 120) -> None:
        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"worker {self.name} exited {self.process.returncode}:\n{self.log()[-3000:]}"
                )
            try:
                beat = self.heartbeat()
            except redis.RedisError:
                return False
            state = (beat or {}).get("engine", {}).get("state")
            if state == "error":
                raise RuntimeError(f"worker {self.name} engine failed: {beat}")
            return state == "ready"

        wait_until(ready, timeout=timeout, interval=0.3, what=f"worker {self.name} ready")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process, signal.SIGTERM, timeout=20)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class WebServer:
    """uvicorn serving docplatform.asgi on a free loopback port, on the stack's Redis."""

    def __init__(self, *, redis_url: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **FAST_ENV, **database_env(), "REDIS_URL": redis_url, **(env or {})}
        self.log_path = run_dir() / f"uvicorn-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> WebServer:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            web_command(self.port, "--timeout-graceful-shutdown", "5"),
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        def up() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"uvicorn exited {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout=40, what="uvicorn /healthz")
        return self

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process, signal.SIGTERM, timeout=15)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
