"""The job life cycle: submit → queued → (claimed by a worker) running → succeeded | failed |
cancelled.

Web side: `job_submit` validates the task's options, takes an upload or an owned document, creates
the row and queues `vision.job_run` by id after the commit. `job_cancel` stops it.

Worker side: `job_run` claims the row in a transaction (a finished job, or one a live worker is
already running, is left alone: redelivered messages are harmless), runs the task's runner and
writes the outcome only if the claim still holds (a cancel or a recovery in between wins).

Jobs whose worker died are found by `jobs_recover_stuck` (worker start, a watchdog thread in every
worker, and `GET /api/jobs/{id}`): requeued up to JOB_MAX_ATTEMPTS in all, then failed.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from docplatform.errors import Conflict, ServiceUnavailable, ValidationFailed
from vision import streams
from vision.generation import GenerationSpec, SpecMessage, SpecPart
from vision.heartbeat import redis_client
from vision.heartbeat import worker_alive as heartbeat_worker_alive
from vision.models import FINISHED_STATUSES, Batch, Document, Job, JobStatus, JobTask
from vision.selectors import document_get
from vision.services.documents import document_upload
from vision.services.extractions import job_run_invoice, job_run_ocr

logger = logging.getLogger(__name__)

# The instruction each task gives the model. vqa and chat take the user's text instead. ocr and
# invoice get their own pipeline (OCR engine + layout extractor) in issue 6 through JOB_RUNNERS.
TASK_PROMPTS = {
    JobTask.CAPTION: "Describe this image.",
    JobTask.OCR: "Read all the text in this document and return it as plain text in reading order.",
    JobTask.INVOICE: (
        "Extract the invoice fields as JSON with the keys invoice_number, invoice_date, due_date, "
        "seller, seller_tax_id, buyer, buyer_tax_id, currency, items (description, quantity, "
        "unit_price, amount), subtotal, tax, total."
    ),
}
# Tasks that read every page by default; the others look at the first page unless `pages` says.
_ALL_PAGES_TASKS = {JobTask.OCR, JobTask.INVOICE}
MAX_TEXT_CHARS = 8_000  # question / message length; the engine bounds the prompt in tokens anyway
PROGRESS_EVERY_S = 1.0  # how often a running job writes its token count to its row


class EngineUnavailable(Exception):
    """This worker's engine cannot take work now (still loading, off, or overloaded); the task
    retries later. `permanent` marks a failed load: the job fails at once with `reason`."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True)
class UploadedFile:
    name: str
    data: bytes


@dataclass
class JobOutcome:
    """What a runner returns; `job_run` stores it if the claim still holds."""

    status: JobStatus
    text: str = ""
    result: Any = None  # JSON-able structured result, or None
    finish_reason: str = ""
    error: str = ""
    error_code: str = ""
    usage: dict[str, int] = field(default_factory=dict)  # prompt/completion/image/cached tokens
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class JobRunContext:
    """What a runner gets: the claimed job and the worker's means to run it."""

    job: Job
    engine: Any  # vision.engine.Engine (worker only; never imported by web code)
    redis: Any  # sync redis client for the token stream
    worker: str
    on_progress: Callable[[str, int], None]


# --- web side: submit, cancel ----------------------------------------------------------------


