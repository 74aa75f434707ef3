"""The process's Redis clients for platform work (streams, cancel keys, heartbeats, queues).

`async_redis()`: one `redis.asyncio` client per event loop (and Redis URL) for the async web
views. redis.asyncio connections belong to the loop that opened them; uvicorn runs one loop, tests
may run several, so clients are kept per loop instead of per process.

`sync_redis()`: one sync client per process, shared by its threads (job runners in a worker,
`job_cancel` in the web process).
"""

from __future__ import annotations

import asyncio
import weakref

import redis
import redis.asyncio as aredis
from django.conf import settings

from vision.heartbeat import redis_client

# XREAD blocks up to 1 s (vision.streams.aread); the socket timeout must outlast it.
SOCKET_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0

_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, aredis.Redis]] = (
    weakref.WeakKeyDictionary()
)


def async_redis() -> aredis.Redis:
    loop = asyncio.get_running_loop()
    per_loop = _clients.setdefault(loop, {})
    client = per_loop.get(settings.REDIS_URL)
    if client is None:
        # Every waiting or streaming /v1 request holds a connection while its XREAD blocks, so the
        # pool is sized by admission (OPENAI_MAX_PENDING) and a request past it waits for one
        # instead of failing: redis-py's default pool refuses with "Too many connections".
        pool = aredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=2 * settings.OPENAI_MAX_PENDING + 32,
            timeout=SOCKET_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
        )
        client = aredis.Redis(connection_pool=pool)
        per_loop[settings.REDIS_URL] = client
    return client


_sync_client: redis.Redis | None = None


def sync_redis() -> redis.Redis:
    global _sync_client
    if _sync_client is None:
        _sync_client = redis_client(settings.REDIS_URL, timeout=5.0)
    return _sync_client
