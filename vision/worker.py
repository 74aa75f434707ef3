"""Worker-side glue: one engine per worker process, and the heartbeat `/readyz` reads.

Lifecycle (wired in `VisionConfig.ready()` through `connect_signals()`):
- `celeryd_after_setup`: also consume the OCR queue and the worker's own queue
  `vision.w.<hostname>`; a worker that has no VLM by configuration (`VISION_MODEL=none`,
  `VISION_ENGINE=off`) does not consume the shared VLM queue.
- `worker_ready`: start loading the OCR runtime and the engine in background threads (the worker
  starts consuming at once; tasks that need the engine see `VisionEngineNotReady` until it is loaded)
  and start the heartbeat thread, which reports both as the worker's capabilities.
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import signals
from django.conf import settings

from docplatform.metrics.recorder import WORKER_METRICS
from vision.capabilities import model_disabled_reason
from vision.heartbeat import (
    LOADING,
    OCR,
    OCR_QUEUE,
    READY,
    SHARED_QUEUE,
    UNAVAILABLE,
    VLM,
    CapabilityStatus,
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


class VisionEngineNotReady(Exception):
    """This worker process's vision engine is off, still loading, or failed to load (the
    process-level state the heartbeat reports; the engine's own `vision.engine.EngineNotReady`
    is what a started engine raises)."""

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


def get_vision_engine() -> Engine:
    """The vision engine of this worker process, for Celery tasks. Raises `VisionEngineNotReady`
    unless its state is "ready"."""
    engine = _holder.engine()
    status = _holder.status()
    if engine is None or status.get("state") != "ready":
        raise VisionEngineNotReady(status)
    return engine


def engine_status() -> dict[str, Any]:
    """What the heartbeat reports about the engine: `engine.status().to_dict()` once it exists."""
    return _holder.status()


def vlm_disabled_reason() -> str | None:
    """Why this worker has no VLM by configuration, or None when it loads a model."""
    return model_disabled_reason(engine=settings.VISION_ENGINE, model=settings.VISION_MODEL)


def vlm_capability() -> CapabilityStatus:
    """The VLM as the heartbeat reports it, from the engine's state."""
    status = engine_status()
    state = status.get("state")
    if state == "ready":
        return CapabilityStatus(
            state=READY,
            reason="",
            model=str(status.get("model", "")),
            formats=dict(status.get("formats") or {}),
        )
    if state in ("loading", "starting"):
        reason = "the model is loading"
        downloaded = _hub_download_bytes(settings.VISION_MODEL)
        if downloaded:
            reason += f" ({downloaded / 1e9:.2f} GB downloaded so far)"
        return CapabilityStatus(state=LOADING, reason=reason, model=str(status.get("model", "")))
    return CapabilityStatus(
        state=UNAVAILABLE, reason=str(status.get("error") or state), model=str(status.get("model", ""))
    )


def _hub_download_bytes(model: str) -> int:
    """Bytes of `model` in the Hugging Face cache so far (a download in progress grows them), or
    0 for a local folder, a model never fetched, or no huggingface_hub. Cheap: a few stat calls."""
    if "/" not in model or model.startswith((".", "/", "~")) or Path(model).exists():
        return 0
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return 0
    blobs = Path(HF_HUB_CACHE) / f"models--{model.replace('/', '--')}" / "blobs"
    try:
        return sum(entry.stat().st_size for entry in blobs.iterdir() if entry.is_file())
    except OSError:
        return 0


class _OcrHolder:
    """The OCR runtime's state in this process: loading, ready, or unavailable with the reason."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._status = CapabilityStatus(state=LOADING, reason="the OCR runtime is loading")

    def set(self, status: CapabilityStatus) -> None:
        with self._lock:
            self._status = status

    def status(self) -> CapabilityStatus:
        with self._lock:
            return CapabilityStatus(**self._status)


_ocr = _OcrHolder()


def ocr_capability() -> CapabilityStatus:
    return _ocr.status()


def _ocr_load() -> None:
    """Runs in a daemon thread: build the process's RapidOCR engine (its models ship in its
    wheel, nothing is downloaded; ~1.5 s), so the first OCR job does not pay for it."""
    started = time.monotonic()
    try:
        from vision.ocr.engine import get_ocr_engine

        get_ocr_engine()
    except Exception as exc:  # reported in the heartbeat; OCR jobs then fail with the reason
        logger.exception("OCR runtime failed to load")
        _ocr.set(CapabilityStatus(state=UNAVAILABLE, reason=f"{type(exc).__name__}: {exc}"))
        return
    _ocr.set(CapabilityStatus(state=READY, reason=""))
    logger.info("OCR runtime ready in %.1f s", time.monotonic() - started)


def capabilities() -> dict[str, CapabilityStatus]:
    """What this worker can run now, for its heartbeat."""
    return {OCR: ocr_capability(), VLM: vlm_capability()}


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
            capabilities=capabilities(),
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
    """Before the worker consumes, whatever `-Q` chose (scripts, compose, tests): add the OCR
    queue (every worker runs OCR) and this worker's own queue (sticky routing), and drop the
    shared VLM queue when this worker has no model by configuration, so VLM work waits for a
    worker that can run it. The heartbeat lists the result."""
    queues = instance.app.amqp.queues
    queues.select_add(OCR_QUEUE)
    queues.select_add(worker_queue_name(sender))
    if vlm_disabled_reason() is not None:
        queues.deselect(SHARED_QUEUE)


def on_worker_ready(sender: Any, **_: Any) -> None:
    global _heartbeat
    consumer = sender
    queues = sorted(queue.name for queue in consumer.task_consumer.queues) if consumer.task_consumer else []
    pool = _pool_name(consumer)

    threading.Thread(target=_ocr_load, name="docplatform-ocr-load", daemon=True).start()
    disabled = vlm_disabled_reason()
    if disabled is not None:
        _holder.set_status(state="off", error=disabled)
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
