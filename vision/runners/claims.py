"""Moves of a job that end or check a worker's claim, shared by the run loop, recovery and the
task: give up a job whose workers were lost too often, fail one the task could not start, and
read the row while the claim (the attempt's `request_id`) holds."""

from __future__ import annotations

import logging

from django.utils import timezone

from vision.models import Job, JobStatus
from vision.services.job_status import UNFINISHED, job_move, job_rows

logger = logging.getLogger(__name__)


def job_give_up(job: Job) -> int:
    """Fail a job whose workers were lost `JOB_MAX_ATTEMPTS` times (the claim at the next start,
    or the recovery of a running one), conditional on the row being unchanged. → rows changed."""
    lost = job.attempts - job.retries
    changed = job_move(
        source=job.status,
        target=JobStatus.FAILED,
        where={"pk": job.pk, "request_id": job.request_id},
        error=(
            f"The job was started {job.attempts} times and its worker was lost {lost} times "
            f"(last: {job.worker or 'unknown'}); it is not retried again."
        ),
        error_code="worker_lost",
        finished_at=timezone.now(),
    )
    if changed:
        logger.error("job %s failed after %d attempts (worker lost)", job.pk, job.attempts)
    return changed


def claim_holds(job: Job):
    """The job's row, if it is still running under this claim (the attempt's request_id)."""
    return job_rows(JobStatus.RUNNING, pk=job.pk, request_id=job.request_id)


def job_fail(*, job_id: int, error: str, error_code: str) -> None:
    """Fail a job that is not finished (the task gave up waiting for an engine)."""
    job_move(
        source=UNFINISHED,
        target=JobStatus.FAILED,
        where={"pk": job_id},
        error=error,
        error_code=error_code,
        finished_at=timezone.now(),
    )
