"""May one more generation start? Bounded queue depth and live workers, checked in Redis.

Every /v1 generation is recorded in the sorted set `docplatform:gen:pending` (member = request
id, score = enqueue time) from enqueue until its reader saw the final event or gave up. Its size
is the number of generations queued or running on all workers; above OPENAI_MAX_PENDING new
requests get 429 + Retry-After. With no worker whose VLM is ready, 503 `engine_unavailable` + Retry-After.
Members older than the request timeout are dropped (a web process that died mid-wait).
"""

from __future__ import annotations

import time

from django.conf import settings

from docplatform.errors import CapabilityUnavailable, RetryLater
from vision.capabilities import capability_summary, vlm_refusal
from vision.heartbeat import VLM, WorkerHeartbeat, aheartbeats_read, capable

PENDING_KEY = "docplatform:gen:pending"
RETRY_AFTER_FULL_S = 5
RETRY_AFTER_NO_WORKER_S = 10


async def pending_count(client) -> int:
    await client.zremrangebyscore(
        PENDING_KEY, "-inf", time.time() - settings.OPENAI_REQUEST_TIMEOUT_SECONDS - 60
    )
    return await client.zcard(PENDING_KEY)


async def admission_check(client) -> dict[str, WorkerHeartbeat]:
    """Raise RetryLater/CapabilityUnavailable unless a generation may be enqueued; → ready
    workers. No worker with the VLM ready: 503 `engine_unavailable` saying why (still loading:
    Retry-After 10 s; no model on any worker, or its load failed: the workers' reasons)."""
    beats = await aheartbeats_read(client)
    workers = {beat["hostname"]: beat for beat in beats if capable(beat, VLM)}
    if not workers:
        if not beats:
            raise CapabilityUnavailable(
                "No inference worker is online (starting or down). Retry shortly.",
                retry_after=RETRY_AFTER_NO_WORKER_S,
            )
        message, retry_after = vlm_refusal(capability_summary(beats, VLM)) or ("", RETRY_AFTER_NO_WORKER_S)
        raise CapabilityUnavailable(message, retry_after=retry_after)
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
