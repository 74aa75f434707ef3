"""The run loop of one job: claim → execute → finish, or release when the engine cannot take it.

`job_run` claims the row (a finished job, or one a live worker is already running, is left alone:
redelivered messages are harmless), runs the task's runner and writes the outcome only if the
claim still holds (a cancel or a recovery in between wins).

The claim is the row's `request_id`, new for every attempt: claiming, re-attempting, recording
progress and storing the outcome are all updates conditional on it, so a worker that was cut off
(Redis gone longer than its heartbeat TTL, and another worker recovered the job meanwhile) finds
its claim gone and its late outcome is discarded instead of stored a second time.

Faults (`vision.faults`): the model or the input failing fails the job; a service being
briefly away does not. Database writes retry on a fresh connection; a runner that hit an
unreachable service runs again after a backoff (a new attempt, counted in `attempts` and in
`retries`, which JOB_MAX_ATTEMPTS does not count); token-stream publishing is best effort.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.db.models import F
from django.utils import timezone

from docplatform.storable import storable_json, storable_text
from vision.capabilities import TASK_NEEDS, capability_summary
from vision.connections import sync_redis
from vision.faults import ServiceUnavailable, backoff_s, db_retry, is_transient, reset_connection
from vision.heartbeat import OCR, UNAVAILABLE, VLM, heartbeats_read, worker_alive
from vision.models import FINISHED_STATUSES, Job, JobStatus, JobTask
from vision.runners.claims import claim_holds, job_give_up
from vision.runners.extract import run_extract
from vision.runners.generation import run_generation
from vision.runners.invoice import run_invoice
from vision.runners.ocr import run_ocr
from vision.runners.types import EngineUnavailable, JobOutcome, JobRunContext, Runner, WorkerCapabilities
from vision.services.job_status import job_move

logger = logging.getLogger(__name__)

PROGRESS_EVERY_S = 1.0  # how often a running job writes its token count to its row

JOB_RUNNERS: dict[JobTask, Runner] = {
    JobTask.CAPTION: run_generation,
    JobTask.VQA: run_generation,
    JobTask.CHAT: run_generation,
    JobTask.OCR: run_ocr,
    JobTask.INVOICE: run_invoice,
    JobTask.EXTRACT: run_extract,
}

_running_here: set[int] = set()  # job ids this process is running right now
_running_lock = threading.Lock()


def running_here(job_id: int) -> bool:
    """Is this process running job `job_id` right now (alive, whatever Redis says)?"""
    with _running_lock:
        return job_id in _running_here


def job_run(*, job_id: int, worker: str, capabilities: WorkerCapabilities) -> JobStatus | None:
    """Run job `job_id` on this worker if it still needs running; returns the final status, or
    None when there was nothing to do. `capabilities`: what this worker can run with now. Raises
    EngineUnavailable when this worker lacks what the task needs: the VLM engine for caption,
    vqa, chat and extract; OCR for OCR and invoice jobs, which get the engine only if it is ready
    (an invoice then adds the VLM cross-check)."""
    task = db_retry(
        lambda: Job.objects.filter(pk=job_id).values_list("task", flat=True).first(),
        what=f"job {job_id}: read",
    )
    if task is None:
        logger.warning("job %s: gone, nothing to run", job_id)
        return None
    if TASK_NEEDS[task] == VLM:
        _require_engine(capabilities)
    else:
        _require_ocr(capabilities)
    engine = capabilities.engine
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
        token = uuid.uuid4().hex[:12]
        job = db_retry(
            lambda: _job_claim(job_id=job_id, worker=worker, token=token), what=f"job {job_id}: claim"
        )
        if job is None:
            return None
        try:
            attempt = _job_attempts(job=job, engine=engine, worker=worker, capabilities=capabilities)
        except EngineUnavailable:
            db_retry(lambda: _job_release(job), what=f"job {job.pk}: release")
            raise
        if attempt is None:
            return None
        job, outcome = attempt
        stored = _job_finish(job=job, outcome=outcome)
        return outcome.status if stored else None
    finally:
        with _running_lock:
            _running_here.discard(job_id)


def _require_engine(capabilities: WorkerCapabilities) -> None:
    """Raise EngineUnavailable unless this worker's engine is ready."""
    if capabilities.engine is not None:
        return
    status = capabilities.engine_status
    state = status.get("state")
    # A worker whose model failed (or that has none) fails the job at once only when no other
    # worker has the VLM or is loading it; otherwise the retry lands on one that has.
    permanent = state in ("error", "off") and not _elsewhere(VLM)
    reason = f"vision engine is {state}: {status.get('error') or 'not ready yet'}"
    raise EngineUnavailable(reason, permanent=permanent)


