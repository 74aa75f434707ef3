"""Batches: many files, one task, one job per file."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import transaction

from docplatform.errors import ValidationFailed
from vision.models import Batch, Document
from vision.services.documents import document_upload, documents_discard
from vision.services.jobs import (
    UploadedFile,
    batch_jobs_create,
    job_options_validate,
    job_task_check_runnable,
)
from vision.validators import UploadRejected

logger = logging.getLogger(__name__)


def batch_submit(*, scope, task: str, options: dict[str, Any], files: list[UploadedFile]) -> Batch:
    """Store every file, then create the batch and its jobs in one transaction, queued after the
    commit. All or nothing: a rejected file rejects the batch (its name in the message), and the
    documents this call created are removed again."""
    clean, _ = job_options_validate(scope=scope, task=task, options=options)
    job_task_check_runnable(task=task)
    if not files:
        raise ValidationFailed("A batch needs at least one file.")
    if len(files) > settings.BATCH_MAX_FILES:
        raise ValidationFailed(f"A batch takes at most {settings.BATCH_MAX_FILES} files; got {len(files)}.")

    documents: list[Document] = []
    created: list[Document] = []
    try:
        for index, upload in enumerate(files, start=1):
            try:
                result = document_upload(scope=scope, data=upload.data, filename=upload.name)
            except UploadRejected as exc:
                raise type(exc)(f"File {index} ({upload.name[:100]}): {exc.message}", rule=exc.code) from exc
            documents.append(result.document)
            if result.created:
                created.append(result.document)
        with transaction.atomic():
            batch = Batch.objects.create(
                organization=scope.organization, owner=scope.user, task=task, options={**options, **clean}
            )
            batch_jobs_create(scope=scope, batch=batch, documents=documents)
    except BaseException:
        documents_discard(documents=created)
        raise
    logger.info("batch %s queued: user=%s task=%s files=%d", batch.pk, scope.user.pk, task, len(files))
    return batch
