"""Worker-side glue: one engine per worker process, and the heartbeat `/readyz` reads.

Lifecycle (wired in `VisionConfig.ready()` through `connect_signals()`):
- `celeryd_after_setup`: also consume the worker's own queue `vision.w.<hostname>`.
- `worker_ready`: start loading the engine in a background thread (the worker starts consuming
  at once; tasks that need the engine see `EngineNotReady` until it is loaded) and start the
  heartbeat thread.
- `worker_shutdown`: stop the heartbeat, delete its key (so `/readyz` sees the worker gone at
  once, not after the TTL), shut the engine down.

`vision.engine` (torch, transformers) is imported here lazily, inside the loader thread, and only
in a worker process. A failed import or load is reported as engine state "error" in the
heartbeat; the worker keeps running and never crash-loops.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from celery import signals
from django.conf import settings

from docplatform.metrics.recorder import WORKER_METRICS
from vision.heartbeat import (
    WorkerHeartbeat,
    heartbeat_delete,
    heartbeat_write,
    redis_client,
    worker_queue_name,
)

if TYPE_CHECKING:
    from vision.engine import Engine

logger = logging.getLogger(__name__)

# Pools in which one process runs all tasks, so a single engine serves them. Under prefork each
# child would need its own model copy, which docs/architecture.md rules out.
_SINGLE_PROCESS_POOLS = ("threads", "solo")


class EngineNotReady(Exception):
    """The engine of this worker is off, still loading, or failed to load."""

    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status
        super().__init__(f"vision engine is {status.get('state')}: {status.get('error') or 'not ready yet'}")


class _EngineHolder:
    """The process's one engine and what to report about it before it exists."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._status: dict[str, Any] = {"state": "starting", "model": settings.VISION_MODEL}

    def set_status(self, **status: Any) -> None:
        with self._lock:
            self._status = {"model": settings.VISION_MODEL, **status}

    def set_engine(self, engine: Engine) -> None:
        with self._lock:
            self._engine = engine

    def engine(self) -> Engine | None:
        with self._lock:
            return self._engine

    def status(self) -> dict[str, Any]:
        engine = self.engine()
        if engine is None:
            with self._lock:
                return dict(self._status)
        try:
            return engine.status().to_dict()
        except Exception as exc:  # a broken status() must not silence the heartbeat
            logger.exception("engine.status() failed")
            return {"state": "error", "model": settings.VISION_MODEL, "error": f"status failed: {exc}"}

    def take(self) -> Engine | None:
        with self._lock:
            engine, self._engine = self._engine, None
            return engine


_holder = _EngineHolder()


def get_engine() -> Engine:
    """The engine of this worker process, for Celery tasks. Raises `EngineNotReady` unless its
    state is "ready"."""
    engine = _holder.engine()
    status = _holder.status()
    if engine is None or status.get("state") != "ready":
        raise EngineNotReady(status)
    return engine


def engine_status() -> dict[str, Any]:
    """What the heartbeat reports about the engine: `engine.status().to_dict()` once it exists."""
    return _holder.status()


def _engine_load() -> None:
    """Runs in a daemon thread: import the engine package, build the engine, start loading."""
    started = time.monotonic()
    try:
        from vision.engine import Engine, EngineConfig

        engine = Engine(
            EngineConfig(
                model=settings.VISION_MODEL,
                dtype=settings.VISION_DTYPE,
                threads=settings.VISION_THREADS,
                max_batch_size=settings.VISION_MAX_BATCH,
                kv_cache_mb=settings.VISION_KV_CACHE_MB,
            )
        )
        engine.start()
    except Exception as exc:  # reported in the heartbeat; the worker stays up for other queues
        logger.exception("vision engine failed to start (model=%s)", settings.VISION_MODEL)
        _holder.set_status(state="error", error=f"{type(exc).__name__}: {exc}")
        return
    _holder.set_engine(engine)
    logger.info(
        "vision engine started loading in %.1f s (model=%s)",
        time.monotonic() - started,
        settings.VISION_MODEL,
    )


