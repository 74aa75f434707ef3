"""The run loop of one job: claim → execute → finish, or release when the engine cannot take it.

`job_run` claims the row in a transaction (a finished job, or one a live worker is already
running, is left alone: redelivered messages are harmless), runs the task's runner and writes the
outcome only if the claim still holds (a cancel or a recovery in between wins).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from docplatform.storable import storable_json, storable_text
from vision import streams
from vision.connections import sync_redis
from vision.heartbeat import worker_alive
from vision.models import FINISHED_STATUSES, Job, JobStatus, JobTask
from vision.runners.generation import run_generation
from vision.runners.invoice import run_invoice
from vision.runners.ocr import run_ocr
from vision.runners.types import EngineUnavailable, JobOutcome, JobRunContext, Runner

logger = logging.getLogger(__name__)

PROGRESS_EVERY_S = 1.0  # how often a running job writes its token count to its row

JOB_RUNNERS: dict[JobTask, Runner] = {
    JobTask.CAPTION: run_generation,
    JobTask.VQA: run_generation,
    JobTask.CHAT: run_generation,
    JobTask.OCR: run_ocr,
    JobTask.INVOICE: run_invoice,
}

_running_here: set[int] = set()  # job ids this process is running right now
_running_lock = threading.Lock()


def running_here(job_id: int) -> bool:
    """Is this process running job `job_id` right now (alive, whatever Redis says)?"""
    with _running_lock:
        return job_id in _running_here


def job_run(*, job_id: int, worker: str) -> JobStatus | None:
    """Run job `job_id` on this worker if it still needs running; returns the final status, or
    None when there was nothing to do. Raises EngineUnavailable when the engine cannot take it."""
    engine = _engine()
    # Marked before the claim and until the result is stored: a duplicate delivery taken by
    # another thread of this process meanwhile is ignored here, never seen by the claim as a job
    # "running on this worker's name" but not here, i.e. lost (two workers ran such jobs twice,
    # tests/reliability/test_concurrent_claims.py).
    with _running_lock:
        if job_id in _running_here:
            logger.info("job %s: running in this process, duplicate delivery ignored", job_id)
            return None
        _running_here.add(job_id)
    try:
        job = _job_claim(job_id=job_id, worker=worker)
        if job is None:
            return None
        try:
            outcome = _job_execute(job=job, engine=engine, worker=worker)
        except EngineUnavailable:
            _job_release(job)
            raise
        stored = _job_finish(job=job, outcome=outcome)
        return outcome.status if stored else None
    finally:
        with _running_lock:
            _running_here.discard(job_id)


def _engine():
    from vision.worker import EngineNotReady, get_engine

    try:
        return get_engine()
    except EngineNotReady as exc:
        state = exc.status.get("state")
        raise EngineUnavailable(str(exc), permanent=state == "error") from exc


def _job_claim(*, job_id: int, worker: str) -> Job | None:
    """Claim the row for `worker`. The caller (job_run) has made sure no other thread of this
    process holds the job, so a running row under this worker's own name is a leftover of its
    previous life (a restart under the same name) and is taken over like a lost one."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            logger.warning("job %s: gone, nothing to run", job_id)
            return None
        if job.status in FINISHED_STATUSES:
            logger.info("job %s: already %s, redelivery ignored", job_id, job.status)
            return None
        if job.status == JobStatus.RUNNING:
            if job.worker != worker and worker_alive(sync_redis(), job.worker):
                logger.info("job %s: running on %s, duplicate delivery ignored", job_id, job.worker)
                return None
            logger.warning("job %s: its worker %s is gone, taking over", job_id, job.worker or "?")
        if job.attempts >= settings.JOB_MAX_ATTEMPTS:
            _job_give_up(job)
            return None
        job.status = JobStatus.RUNNING
        job.attempts += 1
        job.worker = worker
        # Unique per attempt, never reused: a database that hands out an old id again (SQLite after
        # deleting the newest rows, a restored backup) must not meet that id's stale stream or
        # cancel key in Redis.
        job.request_id = f"job-{job.pk}-{job.attempts}-{uuid.uuid4().hex[:12]}"
        job.progress_tokens = 0
        job.started_at = timezone.now()
        job.save(
            update_fields=["status", "attempts", "worker", "request_id", "progress_tokens", "started_at"]
        )
    logger.info("job %s: attempt %d on %s", job.pk, job.attempts, worker)
    return job