def _require_ocr(capabilities: WorkerCapabilities) -> None:
    """Raise EngineUnavailable when this worker's OCR runtime failed to load (loading is fine:
    the first page waits for it)."""
    status = capabilities.ocr
    if status.get("state") == UNAVAILABLE:
        reason = f"OCR is unavailable on this worker: {status.get('reason')}"
        raise EngineUnavailable(reason, permanent=not _elsewhere(OCR))


def _elsewhere(name: str) -> bool:
    """Does a live worker have capability `name` ready or loading? (Redis down: assume yes, so
    the job is retried rather than failed.)"""
    try:
        beats = heartbeats_read(sync_redis())
    except Exception as exc:
        logger.warning("capability check failed: %s", exc)
        return True
    return capability_summary(beats, name).coming


def _request_id(job_id: int, attempt: int, token: str) -> str:
    # Unique per attempt, never reused: a database that hands out an old id again (SQLite after
    # deleting the newest rows, a restored backup) must not meet that id's stale stream or cancel
    # key in Redis. It is also the claim token.
    return f"job-{job_id}-{attempt}-{token}"


def _job_claim(*, job_id: int, worker: str, token: str | None = None) -> Job | None:
    """Claim the job for one attempt on `worker`: a compare-and-set on the row as read, so two
    deliveries (or a delivery and a recovery) racing for it claim it once. `token` makes a retry
    after a lost database reply find its own claim instead of claiming again. The caller
    (job_run) has made sure no other thread of this process holds the job, so a running row under
    this worker's own name is a leftover of its previous life (a restart under the same name) and
    is taken over like a lost one."""
    token = token or uuid.uuid4().hex[:12]
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        logger.warning("job %s: gone, nothing to run", job_id)
        return None
    if job.request_id.endswith(f"-{token}") and job.status == JobStatus.RUNNING:
        return job  # this claim landed; only the reply to it was lost
    if job.status in FINISHED_STATUSES:
        logger.info("job %s: already %s, redelivery ignored", job_id, job.status)
        return None
    if job.status == JobStatus.RUNNING:
        if job.worker != worker and _worker_maybe_alive(job.worker):
            logger.info("job %s: running on %s, duplicate delivery ignored", job_id, job.worker)
            return None
        logger.warning("job %s: its worker %s is gone, taking over", job_id, job.worker or "?")
    if job.attempts - job.retries >= settings.JOB_MAX_ATTEMPTS:
        job_give_up(job)
        return None
    attempt = job.attempts + 1
    fields = {
        "attempts": attempt,
        "worker": worker,
        "request_id": _request_id(job.pk, attempt, token),
        "progress_tokens": 0,
        "started_at": timezone.now(),
    }
    claimed = job_move(
        source=job.status,
        target=JobStatus.RUNNING,
        where={"pk": job.pk, "attempts": job.attempts, "request_id": job.request_id},
        **fields,
    )
    if not claimed:
        logger.info("job %s: claimed by another delivery meanwhile", job_id)
        return None
    job.status = JobStatus.RUNNING
    for name, value in fields.items():
        setattr(job, name, value)
    logger.info("job %s: attempt %d on %s", job.pk, job.attempts, worker)
    return job


def _worker_maybe_alive(hostname: str) -> bool:
    """Is `hostname` alive? Without Redis nobody can tell: then it counts as alive (the watchdog
    recovers the job once Redis is back if it is not), so a job is never run twice at once."""
    try:
        return worker_alive(sync_redis(), hostname)
    except Exception as exc:
        if not is_transient(exc):
            raise
        logger.warning("heartbeat of %s unknown (%s); leaving its job to it", hostname, exc)
        return True


def _job_release(job: Job) -> None:
    """Give the claim back (engine busy): queued again, the attempt not counted."""
    job_move(
        source=JobStatus.RUNNING,
        target=JobStatus.QUEUED,
        rows=claim_holds(job),
        attempts=job.attempts - 1,
        worker="",
        started_at=None,
    )