class _Heartbeat(threading.Thread):
    """Writes this worker's `WorkerHeartbeat` to Redis every interval until stopped."""

    def __init__(self, *, hostname: str, queues: list[str], pool: str) -> None:
        super().__init__(name="docplatform-heartbeat", daemon=True)
        self.hostname = hostname
        self.queues = queues
        self.pool = pool
        self.started_at = time.time()
        self._stop_event = threading.Event()
        self._client = redis_client(settings.REDIS_URL, timeout=2.0)

    def beat(self) -> WorkerHeartbeat:
        return WorkerHeartbeat(
            hostname=self.hostname,
            pid=os.getpid(),
            queues=self.queues,
            pool=self.pool,
            started_at=self.started_at,
            ts=time.time(),
            engine=engine_status(),
            metrics=WORKER_METRICS.snapshot(),
        )

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                heartbeat_write(self._client, self.beat(), ttl_seconds=settings.WORKER_HEARTBEAT_TTL_SECONDS)
            except Exception as exc:  # Redis blips must not kill the thread; the TTL tells the truth
                logger.warning("heartbeat write failed: %s", exc)
            self._stop_event.wait(settings.WORKER_HEARTBEAT_INTERVAL_SECONDS)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        try:
            heartbeat_delete(self._client, self.hostname)
        except Exception as exc:  # the key expires by itself within the TTL
            logger.warning("heartbeat delete failed: %s", exc)
        self._client.close()


_heartbeat: _Heartbeat | None = None


def _pool_name(consumer: Any) -> str:
    module = type(getattr(consumer, "pool", None)).__module__
    return {"celery.concurrency.thread": "threads", "celery.concurrency.solo": "solo"}.get(module, module)


def on_after_setup(sender: str, instance: Any, **_: Any) -> None:
    """Add this worker's own queue (sticky routing) to the ones `-Q` chose, before it consumes, so
    every way of starting a worker (scripts, compose, tests) gets it and the heartbeat lists it."""
    instance.app.amqp.queues.select_add(worker_queue_name(sender))


def on_worker_ready(sender: Any, **_: Any) -> None:
    global _heartbeat
    consumer = sender
    queues = sorted(queue.name for queue in consumer.task_consumer.queues) if consumer.task_consumer else []
    pool = _pool_name(consumer)

    if settings.VISION_ENGINE == "off":
        _holder.set_status(state="off")
    elif pool not in _SINGLE_PROCESS_POOLS:
        message = f"vision worker must run with -P threads (one engine per process), got pool {pool}"
        logger.error(message)
        _holder.set_status(state="error", error=message)
    else:
        _holder.set_status(state="loading")
        threading.Thread(target=_engine_load, name="docplatform-engine-load", daemon=True).start()

    _heartbeat = _Heartbeat(hostname=consumer.hostname, queues=queues, pool=pool)
    _heartbeat.start()
    logger.info(
        "worker %s ready: queues=%s pool=%s engine=%s",
        consumer.hostname,
        queues,
        pool,
        settings.VISION_ENGINE,
    )


def on_worker_shutdown(**_: Any) -> None:
    global _heartbeat
    if _heartbeat is not None:
        _heartbeat.stop()
        _heartbeat = None
    engine = _holder.take()
    if engine is not None:
        try:
            engine.shutdown()
        except Exception:  # shutting down anyway; keep the traceback in the log
            logger.exception("engine shutdown failed")


def connect_signals() -> None:
    signals.celeryd_after_setup.connect(on_after_setup, weak=False, dispatch_uid="docplatform-worker-queue")
    signals.worker_ready.connect(on_worker_ready, weak=False, dispatch_uid="docplatform-worker-ready")
    signals.worker_shutdown.connect(
        on_worker_shutdown, weak=False, dispatch_uid="docplatform-worker-shutdown"
    )
