"""One `redis.asyncio` client per event loop (and Redis URL) for the web side.

redis.asyncio connections belong to the loop that opened them; uvicorn runs one loop, tests may run
several, so clients are kept per loop instead of per process.
"""

from __future__ import annotations

import asyncio
import weakref

import redis.asyncio as aredis
from django.conf import settings

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
        client = aredis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=CONNECT_TIMEOUT_S
        )
        per_loop[settings.REDIS_URL] = client
    return client
