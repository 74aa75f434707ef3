"""Celery tasks of the vision app. Thin: take ids, call a runner (vision.runners) or the
generation adapter (vision.inference), return a small TypedDict."""

from typing import Any, TypedDict

from celery import shared_task


class PingResult(TypedDict):
    pong: bool
    hostname: str  # the worker that answered
    engine: dict[str, Any]  # that worker's engine status


@shared_task(bind=True, name="vision.ping")
def ping(self) -> PingResult:
    """Round trip through the broker and a worker; used by tests and operators."""
    from vision.worker import engine_status

    return PingResult(pong=True, hostname=self.request.hostname or "", engine=engine_status())


class ChatGenerateResult(TypedDict):
    request_id: str
    finish_reason: str  # "skipped": already finished (redelivery) before this run
    worker: str


@shared_task(bind=True, name="vision.chat_generate", ignore_result=True)
def chat_generate(self, spec_json: str) -> ChatGenerateResult:
    """One /v1 chat generation: the spec (text, stored-image paths, parameters) in, tokens out
    through the request's Redis Stream, which the web side reads."""
    from vision.inference import generate_spec_json_to_stream

    worker = self.request.hostname or ""
    output = generate_spec_json_to_stream(spec_json, worker=worker)
    return ChatGenerateResult(
        request_id=self.request.id or "",
        finish_reason=output.finish_reason.value if output is not None else "skipped",
        worker=worker,
    )


class JobRunResult(TypedDict):
    job_id: int
    status: str | None  # the job's final status, or None: nothing to do (finished or taken)


@shared_task(
    bind=True,
    name="vision.job_run",
    ignore_result=True,
    # The engine is still loading (or its queue is full): try again in a few seconds, for up to
    # ~10 minutes, which covers loading the 2B model and choosing its number formats.
    max_retries=120,
    default_retry_delay=5,
)
def job_run_task(self, job_id: int) -> JobRunResult:
    """Run one job by id (vision.runners.loop). Safe to deliver twice: the job row decides."""
    from vision.faults import backoff_s, is_transient
    from vision.runners.claims import job_fail
    from vision.runners.loop import job_run
    from vision.runners.types import EngineUnavailable

    try:
        status = job_run(job_id=job_id, worker=self.request.hostname or "", capabilities=_job_capabilities())
    except EngineUnavailable as exc:
        if exc.permanent or self.request.retries >= self.max_retries:
            job_fail(
                job_id=job_id,
                error=f"No vision engine could run the job: {exc.reason}",
                error_code="engine_unavailable",
            )
            return JobRunResult(job_id=job_id, status="failed")
        raise self.retry(exc=exc) from None
    except Exception as exc:
        # The database or Redis stayed away even through the run loop's own retries (claiming):
        # not the job's fault, so the message comes back later instead of the job failing.
        if not is_transient(exc) or self.request.retries >= self.max_retries:
            raise
        raise self.retry(exc=exc, countdown=backoff_s(self.request.retries, base=2.0, cap=60.0)) from None
    return JobRunResult(job_id=job_id, status=status)


def _job_capabilities():
    """What a job arriving now can run with on this worker: its engine if ready, the engine's
    state, and its OCR and VLM capabilities as its heartbeat reports them."""
    from vision import worker
    from vision.runners.types import WorkerCapabilities

    try:
        engine = worker.get_vision_engine()
    except worker.VisionEngineNotReady:
        engine = None
    return WorkerCapabilities(
        engine=engine,
        engine_status=worker.engine_status(),
        ocr=worker.ocr_capability(),
        vlm=worker.vlm_capability(),
    )


class RetentionRunResult(TypedDict):
    deleted: int  # documents deleted
    organizations: int  # organisations that lost at least one
    failed: int  # documents whose batch failed (the next run tries again)


@shared_task(name="vision.retention_run", ignore_result=True)
def retention_run_task() -> RetentionRunResult:
    """Delete the documents past their retention (vision.services.retention); sent daily by
    `celery beat` (CELERY_BEAT_SCHEDULE)."""
    from vision.services.retention import retention_run

    report = retention_run()
    return RetentionRunResult(
        deleted=report.total, organizations=len(report.deleted), failed=len(report.failed)
    )
