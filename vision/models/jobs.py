"""Jobs (one model run over one document) and batches (many jobs submitted together).

A Job row is the truth about its run: the Celery message only carries its id, and a task that is
delivered twice (late acks, a lost worker) claims the row first (vision/runners/loop.py), so the
row, not the message, decides whether work happens.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class JobTask(models.TextChoices):
    OCR = "ocr", "OCR"
    CAPTION = "caption", "Caption"
    VQA = "vqa", "Visual question answering"
    INVOICE = "invoice", "Invoice extraction"
    EXTRACT = "extract", "Document type extraction"  # options: document_type (slug) + pinned version
    CHAT = "chat", "Chat"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class Batch(models.Model):
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )  # who owns it; `owner` is the member who made it
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="batches")
    task = models.CharField(max_length=20, choices=JobTask.choices)
    options = models.JSONField(default=dict, blank=True)  # shared by its jobs, see Job.options
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "batches"

    def __str__(self) -> str:
        return f"Batch {self.pk} ({self.task})"


class Job(models.Model):
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )  # who owns it; `owner` is the member who made it
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, null=True, blank=True, related_name="jobs")
    # Null only for a text-only chat job.
    document = models.ForeignKey(
        "vision.Document", on_delete=models.CASCADE, null=True, blank=True, related_name="jobs"
    )
    task = models.CharField(max_length=20, choices=JobTask.choices)
    # Validated task inputs: {"question"} for vqa, {"message"} for chat, {"document_type",
    # "document_type_version"} for extract, optional {"pages": [1, 2]}.
    options = models.JSONField(default=dict, blank=True)
    max_tokens = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED)

    # The run. `attempts` counts claims: a redelivered task after a lost worker is attempt 2, and
    # JOB_MAX_ATTEMPTS bounds a job that kills its worker every time.
    attempts = models.PositiveIntegerField(default=0)
    # Of those, runs cut short by a service blip (Redis, database, media store unreachable) and run
    # again by the same worker; JOB_MAX_ATTEMPTS bounds only the others (vision/runners/loop.py).
    retries = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=255, blank=True)  # Celery hostname of the current attempt
    # Token stream of the current attempt, and its claim: only the holder of this id may record
    # progress or store the outcome (a new one per attempt).
    request_id = models.CharField(max_length=64, blank=True)
    progress_tokens = models.PositiveIntegerField(default=0)  # generated so far, while running

    # The outcome.
    result_text = models.TextField(blank=True)
    result = models.JSONField(null=True, blank=True)  # structured output (invoice fields, OCR lines)
    finish_reason = models.CharField(max_length=20, blank=True)  # engine's: stop, length, timeout, ...
    error = models.TextField(blank=True)  # readable, for the user; never a traceback
    error_code = models.CharField(max_length=50, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    image_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    timings = models.JSONField(default=dict, blank=True)  # engine Timings, seconds

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "created_at"], name="job_status_created"),
            models.Index(fields=["owner", "created_at"], name="job_owner_created"),
            models.Index(fields=["organization", "created_at"], name="job_org_created"),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.task}, {self.status})"

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES
