"""Reads: everything a view shows about documents, jobs and batches. Every getter takes the user
and answers NotFound for another user's object, so ids cannot be probed (no 403 that confirms it
exists)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet

from docplatform.errors import NotFound
from vision.models import Batch, Document, DocumentType, DocumentTypeVersion, Job, JobStatus


def document_list(*, user) -> QuerySet[Document]:
    return Document.objects.filter(owner=user).prefetch_related("pages")


def document_get(*, user, document_id: int) -> Document:
    document = document_list(user=user).filter(pk=document_id).first()
    if document is None:
        raise NotFound(f"Document {document_id} not found.")
    return document


def job_list(*, user, status: str | None = None) -> QuerySet[Job]:
    jobs = Job.objects.filter(owner=user).select_related("document")
    return jobs.filter(status=status) if status else jobs


def job_get(*, user, job_id: int) -> Job:
    job = job_list(user=user).filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"Job {job_id} not found.")
    return job


def job_queue_position(*, job: Job) -> int | None:
    """1 = next to start. Jobs are taken in submission order across all users (one shared queue)."""
    if job.status != JobStatus.QUEUED:
        return None
    ahead = Job.objects.filter(status=JobStatus.QUEUED).filter(
        Q(created_at__lt=job.created_at) | Q(created_at=job.created_at, pk__lt=job.pk)
    )
    return ahead.count() + 1


@dataclass(frozen=True)
class BatchCounts:
    total: int
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.cancelled

    @property
    def status(self) -> str:
        if self.finished == self.total:
            return "finished"
        return "running" if self.running or self.finished else "queued"


def batch_list(*, user) -> QuerySet[Batch]:
    return Batch.objects.filter(owner=user)


def batch_get(*, user, batch_id: int) -> Batch:
    batch = batch_list(user=user).filter(pk=batch_id).first()
    if batch is None:
        raise NotFound(f"Batch {batch_id} not found.")
    return batch


def batch_counts(*, batch: Batch) -> BatchCounts:
    counts = batch.jobs.aggregate(
        total=Count("pk"), **{status: Count("pk", filter=Q(status=status)) for status in JobStatus.values}
    )
    return BatchCounts(**counts)


def batch_jobs(*, batch: Batch) -> QuerySet[Job]:
    return batch.jobs.select_related("document", "extraction__document_type_version").order_by("pk")


def document_type_list() -> QuerySet[DocumentType]:
    """Every document type: all users may read them (only admins change them)."""
    return DocumentType.objects.all()


def document_type_get(*, slug: str) -> DocumentType:
    document_type = DocumentType.objects.filter(slug=slug).first()
    if document_type is None:
        raise NotFound(f"Document type {slug!r} not found.")
    return document_type


def document_type_versions(*, document_type: DocumentType) -> QuerySet[DocumentTypeVersion]:
    return document_type.versions.order_by("number")


def document_type_version_get(*, slug: str, number: int) -> DocumentTypeVersion:
    version = DocumentTypeVersion.objects.filter(document_type__slug=slug, number=number).first()
    if version is None:
        raise NotFound(f"Document type {slug!r} has no version {number}.")
    return version
