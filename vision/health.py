"""Readiness: can this deployment serve vision work right now, and which of it?

Per capability (vision.capabilities): OCR (OCR and invoice jobs) and the VLM (caption, question,
chat) are each ready, loading or unavailable with the reason. The deployment is `ok` when the
database and Redis answer and every capability is ready on some live worker, `degraded` when only
some are (typically "OCR ready, VLM unavailable: <reason>": the main work runs, answered 200),
and `unavailable` (503) otherwise. Every check is bounded by short timeouts so `/readyz` answers
quickly even when Redis is down.
"""

import logging
import time
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.db import connection

from vision.capabilities import (
    UNAVAILABLE,
    CapabilitySummary,
    capabilities_summary,
    deployment_status,
    summary_text,
)
from vision.heartbeat import WorkerHeartbeat, engine_ready, heartbeats_read, redis_client

logger = logging.getLogger(__name__)

# Readiness probes run often; keep each Redis round trip short.
REDIS_PROBE_TIMEOUT_SECONDS = 0.5


@dataclass
class Check:
    ok: bool
    error: str | None = None  # short, human-readable reason when not ok
    elapsed_ms: float = 0.0


@dataclass
class Readiness:
    database: Check
    redis: Check
    workers: list[WorkerHeartbeat] = field(default_factory=list)

    @property
    def ready_workers(self) -> int:
        return sum(1 for beat in self.workers if engine_ready(beat))

    @property
    def capabilities(self) -> dict[str, CapabilitySummary]:
        return capabilities_summary(self.workers)

    @property
    def status(self) -> str:
        """ok | degraded | unavailable (see the module docstring)."""
        if not (self.database.ok and self.redis.ok):
            return UNAVAILABLE
        return deployment_status(self.capabilities)

    @property
    def ok(self) -> bool:
        """Worth sending traffic to: everything, or at least OCR and invoices, can run."""
        return self.status != UNAVAILABLE

    def to_dict(self) -> dict:
        capabilities = self.capabilities
        return {
            "status": self.status,
            # e.g. "OCR ready, VLM unavailable: VISION_MODEL=none: an OCR-only deployment, ..."
            "summary": summary_text(capabilities) if self.redis.ok else f"Redis: {self.redis.error}",
            "capabilities": {name: item.to_dict() for name, item in capabilities.items()},
            "checks": {
                "database": asdict(self.database),
                "redis": asdict(self.redis),
                "workers": {
                    "ok": self.ready_workers > 0,
                    "live": len(self.workers),
                    "ready": self.ready_workers,
                },
            },
            "workers": self.workers,
        }


def _database_check() -> Check:
    started = time.monotonic()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not ready"; the reason goes to the client
        return Check(ok=False, error=f"{type(exc).__name__}: {exc}", elapsed_ms=_ms_since(started))
    return Check(ok=True, elapsed_ms=_ms_since(started))


def _redis_check() -> tuple[Check, list[WorkerHeartbeat]]:
    started = time.monotonic()
    client = redis_client(settings.REDIS_URL, timeout=REDIS_PROBE_TIMEOUT_SECONDS)
    try:
        client.ping()
        workers = heartbeats_read(client)
    except Exception as exc:  # connection refused, timeout, auth: all mean "not ready"
        return Check(ok=False, error=f"{type(exc).__name__}: {exc}", elapsed_ms=_ms_since(started)), []
    finally:
        client.close()
    return Check(ok=True, elapsed_ms=_ms_since(started)), workers


def readiness_check() -> Readiness:
    redis_check, workers = _redis_check()
    return Readiness(database=_database_check(), redis=redis_check, workers=workers)


def _ms_since(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
