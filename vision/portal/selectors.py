"""Reads only the portal shows: the platform's state for the dashboard, and the review queue."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count, QuerySet

from docplatform.errors import NotFound
from vision.capabilities import (
    CapabilitySummary,
    TaskAvailability,
    capabilities_summary,
    deployment_status,
    tasks_availability,
)
from vision.heartbeat import (
    CAPABILITIES,
    OCR_QUEUE,
    SHARED_QUEUE,
    WorkerHeartbeat,
    capability,
    engine_state,
    heartbeats_read,
    redis_client,
)
from vision.models import DOCUMENT_ACTIONS, Extraction, ExtractionEvent, ExtractionStatus, Job, JobStatus

logger = logging.getLogger(__name__)

# The dashboard must render even when Redis is down: short timeouts, and the error shown instead.
_REDIS_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class WorkerState:
    hostname: str
    state: str  # engine state: loading | ready | error | off | stopped
    model: str
    formats: dict[str, str]  # {"lm": "int8", "vision": "fp32"} as the worker measured and chose
    threads: int
    running: int
    waiting: int
    error: str
    capabilities: dict[str, str]  # {"ocr": "ready", "vlm": "unavailable"}


@dataclass(frozen=True)
class PlatformState:
    workers: list[WorkerState] = field(default_factory=list)
    queued_jobs: int = 0  # Job rows waiting for a worker (all users)
    running_jobs: int = 0
    broker_depth: int | None = None  # messages in the VLM and OCR queues; None: Redis unreachable
    redis_error: str = ""
    capabilities: dict[str, CapabilitySummary] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """ok | degraded (e.g. OCR only) | unavailable, as /readyz says."""
        return deployment_status(self.capabilities)

    @property
    def ocr(self) -> CapabilitySummary:
        return self.capabilities["ocr"]

    @property
    def vlm(self) -> CapabilitySummary:
        return self.capabilities["vlm"]

    def tasks(self, tasks: list[str]) -> list[TaskAvailability]:
        """Which of these tasks can run now, and why the others cannot."""
        return tasks_availability(self.capabilities, tasks)

    @property
    def ready_workers(self) -> int:
        return sum(1 for worker in self.workers if worker.state == "ready")

    @property
    def engine_waiting(self) -> int:
        return sum(worker.waiting for worker in self.workers)


def _worker_state(beat: WorkerHeartbeat) -> WorkerState:
    engine = beat.get("engine", {})  # EngineStatus.to_dict(), or the worker's state before it
    return WorkerState(
        hostname=beat.get("hostname", "?"),
        state=engine_state(beat),
        model=str(engine.get("model", "")),
        formats=dict(engine.get("formats") or {}),
        threads=int(engine.get("threads") or 0),
        running=int(engine.get("running") or 0),
        waiting=int(engine.get("waiting") or 0),
        error=str(engine.get("error") or ""),
        capabilities={name: str(capability(beat, name).get("state")) for name in CAPABILITIES},
    )


def platform_state() -> PlatformState:
    """Workers online with their model and chosen number formats, and the depth of the queues."""
    counts = {
        row["status"]: row["n"]
        for row in Job.objects.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
        .values("status")
        .annotate(n=Count("pk"))
    }
    client = redis_client(settings.REDIS_URL, timeout=_REDIS_TIMEOUT_S)
    try:
        beats = heartbeats_read(client)
        depth = client.llen(SHARED_QUEUE) + client.llen(OCR_QUEUE)
        error = ""
    except Exception as exc:  # any Redis failure: show the portal with the reason, never a 500
        logger.warning("dashboard: Redis unavailable: %s", exc)
        beats, depth, error = [], None, type(exc).__name__
    finally:
        client.close()
    workers = [_worker_state(beat) for beat in beats]
    return PlatformState(
        workers=workers,
        queued_jobs=counts.get(JobStatus.QUEUED, 0),
        running_jobs=counts.get(JobStatus.RUNNING, 0),
        broker_depth=depth,
        redis_error=error,
        capabilities=capabilities_summary(beats),
    )


# --- the review queue ------------------------------------------------------------------------


def review_queue(*, scope, status: str = ExtractionStatus.AWAITING_REVIEW) -> QuerySet[Extraction]:
    """The organisation's extractions in one review state, oldest first (the queue's order)."""
    order = "created_at" if status == ExtractionStatus.AWAITING_REVIEW else "-reviewed_at"
    return (
        Extraction.objects.filter(organization=scope.organization, status=status)
        .select_related("document", "document__owner", "reviewer")
        .order_by(order, "pk")
    )


def review_extraction_get(*, scope, extraction_id: int) -> Extraction:
    """Any extraction of the organisation: its reviewers see them all (the view checks the role)."""
    extraction = (
        Extraction.objects.select_related("document", "document__owner", "reviewer", "job")
        .filter(organization=scope.organization, pk=extraction_id)
        .first()
    )
    if extraction is None:
        raise NotFound(f"Extraction {extraction_id} not found.")
    return extraction


def review_events(*, extraction: Extraction) -> QuerySet[ExtractionEvent]:
    """The extraction's review history (the document's views, shares and downloads are in the
    organisation's audit trail, not here)."""
    events = extraction.events.exclude(action__in=DOCUMENT_ACTIONS)
    return events.select_related("actor").order_by("created_at", "pk")


def review_next_id(*, scope, after: Extraction) -> int | None:
    """The next extraction awaiting review after this one, for "approve and open the next"."""
    return (
        review_queue(scope=scope)
        .exclude(pk=after.pk)
        .filter(created_at__gte=after.created_at)
        .values_list("pk", flat=True)
        .first()
    )


# --- the organisation's audit trail ----------------------------------------------------------


def audit_events(*, scope, limit: int | None = None) -> QuerySet[ExtractionEvent]:
    """The organisation's audit trail, newest first: every event of `scope.organization` (review
    changes and what happened to its documents), with the actor; `limit` the latest ones only.
    Who may read it (reviewers and admins; the export admins only) the view decides."""
    events = (
        ExtractionEvent.objects.filter(organization=scope.organization)
        .select_related("actor")
        .order_by("-created_at", "-pk")
    )
    return events[:limit] if limit is not None else events