def job_options_validate(*, task: str, options: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The task's options, checked and normalised, and max_tokens. Raises ValidationFailed."""
    if task not in JobTask.values:
        raise ValidationFailed(f"Unknown task {task!r}; use one of {', '.join(JobTask.values)}.")
    clean: dict[str, Any] = {}
    for key, needed_by in (("question", JobTask.VQA), ("message", JobTask.CHAT)):
        value = str(options.get(key) or "").strip()
        if task == needed_by and not value:
            raise ValidationFailed(f"Task {task} needs a non-empty '{key}'.")
        if len(value) > MAX_TEXT_CHARS:
            raise ValidationFailed(f"'{key}' is longer than {MAX_TEXT_CHARS} characters.")
        if task == needed_by:
            clean[key] = value
    pages = options.get("pages")
    if pages:
        if not all(isinstance(p, int) and p >= 1 for p in pages):
            raise ValidationFailed("'pages' must be a list of page numbers starting at 1.")
        clean["pages"] = sorted(set(pages))
    max_tokens = options.get("max_tokens")
    if max_tokens is None:
        max_tokens = settings.JOB_DEFAULT_MAX_TOKENS
    if not isinstance(max_tokens, int) or not 1 <= max_tokens <= settings.JOB_MAX_TOKENS_LIMIT:
        raise ValidationFailed(f"'max_tokens' must be an integer from 1 to {settings.JOB_MAX_TOKENS_LIMIT}.")
    return clean, max_tokens


def job_submit(
    *,
    user,
    task: str,
    options: dict[str, Any],
    upload: UploadedFile | None = None,
    document_id: int | None = None,
) -> Job:
    """Create a queued job over an upload or one of the user's documents and queue it.

    Options are checked before the upload is stored, so a bad request stores nothing. Another
    user's document id is NotFound, like one that does not exist."""
    clean, max_tokens = job_options_validate(task=task, options=options)
    if upload is not None and document_id is not None:
        raise ValidationFailed("Send either a file or a document_id, not both.")
    document = document_get(user=user, document_id=document_id) if document_id is not None else None
    if upload is not None:
        document = document_upload(user=user, data=upload.data, filename=upload.name).document
    if document is None and task != JobTask.CHAT:
        raise ValidationFailed(f"Task {task} needs a file or a document_id.")
    if document is not None:
        _check_pages(document, clean.get("pages"))
    with transaction.atomic():
        job = Job.objects.create(
            owner=user, document=document, task=task, options=clean, max_tokens=max_tokens
        )
        job_enqueue_on_commit(job_id=job.pk)
    logger.info("job %s queued: user=%s task=%s document=%s", job.pk, user.pk, task, job.document_id)
    return job


def _check_pages(document: Document, pages: list[int] | None) -> None:
    if pages and max(pages) > document.page_count:
        raise ValidationFailed(f"The document has {document.page_count} pages; asked for page {max(pages)}.")


def job_enqueue_on_commit(*, job_id: int) -> None:
    """Send `vision.job_run` once the row is committed (the worker must see it)."""
    transaction.on_commit(lambda: _job_enqueue(job_id))


def _job_enqueue(job_id: int) -> None:
    from vision.tasks import job_run_task

    try:
        job_run_task.delay(job_id)
    except Exception as exc:  # kombu/redis connection errors: the broker is down
        logger.error("job %s could not be queued: %s", job_id, exc)
        Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
            status=JobStatus.FAILED,
            error="The job queue is unavailable; the job was not started. Submit it again later.",
            error_code="queue_unavailable",
            finished_at=timezone.now(),
        )
        raise ServiceUnavailable("The job queue is unavailable; try again later.", retry_after=10) from exc


def job_cancel(*, job: Job) -> Job:
    """Cancel a queued or running job. A running generation is stopped through its stream's cancel
    key; the worker's late result is discarded because its claim no longer holds."""
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.status in FINISHED_STATUSES:
            raise Conflict(f"Job {job.pk} has already {locked.status}; nothing to cancel.")
        request_id = locked.request_id if locked.status == JobStatus.RUNNING else ""
        locked.status = JobStatus.CANCELLED
        locked.error = "Cancelled by the user."
        locked.error_code = "cancelled"
        locked.finished_at = timezone.now()
        locked.save(update_fields=["status", "error", "error_code", "finished_at"])
    if request_id:
        try:
            streams.request_cancel(_redis(), request_id)
        except Exception as exc:  # the worker also notices at its next progress write
            logger.warning("job %s: cancel key not set: %s", job.pk, exc)
    logger.info("job %s cancelled", job.pk)
    return locked


# --- worker side: run ------------------------------------------------------------------------

_running_here: set[int] = set()  # job ids this process is running right now
_running_lock = threading.Lock()
_redis_client = None


def _redis():
    global _redis_client
    if _redis_client is None:
        _redis_client = redis_client(settings.REDIS_URL, timeout=5.0)
    return _redis_client


def worker_alive(hostname: str) -> bool:
    return heartbeat_worker_alive(_redis(), hostname)


