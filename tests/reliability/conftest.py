"""Fixtures of the fault and load tests: a private stack (tests/reliability/stack.py) per test,
and a user with an API key committed to the shared test database."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from accounts.scope import scope_for
from tests.reliability.stack import RedisServer, WebServer, Worker

logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll would drown the output


@pytest.fixture
def stack_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.remove()


@pytest.fixture
def start_worker(stack_redis: RedisServer) -> Iterator[Callable[..., Worker]]:
    started: list[Worker] = []

    def start(env: dict[str, str] | None = None, name: str | None = None, concurrency: int = 2) -> Worker:
        worker = Worker(redis_url=stack_redis.url(), env=env, name=name, concurrency=concurrency).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process is not None and worker.process.poll() is None:
            worker.kill()
            worker.wait_exit(timeout=10)


@pytest.fixture
def start_web(stack_redis: RedisServer, django_db_setup) -> Iterator[Callable[..., WebServer]]:
    started: list[WebServer] = []

    def start(env: dict[str, str] | None = None) -> WebServer:
        web = WebServer(redis_url=stack_redis.url(), env=env).start()
        started.append(web)
        return web

    yield start
    for web in started:
        web.stop()


@pytest.fixture
def api_key(transactional_db, django_db_serialized_rollback) -> Callable[[str], tuple[object, str]]:
    """→ make(name) -> (user, raw API key), committed so the subprocesses see them."""
    from accounts.services import api_key_create, user_create

    def make(name: str = "rel") -> tuple[object, str]:
        user = user_create(username=f"{name}-{time.monotonic_ns()}", password="correct horse battery")
        return user, api_key_create(scope=scope_for(user), name="reliability").raw_key

    return make


def http(base_url: str, key: str, timeout: float = 30) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout)
