"""Reads: everything a view shows about documents, jobs and batches. Every list and getter takes
the caller's `Scope` (accounts.scope) and filters by its organisation; another organisation's
object is NotFound, so ids cannot be probed (no 403 that confirms it exists). Inside one
organisation its members share the documents, jobs and batches."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet

from docplatform.errors import NotFound
from vision.models import Batch, Document, DocumentType, DocumentTypeVersion, Job, JobStatus


def document_list(*, scope) -> QuerySet[Document]:
    return Document.objects.filter(organization=scope.organization).prefetch_related("pages")


def document_get(*, scope, document_id: int) -> Document:
    document = document_list(scope=scope).filter(pk=document_id).first()
    if document is None:
        raise NotFound(f"Document {document_id} not found.")
    return document


def job_list(*, scope, status: str | None = None) -> QuerySet[Job]:
    jobs = Job.objects.filter(organization=scope.organization).select_related("document")
    return jobs.filter(status=status) if status else jobs


def job_get(*, scope, job_id: int) -> Job:
    job = job_list(scope=scope).filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"Job {job_id} not found.")
    return job


def job_queue_position(*, job: Job) -> int | None:
    """1 = next to start. Jobs are taken in submission order across all organisations (one shared
    queue); the count says how many are ahead, never whose."""
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


def batch_list(*, scope) -> QuerySet[Batch]:
    return Batch.objects.filter(organization=scope.organization)


def batch_get(*, scope, batch_id: int) -> Batch:
    batch = batch_list(scope=scope).filter(pk=batch_id).first()
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


def document_type_list(*, scope) -> QuerySet[DocumentType]:
    """The organisation's types and the site-wide ones, except a site-wide type the organisation
    defines a type of the same slug for (its own wins). Every member reads them; admins change
    the organisation's own."""
    own = DocumentType.objects.filter(organization=scope.organization)
    site = DocumentType.objects.filter(organization__isnull=True).exclude(slug__in=own.values("slug"))
    return DocumentType.objects.filter(Q(pk__in=own.values("pk")) | Q(pk__in=site.values("pk")))


def document_type_get(*, scope, slug: str) -> DocumentType:
    document_type = document_type_list(scope=scope).filter(slug=slug).first()
    if document_type is None:
        raise NotFound(f"Document type {slug!r} not found.")
    return document_type


def document_type_versions(*, document_type: DocumentType) -> QuerySet[DocumentTypeVersion]:
    return document_type.versions.order_by("number")


def document_type_version_get(*, scope, slug: str, number: int) -> DocumentTypeVersion:
    version = DocumentTypeVersion.objects.filter(
        document_type__in=document_type_list(scope=scope), document_type__slug=slug, number=number
    ).first()
    if version is None:
        raise NotFound(f"Document type {slug!r} has no version {number}.")
    return version


def share_link_list(*, scope, document: Document, active: bool = False) -> QuerySet:
    """The share links of `document` (of the scope's organisation), newest first; with `active`,
    only those neither revoked nor expired. Never their secrets: only hashes are stored."""
    from django.utils import timezone

    from vision.models import ShareLink

    if document.organization_id != scope.organization.pk:
        raise NotFound(f"Document {document.pk} not found.")
    links = ShareLink.objects.filter(organization=scope.organization, document=document).select_related(
        "created_by"
    )
    if active:
        links = links.filter(revoked_at__isnull=True, expires_at__gt=timezone.now())
    return links


def document_latest_extraction(*, document: Document):
    """The newest extraction of `document` (what a share link with its extraction shows), or None."""
    return document.extractions.order_by("-created_at", "-id").first()