def _job_attempts(
    *, job: Job, engine, worker: str, capabilities: WorkerCapabilities | None = None
) -> tuple[Job, JobOutcome] | None:
    """Run the job's runner; when it hit an unreachable service, wait (backoff with jitter) and
    run it again as a new attempt, up to JOB_SERVICE_RETRIES times. None when the claim was lost
    meanwhile (cancelled, or recovered by another worker)."""
    retry = 0
    while True:
        try:
            return job, _job_execute(job=job, engine=engine, worker=worker, capabilities=capabilities)
        except ServiceUnavailable as exc:
            cause = exc.__cause__ or exc
            if retry >= settings.JOB_SERVICE_RETRIES:
                logger.error(
                    "job %s: a service stayed unavailable after %d retries: %s", job.pk, retry, cause
                )
                return job, JobOutcome(
                    status=JobStatus.FAILED,
                    error=(
                        f"A service the job needs stayed unavailable after {retry} retries "
                        f"({type(cause).__name__}); submit it again later."
                    ),
                    error_code="service_unavailable",
                )
            wait = backoff_s(retry, base=1.0, cap=30.0)
            logger.warning(
                "job %s: attempt %d hit an unavailable service (%s: %s); running it again in %.1f s",
                job.pk,
                job.attempts,
                type(cause).__name__,
                cause,
                wait,
            )
            time.sleep(wait)
            retry += 1
            again = _job_reattempt(job)
            if again is None:
                logger.info("job %s: claim lost while waiting for the service; not run again here", job.pk)
                return None
            job = again


def _job_reattempt(job: Job) -> Job | None:
    """The next attempt under the same claim (the previous one hit a service blip): a new
    request_id, `attempts` and `retries` + 1. None when the claim no longer holds."""
    new_id = _request_id(job.pk, job.attempts + 1, uuid.uuid4().hex[:12])

    def write() -> bool:
        changed = job_move(
            source=JobStatus.RUNNING,
            target=JobStatus.RUNNING,
            rows=claim_holds(job),
            attempts=F("attempts") + 1,
            retries=F("retries") + 1,
            request_id=new_id,
            progress_tokens=0,
            started_at=timezone.now(),
        )
        # 0 rows after a lost reply: the update may have landed all the same.
        return bool(changed) or Job.objects.filter(pk=job.pk, request_id=new_id).exists()

    if not db_retry(write, what=f"job {job.pk}: re-attempt"):
        return None
    job.refresh_from_db()
    return job


def _job_execute(
    *, job: Job, engine, worker: str, capabilities: WorkerCapabilities | None = None
) -> JobOutcome:
    """Run the job's runner once. The job's own failure comes back as a failed outcome; a service
    that could not be reached raises ServiceUnavailable (the caller runs it again)."""
    client = sync_redis()
    last_write = 0.0

    def on_progress(_text: str, tokens: int) -> bool:
        """Record progress; False stops the generation: the claim is gone (cancel or recovery)."""
        nonlocal last_write
        now = time.monotonic()
        if now - last_write < PROGRESS_EVERY_S:
            return True
        last_write = now
        try:
            return bool(claim_holds(job).update(progress_tokens=tokens))
        except (OperationalError, InterfaceError) as exc:  # progress is best effort; the result is not
            logger.warning("job %s: progress not recorded (%s)", job.pk, exc)
            reset_connection()
            return True

    runner = JOB_RUNNERS[JobTask(job.task)]
    context = JobRunContext(
        job=job,
        engine=engine,
        redis=client,
        worker=worker,
        on_progress=on_progress,
        capabilities=capabilities or WorkerCapabilities(engine=engine),
    )
    try:
        return runner(context)
    except EngineUnavailable:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise ServiceUnavailable(str(exc)) from exc
        # A bug or a broken file must end the job readably, not hang it.
        logger.exception("job %s: runner %s failed", job.pk, job.task)
        return JobOutcome(
            status=JobStatus.FAILED,
            error=f"The job failed: {type(exc).__name__}.",
            error_code="internal_error",
        )


def _job_finish(*, job: Job, outcome: JobOutcome) -> bool:
    """Store the outcome if the claim still holds; False when a cancel or recovery won.
    Idempotent: a retry after a lost database reply finds its own write and reports it stored."""
    usage = outcome.usage
    fields = {
        "result_text": storable_text(outcome.text),
        "result": storable_json(outcome.result),
        "finish_reason": outcome.finish_reason,
        "error": outcome.error,
        "error_code": outcome.error_code,
        "prompt_tokens": usage.get("prompt_tokens", 0),
        "image_tokens": usage.get("image_tokens", 0),
        "completion_tokens": usage.get("completion_tokens", 0),
        "cached_tokens": usage.get("cached_tokens", 0),
        "progress_tokens": usage.get("completion_tokens", 0),
        "timings": outcome.timings,
        "finished_at": timezone.now(),
    }

    def write() -> bool:
        if job_move(source=JobStatus.RUNNING, target=outcome.status, rows=claim_holds(job), **fields):
            return True
        return Job.objects.filter(
            pk=job.pk, request_id=job.request_id, status=outcome.status, finished_at=fields["finished_at"]
        ).exists()

    stored = db_retry(write, what=f"job {job.pk}: store the outcome")
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