def job_run(*, job_id: int, worker: str) -> JobStatus | None:
    """Run job `job_id` on this worker if it still needs running; returns the final status, or
    None when there was nothing to do. Raises EngineUnavailable when the engine cannot take it."""
    engine = _engine()
    job = _job_claim(job_id=job_id, worker=worker)
    if job is None:
        return None
    with _running_lock:
        _running_here.add(job.pk)
    try:
        outcome = _job_execute(job=job, engine=engine, worker=worker)
    except EngineUnavailable:
        _job_release(job)
        raise
    finally:
        with _running_lock:
            _running_here.discard(job.pk)
    stored = _job_finish(job=job, outcome=outcome)
    return outcome.status if stored else None


def _engine():
    from vision.worker import EngineNotReady, get_engine

    try:
        return get_engine()
    except EngineNotReady as exc:
        state = exc.status.get("state")
        raise EngineUnavailable(str(exc), permanent=state == "error") from exc


def _job_claim(*, job_id: int, worker: str) -> Job | None:
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            logger.warning("job %s: gone, nothing to run", job_id)
            return None
        if job.status in FINISHED_STATUSES:
            logger.info("job %s: already %s, redelivery ignored", job_id, job.status)
            return None
        if job.status == JobStatus.RUNNING:
            with _running_lock:
                here = job.pk in _running_here
            if here or (job.worker != worker and worker_alive(job.worker)):
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


def _claim_holds(job: Job):
    return Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, attempts=job.attempts, worker=job.worker)


def _job_release(job: Job) -> None:
    """Give the claim back (engine busy): queued again, the attempt not counted."""
    _claim_holds(job).update(status=JobStatus.QUEUED, attempts=job.attempts - 1, worker="", started_at=None)


