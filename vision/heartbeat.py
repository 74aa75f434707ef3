"""Worker heartbeats in Redis: the worker writes them; `/readyz`, `/v1` admission, the dashboard,
job recovery and the generation claim read them. This module is the only one that knows the key
and the JSON, so every reader asks it.

Each worker process keeps the key `docplatform:worker:<hostname>` alive (TTL a few intervals)
with a JSON `WorkerHeartbeat`. A key that expired means the worker is gone. No torch here: the
web process imports this module.
"""

import json
import logging
from typing import Any, NotRequired, TypedDict

import redis
import redis.asyncio as aredis

logger = logging.getLogger(__name__)

KEY_PREFIX = "docplatform:worker:"


# What a worker can run. OCR jobs and invoice jobs need only OCR (RapidOCR, whose models ship in
# its wheel); caption, question and chat need the VLM (the engine with its model).
OCR = "ocr"
VLM = "vlm"
CAPABILITIES = (OCR, VLM)

# States of a capability: ready now, coming (the model or OCR runtime is loading), or not on this
# worker at all (VISION_MODEL=none, a failed load; `reason` says which).
READY, LOADING, UNAVAILABLE = "ready", "loading", "unavailable"


class CapabilityStatus(TypedDict, total=False):
    state: str  # READY | LOADING | UNAVAILABLE
    reason: str  # why it is not ready ("" when ready)
    model: str  # vlm: the model (hub id or folder)
    formats: dict[str, str]  # vlm: the number formats the engine chose ({"lm": "int8", ...})


class WorkerHeartbeat(TypedDict):
    hostname: str  # Celery node name, e.g. "vision@host"; also the key suffix
    pid: int
    queues: list[str]  # queues this worker consumes, for routing follow-ups to it
    pool: str  # Celery pool class; the vision worker must use "threads"
    started_at: float  # unix time the worker became ready
    ts: float  # unix time of this beat
    engine: dict[str, Any]  # engine.status().to_dict(), or {"state": "off" | "loading" | "error", ...}
    capabilities: dict[str, CapabilityStatus]  # OCR and VLM: what this worker can run now
    metrics: NotRequired[dict[str, Any]]  # WorkerMetrics.snapshot(): counters, histograms (/metrics)


# The queue of work that needs the VLM (caption, vqa and chat jobs, /v1 generations): Celery's
# default queue, set from this in settings. Consumed by every worker that may have the VLM.
SHARED_QUEUE = "vision"
# The queue of OCR and invoice jobs, consumed by every worker (docs/architecture.md, "Queues"): a
# backlog of slow VLM jobs never sits in front of them.
OCR_QUEUE = "ocr"
# What a worker started without -Q consumes (CELERY_TASK_QUEUES); one started with -Q also gets
# OCR_QUEUE and its own queue added at start-up (vision/worker.py).
WORKER_QUEUES = (SHARED_QUEUE, OCR_QUEUE)


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


def heartbeat_parse(raw: bytes | str | None, *, key: object = "?") -> WorkerHeartbeat | None:
    """The heartbeat stored under `key`, or None when absent or unparsable (logged)."""
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        logger.warning("ignoring malformed heartbeat under %s", key)
        return None


def engine_state(beat: WorkerHeartbeat) -> str:
    """The worker's engine state: loading | ready | error | off | starting ("?" if unknown)."""
    return str(beat.get("engine", {}).get("state", "?"))


def engine_ready(beat: WorkerHeartbeat) -> bool:
    return engine_state(beat) == "ready"


def capability(beat: WorkerHeartbeat, name: str) -> CapabilityStatus:
    """One capability of a worker as its heartbeat reports it. A beat from a worker that does not
    report capabilities (an older release during a rolling upgrade) has the VLM its engine state
    says and no OCR."""
    reported = beat.get("capabilities")
    if isinstance(reported, dict) and isinstance(reported.get(name), dict):
        return reported[name]
    if name == VLM:
        state = engine_state(beat)
        if state == "ready":
            return CapabilityStatus(state=READY, reason="")
        if state in ("loading", "starting"):
            return CapabilityStatus(state=LOADING, reason="the model is loading")
        return CapabilityStatus(state=UNAVAILABLE, reason=str(beat.get("engine", {}).get("error") or state))
    return CapabilityStatus(state=UNAVAILABLE, reason="the worker does not report it")


def capable(beat: WorkerHeartbeat, name: str) -> bool:
    """Can this worker run work that needs `name` (OCR or VLM) right now?"""
    return capability(beat, name).get("state") == READY


def _parsed(keys: list, raws: list) -> list[WorkerHeartbeat]:
    beats = (heartbeat_parse(raw, key=key) for key, raw in zip(keys, raws, strict=True))
    return [beat for beat in beats if beat is not None]  # None: expired between SCAN and MGET


def heartbeats_read(client: redis.Redis) -> list[WorkerHeartbeat]:
    """All live heartbeats, sorted by hostname. Unparsable values are logged and skipped."""
    keys = sorted(client.scan_iter(match=f"{KEY_PREFIX}*", count=100))
    return _parsed(keys, client.mget(keys)) if keys else []


async def aheartbeats_read(client: aredis.Redis) -> list[WorkerHeartbeat]:
    """`heartbeats_read` over a redis.asyncio client (the async /v1 views)."""
    keys = sorted([key async for key in client.scan_iter(match=f"{KEY_PREFIX}*", count=100)])
    return _parsed(keys, await client.mget(keys)) if keys else []


def heartbeat_get(client: redis.Redis, hostname: str) -> WorkerHeartbeat | None:
    """One worker's live heartbeat, or None when it is gone."""
    return heartbeat_parse(client.get(heartbeat_key(hostname)), key=hostname) if hostname else None


def worker_alive(client: redis.Redis, hostname: str) -> bool:
    """Is the worker `hostname` alive, i.e. its heartbeat key has not expired? False for ""."""
    return bool(hostname) and bool(client.exists(heartbeat_key(hostname)))


async def aworker_alive(client: aredis.Redis, hostname: str) -> bool:
    """`worker_alive` over a redis.asyncio client."""
    return bool(hostname) and bool(await client.exists(heartbeat_key(hostname)))
