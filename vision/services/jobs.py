"""What users ask of jobs: submit, cancel, and the jobs of a new batch.

The job life cycle: submit → queued → (claimed by a worker) running → succeeded | failed |
cancelled. `job_submit` validates the task's options, takes an upload or an owned document,
creates the row and queues `vision.job_run` by id after the commit; `job_cancel` stops it. What
runs when the job runs, and the recovery of jobs whose worker died, is `vision.runners`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from docplatform.errors import CapabilityUnavailable, Conflict, NotFound, ServiceUnavailable, ValidationFailed
from vision import streams
from vision.capabilities import TASK_NEEDS, capability_summary, task_queue, vlm_refusal
from vision.connections import sync_redis
from vision.engine.contract import InvalidSampling, SamplingParams
from vision.heartbeat import VLM, heartbeats_read
from vision.models import FINISHED_STATUSES, Batch, Document, DocumentKind, Job, JobStatus, JobTask
from vision.selectors import document_get, document_type_get
from vision.services.documents import document_upload
from vision.services.job_status import job_move

logger = logging.getLogger(__name__)

MAX_TEXT_CHARS = 8_000  # question / message length; the engine bounds the prompt in tokens anyway


@dataclass(frozen=True)
class UploadedFile:
    name: str
    data: bytes


def job_options_validate(*, scope, task: str, options: dict[str, Any]) -> tuple[dict[str, Any], int]:
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
    if task == JobTask.EXTRACT:
        clean.update(_document_type_options(scope, options))
    pages = options.get("pages")
    if pages:
        if not all(isinstance(p, int) and p >= 1 for p in pages):
            raise ValidationFailed("'pages' must be a list of page numbers starting at 1.")
        clean["pages"] = sorted(set(pages))
    max_tokens = options.get("max_tokens")
    if max_tokens is None:
        max_tokens = settings.JOB_DEFAULT_MAX_TOKENS
    try:  # the sampling bounds are SamplingParams'; the limit is this deployment's
        valid = SamplingParams(max_tokens=max_tokens).max_tokens <= settings.JOB_MAX_TOKENS_LIMIT
    except InvalidSampling:
        valid = False
    if not valid:
        raise ValidationFailed(f"'max_tokens' must be an integer from 1 to {settings.JOB_MAX_TOKENS_LIMIT}.")
    return clean, max_tokens


def _document_type_options(scope, options: dict[str, Any]) -> dict[str, Any]:
    """The type to read with, and its current version, pinned: a change of the type after the
    submit does not change what this job reads."""
    slug = str(options.get("document_type") or "").strip()
    if not slug:
        raise ValidationFailed("Task extract needs a 'document_type': a slug from /api/document-types.")
    if slug == "invoice":
        raise ValidationFailed("Invoices are the built-in type: use task=invoice.")
    try:
        document_type = document_type_get(scope=scope, slug=slug)
    except NotFound:
        raise ValidationFailed(f"Unknown document type {slug!r}.") from None
    return {"document_type": document_type.slug, "document_type_version": document_type.version}


def job_submit(
    *,
    scope,
    task: str,
    options: dict[str, Any],
    upload: UploadedFile | None = None,
    document_id: int | None = None,
) -> Job:
    """Create a queued job over an upload or one of the organisation's documents and queue it.

    Options are checked before the upload is stored, so a bad request stores nothing. Another
    organisation's document id is NotFound, like one that does not exist."""
    clean, max_tokens = job_options_validate(scope=scope, task=task, options=options)
    job_task_check_runnable(task=task)
    if upload is not None and document_id is not None:
        raise ValidationFailed("Send either a file or a document_id, not both.")
    document = document_get(scope=scope, document_id=document_id) if document_id is not None else None
    if upload is not None:
        document = document_upload(scope=scope, data=upload.data, filename=upload.name).document
    if document is None and task != JobTask.CHAT:
        raise ValidationFailed(f"Task {task} needs a file or a document_id.")
    if document is not None:
        _check_document(document, task)
        _check_pages(document, clean.get("pages"))
    with transaction.atomic():
        job = Job.objects.create(
            organization=scope.organization,
            owner=scope.user,
            document=document,
            task=task,
            options=clean,
            max_tokens=max_tokens,
        )
        job_enqueue_on_commit(job_id=job.pk, task=task)
    logger.info("job %s queued: user=%s task=%s document=%s", job.pk, scope.user.pk, task, job.document_id)
    return job


