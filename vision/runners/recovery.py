"""Jobs whose worker died: requeued up to JOB_MAX_ATTEMPTS in all, then failed.

Found by `jobs_recover_stuck`, at worker start and every JOB_STUCK_GRACE_SECONDS / 2 in the
watchdog thread of every worker (`vision.runners.watchdog`); reading a job (`GET /api/jobs/{id}`)
never writes. Every recovery locks the row with SKIP LOCKED (PostgreSQL) and is a conditional
update on the unchanged row, so concurrent recoverers act once and never queue behind each other.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from vision.capabilities import CAPABILITY_QUEUE
from vision.connections import sync_redis
from vision.heartbeat import engine_ready, heartbeats_read, worker_alive
from vision.models import Job, JobStatus
from vision.runners.claims import claim_holds, job_give_up
from vision.runners.loop import running_here
from vision.services.job_status import job_move
from vision.services.jobs import job_enqueue, job_enqueue_on_commit

logger = logging.getLogger(__name__)


def jobs_recover_stuck(*, restarted_worker: str | None = None) -> int:
    """Requeue (or, past JOB_MAX_ATTEMPTS, fail) running jobs whose worker is gone: its heartbeat
    expired and the job started more than JOB_STUCK_GRACE_SECONDS ago. `restarted_worker`: a worker
    that has just started; its own "running" jobs are leftovers of its previous life whatever
    their age. Returns how many jobs were recovered."""
    cutoff = timezone.now() - timedelta(seconds=settings.JOB_STUCK_GRACE_SECONDS)
    candidates = Job.objects.filter(status=JobStatus.RUNNING)
    recovered = 0
    for job in candidates.only(
        "pk", "status", "task", "attempts", "retries", "worker", "request_id", "started_at"
    ):
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
        if job.attempts - job.retries >= settings.JOB_MAX_ATTEMPTS:
            changed = job_give_up(job)  # job.status is RUNNING here: the claim above holds
        else:
            changed = job_move(
                source=JobStatus.RUNNING, target=JobStatus.QUEUED, rows=claim_holds(job), progress_tokens=0
            )
            if changed:
                job_enqueue_on_commit(job_id=job.pk, task=job.task, accepted=True)
    if changed:
        logger.warning("job %s: worker %s lost after attempt %d, recovered", job.pk, job.worker, job.attempts)
    return changed


# job id -> monotonic time this process last re-sent its message (jobs_resend_lost).
_resent: dict[int, float] = {}


def jobs_resend_lost() -> int:
    """Send `vision.job_run` again for queued jobs whose message is gone: queued longer than
    JOB_STUCK_GRACE_SECONDS while the shared queue is empty. Redis killed between a write and its
    append-only-file flush (one second with `appendfsync everysec`) can lose a just-sent message,
    or the move of one from the queue to its unacked set; the row still says queued and nothing
    would ever run it. A message that was not lost after all only makes a duplicate, which the
    claim ignores. Each job is re-sent at most once per grace period by each process."""
    client = sync_redis()
    if any(client.llen(queue) for queue in CAPABILITY_QUEUE.values()):
        return 0  # a backlog: its messages are on their way
    beats = heartbeats_read(client)
    if not beats or not all(engine_ready(beat) for beat in beats):
        return 0  # a worker still loading holds its jobs' messages for a later retry
    grace = settings.JOB_STUCK_GRACE_SECONDS
    cutoff = timezone.now() - timedelta(seconds=grace)
    now = time.monotonic()
    for job_id, sent in list(_resent.items()):
        if now - sent > 10 * grace:
            del _resent[job_id]
    lost = Job.objects.filter(status=JobStatus.QUEUED, created_at__lt=cutoff).exclude(started_at__gt=cutoff)
    resent = 0
    for job_id, task in lost.values_list("pk", "task")[:500]:
        if now - _resent.get(job_id, -1e9) < grace:
            continue
        _resent[job_id] = now
        if not job_enqueue(job_id=job_id, task=task, accepted=True):
            break  # the broker is down: the next round tries again
        resent += 1
    if resent:
        logger.warning("re-sent %d queued job(s) whose message was not in the queue", resent)
    return resent
