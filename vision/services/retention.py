"""Retention: documents older than their organisation's `retention_days` go, with their files,
pages, jobs, extractions and share links (`document_delete(retention=True)`, which writes the
`retention_deleted` audit event and deletes the files after the commit). Documents under legal
hold never go.

A document read as a document type whose `retention_days` is set follows that type instead of
the organisation (longer or shorter); read as several such types, the longest wins, so no rule
deletes a document another rule keeps. Organisations without `retention_days` keep their other
documents for ever.

Deletes run in batches of RETENTION_BATCH_SIZE documents, one transaction each, so a large run
never holds one long transaction and a failure loses only its batch (the next run picks it up).
The log names organisations and document ids, never names or contents.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from vision.models import Document, DocumentType
from vision.services.documents import document_delete

logger = logging.getLogger(__name__)

_TYPE_DAYS = "extractions__document_type_version__document_type__retention_days"


@dataclass
class RetentionReport:
    now: datetime
    dry_run: bool = False
    # organisation id → ids of the documents deleted (or, in a dry run, that would be)
    deleted: dict[int, list[int]] = field(default_factory=dict)
    failed: list[int] = field(default_factory=list)  # ids whose batch failed; kept for the next run

    @property
    def total(self) -> int:
        return sum(len(ids) for ids in self.deleted.values())


def retention_expired(*, now: datetime) -> dict[int, list[int]]:
    """Organisation id → ids of its documents past retention at `now` and not under legal hold,
    oldest first."""
    expired: dict[int, list[tuple[datetime, int]]] = defaultdict(list)

    # Documents read as a type with its own retention: that type's rule (the longest of them).
    type_days = DocumentType.objects.filter(retention_days__isnull=False).values_list(
        "retention_days", flat=True
    )
    shortest = min(type_days, default=None)
    if shortest is not None:
        candidates = (
            Document.objects.filter(legal_hold=False, created_at__lt=now - timedelta(days=shortest))
            .filter(**{f"{_TYPE_DAYS}__isnull": False})
            .annotate(type_days=Max(_TYPE_DAYS))
            .values_list("pk", "organization_id", "created_at", "type_days")
        )
        for pk, organization_id, created_at, days in candidates:
            if created_at < now - timedelta(days=days):
                expired[organization_id].append((created_at, pk))

    # The organisation's rule for the rest.
    organizations = Document.organization.field.related_model.objects  # accounts.Organization
    for organization_id, days in organizations.filter(retention_days__isnull=False).values_list(
        "pk", "retention_days"
    ):
        rows = (
            Document.objects.filter(
                organization_id=organization_id, legal_hold=False, created_at__lt=now - timedelta(days=days)
            )
            .exclude(**{f"{_TYPE_DAYS}__isnull": False})
            .values_list("created_at", "pk")
        )
        expired[organization_id].extend(rows)
    return {
        organization_id: [pk for _, pk in sorted(rows)] for organization_id, rows in expired.items() if rows
    }


def retention_run(*, now: datetime | None = None, dry_run: bool = False) -> RetentionReport:
    """Delete every document past retention (see the module's docstring); with `dry_run`, only
    report what would go."""
    report = RetentionReport(now=now or timezone.now(), dry_run=dry_run)
    expired = retention_expired(now=report.now)
    if dry_run:
        report.deleted = expired
        for organization_id, ids in expired.items():
            logger.info(
                "retention (dry run): organization %s would delete %d documents: %s",
                organization_id,
                len(ids),
                ids,
            )
        return report
    batch_size = settings.RETENTION_BATCH_SIZE
    for organization_id, ids in expired.items():
        done: list[int] = []
        for start in range(0, len(ids), batch_size):
            batch = ids[start : start + batch_size]
            try:
                done.extend(_delete_batch(batch))
            except Exception:
                logger.exception(
                    "retention: organization %s: a batch of %d documents failed", organization_id, len(batch)
                )
                report.failed.extend(batch)
        if done:
            report.deleted[organization_id] = done
            logger.info(
                "retention: organization %s deleted %d documents: %s", organization_id, len(done), done
            )
    logger.info(
        "retention run done: %d documents deleted in %d organisations, %d failed",
        report.total,
        len(report.deleted),
        len(report.failed),
    )
    return report


def _delete_batch(ids: list[int]) -> list[int]:
    """Delete these documents in one transaction; their files go after its commit. A document
    put under legal hold (or deleted) since the ids were read is skipped."""
    deleted = []
    with transaction.atomic():
        for document in (
            Document.objects.select_for_update().filter(pk__in=ids, legal_hold=False).order_by("pk")
        ):
            document_id = document.pk
            document_delete(document=document, retention=True)
            deleted.append(document_id)
    return deleted