def _check_document(document: Document, task: str) -> None:
    """An XML e-invoice has no page image: only the invoice task reads it (from its XML)."""
    if document.kind == DocumentKind.XML and task != JobTask.INVOICE:
        raise ValidationFailed(
            f"Document {document.pk} is an XML e-invoice: it has no page image for task {task}; use task=invoice."
        )


def _check_pages(document: Document, pages: list[int] | None) -> None:
    if pages and max(pages) > document.page_count:
        raise ValidationFailed(f"The document has {document.page_count} pages; asked for page {max(pages)}.")


def job_task_check_runnable(*, task: str) -> None:
    """Refuse a job that needs the VLM when workers are online and none of them has it or is
    loading it (an OCR-only deployment, a model that failed to load): 503 `engine_unavailable`
    with the reason, before anything is stored. While a model loads, jobs are queued and wait
    for it. With no worker online at all, jobs are queued and wait for one to start. OCR and
    invoice jobs need only OCR, which every worker has."""
    if TASK_NEEDS[task] != VLM:
        return
    try:
        beats = heartbeats_read(sync_redis())
    except Exception as exc:  # Redis down: enqueueing fails next with queue_unavailable
        logger.warning("capability check skipped: %s", exc)
        return
    summary = capability_summary(beats, VLM)
    refusal = vlm_refusal(summary)
    if beats and refusal is not None and not summary.coming:
        message, retry_after = refusal
        raise CapabilityUnavailable(message, retry_after=retry_after)


def job_enqueue_on_commit(*, job_id: int, task: str, accepted: bool = False) -> None:
    """Send `vision.job_run` once the row is committed (the worker must see it), on the queue of
    the capability the task needs (OCR or VLM work). `accepted`: the job was already accepted (a
    requeue after a lost worker), so a broker that is down leaves it queued for the watchdog to
    send again instead of failing it."""
    transaction.on_commit(lambda: job_enqueue(job_id=job_id, task=task, accepted=accepted))


def job_enqueue(*, job_id: int, task: str, accepted: bool = False) -> bool:
    """Send `vision.job_run` for a committed job now, on its task's queue; True when sent. A
    broker that is down fails a new job (`queue_unavailable`, ServiceUnavailable raised) and
    leaves an `accepted` one queued (False)."""
    from vision.tasks import job_run_task

    try:
        job_run_task.apply_async((job_id,), queue=task_queue(task))
        return True
    except Exception as exc:  # kombu/redis connection errors: the broker is down
        if accepted:
            logger.warning("job %s could not be queued again now (%s); it stays queued", job_id, exc)
            return False
        logger.error("job %s could not be queued: %s", job_id, exc)
        job_move(
            source=JobStatus.QUEUED,
            target=JobStatus.FAILED,
            where={"pk": job_id},
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
        fields = {"error": "Cancelled by the user.", "error_code": "cancelled", "finished_at": timezone.now()}
        job_move(source=locked.status, target=JobStatus.CANCELLED, where={"pk": locked.pk}, **fields)
        locked.status = JobStatus.CANCELLED
        for name, value in fields.items():
            setattr(locked, name, value)
    if request_id:
        try:
            streams.request_cancel(sync_redis(), request_id)
        except Exception as exc:  # the worker also notices at its next progress write
            logger.warning("job %s: cancel key not set: %s", job.pk, exc)
    logger.info("job %s cancelled", job.pk)
    return locked


def batch_jobs_create(*, scope, batch: Batch, documents: list[Document]) -> list[Job]:
    """The jobs of a new batch (inside the caller's transaction), queued after the commit."""
    clean, max_tokens = job_options_validate(scope=scope, task=batch.task, options=batch.options)
    for document in documents:
        _check_document(document, batch.task)
    jobs = [
        Job.objects.create(
            organization=batch.organization,
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
        job_enqueue_on_commit(job_id=job.pk, task=job.task)
    return jobs
