"""May one more generation start? Bounded queue depth and live workers, checked in Redis.

Every /v1 generation is recorded in the sorted set `docplatform:gen:pending` (member = request
id, score = enqueue time) from enqueue until its reader saw the final event or gave up. Its size
is the number of generations queued or running on all workers; above OPENAI_MAX_PENDING new
requests get 429 + Retry-After. With no worker whose engine is ready, 503 + Retry-After.
Members older than the request timeout are dropped (a web process that died mid-wait).
"""

from __future__ import annotations

import time

from django.conf import settings

from docplatform.errors import RetryLater, ServiceUnavailable
from vision.heartbeat import WorkerHeartbeat, aheartbeats_read, engine_ready

PENDING_KEY = "docplatform:gen:pending"
RETRY_AFTER_FULL_S = 5
RETRY_AFTER_NO_WORKER_S = 10


async def ready_workers(client) -> dict[str, WorkerHeartbeat]:
    """Live heartbeats whose engine is ready, by hostname."""
    return {beat["hostname"]: beat for beat in await aheartbeats_read(client) if engine_ready(beat)}


async def pending_count(client) -> int:
    await client.zremrangebyscore(
        PENDING_KEY, "-inf", time.time() - settings.OPENAI_REQUEST_TIMEOUT_SECONDS - 60
    )
    return await client.zcard(PENDING_KEY)


async def admission_check(client) -> dict[str, WorkerHeartbeat]:
    """Raise RetryLater/ServiceUnavailable unless a generation may be enqueued; → ready workers."""
    workers = await ready_workers(client)
    if not workers:
        raise ServiceUnavailable(
            "No inference worker is ready (starting, loading the model, or down). Retry shortly.",
            retry_after=RETRY_AFTER_NO_WORKER_S,
        )
    pending = await pending_count(client)
    if pending >= settings.OPENAI_MAX_PENDING:
        raise RetryLater(
            f"The generation queue is full ({pending} requests waiting or running). Retry shortly.",
            retry_after=RETRY_AFTER_FULL_S,
        )
    return workers


async def pending_add(client, request_id: str) -> None:
    await client.zadd(PENDING_KEY, {request_id: time.time()})


async def pending_remove(client, request_id: str) -> None:
    await client.zrem(PENDING_KEY, request_id)
