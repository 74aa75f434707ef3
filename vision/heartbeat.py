"""Worker heartbeats in Redis: the worker writes them, `/readyz` reads them.

Each worker process keeps the key `docplatform:worker:<hostname>` alive (TTL a few intervals)
with a JSON `WorkerHeartbeat`. A key that expired means the worker is gone. No torch here: the
web process imports this module.
"""

import json
import logging
from typing import Any, TypedDict

import redis

logger = logging.getLogger(__name__)

KEY_PREFIX = "docplatform:worker:"


class WorkerHeartbeat(TypedDict):
    hostname: str  # Celery node name, e.g. "vision@host"; also the key suffix
    pid: int
    queues: list[str]  # queues this worker consumes, for routing follow-ups to it
    pool: str  # Celery pool class; the vision worker must use "threads"
    started_at: float  # unix time the worker became ready
    ts: float  # unix time of this beat
    engine: dict[str, Any]  # engine.status().to_dict(), or {"state": "off" | "loading" | "error", ...}


def worker_queue_name(hostname: str) -> str:
    """The queue only this worker consumes (next to the shared "vision" queue): follow-up turns of
    a conversation are sent here so they land on the worker whose prefix cache holds it."""
    return f"vision.w.{hostname}"


def heartbeat_key(hostname: str) -> str:
    return f"{KEY_PREFIX}{hostname}"


def redis_client(url: str, *, timeout: float) -> redis.Redis:
    """A client that gives up after `timeout` seconds instead of hanging on a dead Redis."""
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)


def heartbeat_write(client: redis.Redis, beat: WorkerHeartbeat, *, ttl_seconds: int) -> None:
    client.set(heartbeat_key(beat["hostname"]), json.dumps(beat), ex=ttl_seconds)


def heartbeat_delete(client: redis.Redis, hostname: str) -> None:
    client.delete(heartbeat_key(hostname))


def heartbeats_read(client: redis.Redis) -> list[WorkerHeartbeat]:
    """All live heartbeats, sorted by hostname. Unparsable values are logged and skipped."""
    keys = sorted(client.scan_iter(match=f"{KEY_PREFIX}*", count=100))
    if not keys:
        return []
    beats: list[WorkerHeartbeat] = []
    for key, raw in zip(keys, client.mget(keys), strict=True):
        if raw is None:  # expired between SCAN and MGET
            continue
        try:
            beats.append(json.loads(raw))
        except ValueError:
            logger.warning("ignoring malformed heartbeat under %s", key)
    return beats