def _job_give_up(job: Job) -> None:
    job.status = JobStatus.FAILED
    job.error = (
        f"The job was started {job.attempts} times and its worker was lost each time "
        f"(last: {job.worker or 'unknown'}); it is not retried again."
    )
    job.error_code = "worker_lost"
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "error", "error_code", "finished_at"])
    logger.error("job %s failed after %d attempts (worker lost)", job.pk, job.attempts)


def claim_holds(job: Job):
    """The job's row, if it is still running under this claim (attempt and worker unchanged)."""
    return Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, attempts=job.attempts, worker=job.worker)


def _job_release(job: Job) -> None:
    """Give the claim back (engine busy): queued again, the attempt not counted."""
    claim_holds(job).update(status=JobStatus.QUEUED, attempts=job.attempts - 1, worker="", started_at=None)


def _job_execute(*, job: Job, engine, worker: str) -> JobOutcome:
    client = sync_redis()
    last_write = 0.0

    def on_progress(_text: str, tokens: int) -> None:
        nonlocal last_write
        now = time.monotonic()
        if now - last_write < PROGRESS_EVERY_S:
            return
        last_write = now
        if not claim_holds(job).update(progress_tokens=tokens):
            # Cancelled or recovered meanwhile: stop generating for nobody.
            streams.request_cancel(client, job.request_id)

    runner = JOB_RUNNERS[JobTask(job.task)]
    context = JobRunContext(job=job, engine=engine, redis=client, worker=worker, on_progress=on_progress)
    try:
        return runner(context)
    except EngineUnavailable:
        raise
    except Exception as exc:  # a bug or a broken file must end the job readably, not hang it
        logger.exception("job %s: runner %s failed", job.pk, job.task)
        return JobOutcome(
            status=JobStatus.FAILED,
            error=f"The job failed: {type(exc).__name__}.",
            error_code="internal_error",
        )


def _job_finish(*, job: Job, outcome: JobOutcome) -> bool:
    """Store the outcome if the claim still holds; False when a cancel or recovery won."""
    usage = outcome.usage
    stored = claim_holds(job).update(
        status=outcome.status,
        result_text=storable_text(outcome.text),
        result=storable_json(outcome.result),
        finish_reason=outcome.finish_reason,
        error=outcome.error,
        error_code=outcome.error_code,
        prompt_tokens=usage.get("prompt_tokens", 0),
        image_tokens=usage.get("image_tokens", 0),
        completion_tokens=usage.get("completion_tokens", 0),
        cached_tokens=usage.get("cached_tokens", 0),
        progress_tokens=usage.get("completion_tokens", 0),
        timings=outcome.timings,
        finished_at=timezone.now(),
    )
    if stored:
        logger.info(
            "job %s %s: %s tokens out, %.2fs",
            job.pk,
            outcome.status,
            usage.get("completion_tokens", 0),
            outcome.timings.get("total_s", 0.0),
        )
    else:
        logger.info("job %s: outcome discarded (cancelled or taken over meanwhile)", job.pk)
    return bool(stored)


def job_fail(*, job_id: int, error: str, error_code: str) -> None:
    """Fail a job that is not finished (the task gave up waiting for an engine)."""
    Job.objects.filter(pk=job_id).exclude(status__in=FINISHED_STATUSES).update(
        status=JobStatus.FAILED, error=error, error_code=error_code, finished_at=timezone.now()
    )