def _job_execute(*, job: Job, engine, worker: str) -> JobOutcome:
    client = _redis()
    last_write = 0.0

    def on_progress(_text: str, tokens: int) -> None:
        nonlocal last_write
        now = time.monotonic()
        if now - last_write < PROGRESS_EVERY_S:
            return
        last_write = now
        if not _claim_holds(job).update(progress_tokens=tokens):
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
    stored = _claim_holds(job).update(
        status=outcome.status,
        result_text=outcome.text,
        result=outcome.result,
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


# --- runners: one per task -------------------------------------------------------------------


def job_generation_spec(job: Job) -> GenerationSpec:
    """The GenerationSpec of a job: its page images, then the task's instruction."""
    options = job.options or {}
    parts: list[SpecPart] = []
    if job.document is not None:
        pages = options.get("pages") or (None if job.task in _ALL_PAGES_TASKS else [1])
        parts.extend(SpecPart(image=image) for image in job.document.spec_images(pages))
    prompt = options.get("question") or options.get("message") or TASK_PROMPTS[JobTask(job.task)]
    parts.append(SpecPart(text=prompt))
    return GenerationSpec(
        request_id=job.request_id,
        messages=[SpecMessage(role="user", parts=parts)],
        task=job.task,
        max_tokens=job.max_tokens,
        deadline_s=float(settings.VISION_JOB_TIME_LIMIT),
        # A job is one-off: keeping its KV would only evict chats' reusable prefixes.
        use_prefix_cache=False,
    )


def _run_generation(context: JobRunContext) -> JobOutcome:
    """Caption, vqa, chat (and, until issue 6, ocr and invoice): one VLM generation."""
    from vision.engine import EngineOverloaded, FinishReason
    from vision.inference import generate_to_stream, output_payload

    spec = job_generation_spec(context.job)
    try:
        output = generate_to_stream(
            context.engine, spec, context.redis, worker=context.worker, on_delta=context.on_progress
        )
    except EngineOverloaded as exc:
        raise EngineUnavailable(str(exc)) from exc
    payload = output_payload(output)
    outcome = JobOutcome(
        status=JobStatus.SUCCEEDED,
        text=output.text,
        finish_reason=output.finish_reason.value,
        usage=payload["usage"],
        timings=payload["timings"],
    )
    if output.finish_reason == FinishReason.CANCELLED:
        outcome.status, outcome.error, outcome.error_code = JobStatus.CANCELLED, "Cancelled.", "cancelled"
    elif output.finish_reason == FinishReason.TIMEOUT:
        outcome.status, outcome.error_code = JobStatus.FAILED, "deadline_exceeded"
        outcome.error = f"The job did not finish within its deadline of {spec.deadline_s:.0f} s."
    elif output.finish_reason == FinishReason.ERROR:
        outcome.status, outcome.error_code = JobStatus.FAILED, "generation_failed"
        outcome.error = f"The model could not run this job: {output.error}"
    return outcome


# ocr and invoice run the OCR engine and the invoice extractor (vision/services/extractions.py).
JOB_RUNNERS: dict[JobTask, Callable[[JobRunContext], JobOutcome]] = {
    JobTask.CAPTION: _run_generation,
    JobTask.VQA: _run_generation,
    JobTask.CHAT: _run_generation,
    JobTask.OCR: job_run_ocr,
    JobTask.INVOICE: job_run_invoice,
}


# --- recovery of jobs whose worker died ------------------------------------------------------


def jobs_recover_stuck(*, restarted_worker: str | None = None) -> int:
    """Requeue (or, past JOB_MAX_ATTEMPTS, fail) running jobs whose worker is gone: its heartbeat
    expired and the job started more than JOB_STUCK_GRACE_SECONDS ago. `restarted_worker`: a worker
    that has just started; its own "running" jobs are leftovers of its previous life whatever
    their age. Returns how many jobs were recovered."""
    cutoff = timezone.now() - timedelta(seconds=settings.JOB_STUCK_GRACE_SECONDS)
    candidates = Job.objects.filter(status=JobStatus.RUNNING)
    recovered = 0
    for job in candidates.only("pk", "attempts", "worker", "started_at"):
        with _running_lock:
            if job.pk in _running_here:  # this process is running it: alive, whatever Redis says
                continue
        leftover = restarted_worker is not None and job.worker == restarted_worker
        if not leftover and (
            (job.started_at is not None and job.started_at > cutoff) or worker_alive(job.worker)
        ):
            continue
        recovered += job_recover(job=job)
    return recovered


def job_recover(*, job: Job) -> int:
    """Requeue one running job whose worker is gone, or fail it when its attempts are used up.
    Conditional on the row being unchanged, so concurrent recoverers act once."""
    with transaction.atomic():
        if job.attempts >= settings.JOB_MAX_ATTEMPTS:
            changed = _claim_holds(job).update(
                status=JobStatus.FAILED,
                error=(
                    f"The worker running this job ({job.worker or 'unknown'}) was lost "
                    f"{job.attempts} times; it is not retried again."
                ),
                error_code="worker_lost",
                finished_at=timezone.now(),
            )
        else:
            changed = _claim_holds(job).update(status=JobStatus.QUEUED, progress_tokens=0)
            if changed:
                job_enqueue_on_commit(job_id=job.pk)
    if changed:
        logger.warning("job %s: worker %s lost after attempt %d, recovered", job.pk, job.worker, job.attempts)
    return changed


def job_recover_if_stuck(*, job: Job) -> Job:
    """The cheap check `GET /api/jobs/{id}` runs: a job running past the grace period whose
    worker's heartbeat is gone is recovered now, and the fresh row returned."""
    if job.status != JobStatus.RUNNING or job.started_at is None:
        return job
    if timezone.now() - job.started_at < timedelta(seconds=settings.JOB_STUCK_GRACE_SECONDS):
        return job
    try:
        alive = worker_alive(job.worker)
    except Exception as exc:  # Redis down: report the job as it is rather than fail the GET
        logger.warning("job %s: heartbeat check failed: %s", job.pk, exc)
        return job
    if not alive and job_recover(job=job):
        job.refresh_from_db()
    return job


def batch_jobs_create(*, batch: Batch, documents: list[Document]) -> list[Job]:
    """The jobs of a new batch (inside the caller's transaction), queued after the commit."""
    clean, max_tokens = job_options_validate(task=batch.task, options=batch.options)
    jobs = [
        Job.objects.create(
            owner=batch.owner,
            batch=batch,
            document=document,
            task=batch.task,
            options=clean,
            max_tokens=max_tokens,
        )
        for document in documents
    ]
    for job in jobs:
        job_enqueue_on_commit(job_id=job.pk)
    return jobs
