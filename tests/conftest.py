"""Shared fixtures. Redis and the Celery worker are started by `scripts/test.sh`; tests that need
them fail (never skip) when they are missing."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

REPO_ROOT = Path(__file__).resolve().parent.parent
_DJANGO_FIXTURES = {
    "db",
    "transactional_db",
    "client",
    "api_client",
    "live_server",
    "admin_client",
    "user_factory",
}


@pytest.fixture(scope="session")
def django_db_keepdb() -> bool:
    """Create and migrate the test database if needed, never drop it (pytest-django's
    `--reuse-db`, always on). The test worker already has that database open (settings:
    DJANGO_ENV=test makes pytest's test database the one DATABASE_URL names): PostgreSQL refuses
    DROP DATABASE while another session is connected, and a dropped SQLite file would vanish under
    the worker. scripts/test.sh gives every run a fresh database instead."""
    return True


@pytest.fixture(autouse=True)
def _clear_cache(request: pytest.FixtureRequest) -> None:
    """Throttle counters and lockouts live in the cache: start every Django test from zero."""
    if request.node.get_closest_marker("django_db") is None and not _DJANGO_FIXTURES & set(
        request.fixturenames
    ):
        return
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(scope="session")
def redis_url() -> str:
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis at {settings.REDIS_URL} is not reachable ({exc}); run the suite with scripts/test.sh"
        )
    return settings.REDIS_URL


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def user_factory(db) -> Callable:
    from accounts.roles import Role
    from accounts.services import user_create

    counter = iter(range(1_000_000))

    def make(role: Role = Role.MEMBER, password: str = "correct horse battery", organization=None, **kwargs):
        """A user with `role` in their personal organisation; with `organization`, also a member of
        that one with `role`, and acting in it."""
        user = user_create(username=f"user{next(counter)}-{role}", password=password, role=role, **kwargs)
        if organization is not None:
            organization_join(user, organization, role)
        return user

    return make


def organization_join(user, organization, role) -> None:
    """Make `user` a member of `organization` with `role`, acting in it (as the switcher does)."""
    from accounts.models import Membership

    Membership.objects.update_or_create(user=user, organization=organization, defaults={"role": str(role)})
    user.active_organization = organization
    user.save(update_fields=["active_organization"])


@pytest.fixture
def team(db):
    """A team organisation with no members yet (join with `user_factory(role, organization=team)`)."""
    from accounts.models import Organization

    return Organization.objects.create(name="Team", slug=f"team-{next(_teams)}")


_teams = iter(range(1_000_000))


def web_command(port: int, *options: str, python: str = sys.executable) -> list[str]:
    """The platform's ASGI server on loopback, as the tests, the fault stack and the benchmarks
    start it (scripts/start.sh runs the same application)."""
    return [
        python,
        "-m",
        "uvicorn",
        "docplatform.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *options,
    ]


_documents = iter(range(1_000_000))


def stored_document(
    owner, name: str = "inv.png", *, kind: str = "image", content_type: str = "image/png", page_count: int = 1
):
    """A Document row as an upload leaves it, without the file (for tests of what comes after)."""
    from accounts.scope import scope_for
    from vision.models import Document

    n = next(_documents)
    return Document.objects.create(
        organization=scope_for(owner).organization,
        owner=owner,
        original_name=name,
        content_type=content_type,
        kind=kind,
        size=1,
        sha256=f"{n:064x}",
        file=f"uploads/{n}/{name}",
        page_count=page_count,
    )


def redis_db_url(base_url: str, db: int) -> str:
    """The same Redis server, another database number: isolates a test's heartbeats."""
    return base_url.rsplit("/", 1)[0] + f"/{db}"


class WorkerProcess:
    """A real `celery worker` subprocess, for tests that watch workers come and go."""

    def __init__(self, *, name: str, redis_url: str, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = REPO_ROOT / "data" / "test-run" / f"{name.split('@')[0]}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        full_env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "WORKER_HEARTBEAT_INTERVAL_SECONDS": "1",
            "WORKER_HEARTBEAT_TTL_SECONDS": "3",
            **(env or {}),
        }
        command = [sys.executable, "-m", "celery", "-A", "docplatform", "worker", "-P", "threads", "-c", "1"]
        command += [
            "-Q",
            f"throwaway-{name.split('@')[0]}",
            "-n",
            name,
            "--without-gossip",
            "--without-mingle",
            "-l",
            "info",
        ]
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=timeout)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def worker_process(redis_url: str) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*, name: str, redis_url: str, env: dict[str, str] | None = None) -> WorkerProcess:
        worker = WorkerProcess(name=name, redis_url=redis_url, env=env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(signal.SIGKILL)


def poll_until(predicate: Callable[[], object], *, timeout: float, interval: float = 0.2) -> object:
    """The first truthy value `predicate` returns within `timeout` seconds; None after that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def wait_for(
    predicate: Callable[[], object], *, timeout: float, interval: float = 0.2, message: str = ""
) -> object:
    value = poll_until(predicate, timeout=timeout, interval=interval)
    if not value:
        pytest.fail(f"timed out after {timeout} s waiting for {message or predicate}")
    return value
