"""Jobs whose worker died: requeued up to JOB_MAX_ATTEMPTS in all, then failed.

Found by `jobs_recover_stuck` (worker start and the watchdog thread in every worker,
`vision.runners.watchdog`) and by `job_recover_if_stuck` (each `GET /api/jobs/{id}`). Every
recovery locks the row with SKIP LOCKED (PostgreSQL) and is a conditional update on the unchanged
row, so concurrent recoverers act once and never queue behind each other.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from vision.connections import sync_redis
from vision.heartbeat import worker_alive
from vision.models import Job, JobStatus
from vision.runners.loop import claim_holds, running_here
from vision.services.jobs import job_enqueue_on_commit

logger = logging.getLogger(__name__)


def jobs_recover_stuck(*, restarted_worker: str | None = None) -> int:
    """Requeue (or, past JOB_MAX_ATTEMPTS, fail) running jobs whose worker is gone: its heartbeat
    expired and the job started more than JOB_STUCK_GRACE_SECONDS ago. `restarted_worker`: a worker
    that has just started; its own "running" jobs are leftovers of its previous life whatever
    their age. Returns how many jobs were recovered."""
    cutoff = timezone.now() - timedelta(seconds=settings.JOB_STUCK_GRACE_SECONDS)
    candidates = Job.objects.filter(status=JobStatus.RUNNING)
    recovered = 0
    for job in candidates.only("pk", "attempts", "worker", "started_at"):
        if running_here(job.pk):  # this process is running it: alive, whatever Redis says
            continue
        leftover = restarted_worker is not None and job.worker == restarted_worker
        if not leftover and (
            (job.started_at is not None and job.started_at > cutoff) or worker_alive(sync_redis(), job.worker)
        ):
            continue
        recovered += job_recover(job=job)
    return recovered


def job_recover(*, job: Job) -> int:
    """Requeue one running job whose worker is gone, or fail it when its attempts are used up.
    Conditional on the row being unchanged, so concurrent recoverers act once."""
    with transaction.atomic():
        # SKIP LOCKED: every worker's watchdog scans the same running jobs; a row another one is
        # recovering right now (or its worker is finishing) is left to it, not waited for.
        # SQLite has no row locks; there the conditional updates below alone decide.
        if claim_holds(job).select_for_update(skip_locked=True).only("pk").first() is None:
            return 0
        if job.attempts >= settings.JOB_MAX_ATTEMPTS:
            changed = claim_holds(job).update(
                status=JobStatus.FAILED,
                error=(
                    f"The worker running this job ({job.worker or 'unknown'}) was lost "
                    f"{job.attempts} times; it is not retried again."
                ),
                error_code="worker_lost",
                finished_at=timezone.now(),
            )
        else:
            changed = claim_holds(job).update(status=JobStatus.QUEUED, progress_tokens=0)
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
        alive = worker_alive(sync_redis(), job.worker)
    except Exception as exc:  # Redis down: report the job as it is rather than fail the GET
        logger.warning("job %s: heartbeat check failed: %s", job.pk, exc)
        return job
    if not alive and job_recover(job=job):
        job.refresh_from_db()
    return job
