"""Two real worker processes on one database (PostgreSQL under scripts/test.sh, then SQLite),
a few hundred job messages, every job delivered twice at once: each runs exactly once.

The duplicates are what a broker redelivery or a re-send produces; here both copies are in the
queue together, so the two workers' claims race on the same rows (vision.runners.loop: a job is
marked in its process before the claim, then a compare-and-set update of the row claims it once).
"""

from __future__ import annotations

import io
import re
import time
from collections import Counter

import pytest
from celery import Celery
from PIL import Image

from accounts.scope import scope_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

JOBS = 150
DELIVERIES = 2  # messages per job


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (30, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_two_workers_run_each_of_hundreds_of_jobs_exactly_once(stack_redis, start_worker, api_key):
    from vision.models import FINISHED_STATUSES, Job, JobStatus, JobTask
    from vision.services.documents import document_upload
    from vision.services.jobs import job_options_validate

    user, _ = api_key("claims")
    document = document_upload(scope=scope_for(user), data=_png(), filename="claims.png").document
    options, _ = job_options_validate(scope=scope_for(user), task=JobTask.CAPTION, options={})
    jobs = Job.objects.bulk_create(
        Job(
            organization=document.organization,
            owner=user,
            document=document,
            task=JobTask.CAPTION,
            options=options,
            max_tokens=1,
        )
        for _ in range(JOBS)
    )
    ids = sorted(job.pk for job in jobs)

    workers = [start_worker(concurrency=4), start_worker(concurrency=4)]
    for worker in workers:
        worker.wait_ready(timeout=180)

    # Not the current app: the suite's own tasks (shared_task) must keep publishing to its Redis.
    broker = Celery(broker=stack_redis.url(), set_as_current=False)
    try:
        with broker.connection_for_write() as connection:
            for job_id in ids:
                for _ in range(DELIVERIES):
                    broker.send_task("vision.job_run", args=[job_id], queue="vision", connection=connection)
    finally:
        broker.close()

    deadline = time.monotonic() + 240
    while Job.objects.filter(pk__in=ids).exclude(status__in=FINISHED_STATUSES).exists():
        assert time.monotonic() < deadline, "jobs still unfinished after 240 s"
        for worker in workers:
            assert worker.process.poll() is None, f"worker {worker.name} exited:\n{worker.log()[-3000:]}"
        time.sleep(0.5)

    rows = list(Job.objects.filter(pk__in=ids).values("pk", "status", "attempts", "worker"))
    assert Counter(row["status"] for row in rows) == {JobStatus.SUCCEEDED: JOBS}
    assert {row["attempts"] for row in rows} == {1}
    names = {worker.name for worker in workers}
    by_worker = Counter(row["worker"] for row in rows)
    assert set(by_worker) == names, by_worker  # both took part

    # Each job was started once in all (the claim log line), and each extra delivery was refused.
    # The last jobs can finish before their extra copies are taken from the queue: wait (bounded)
    # until every job's refusal is in the logs, then judge.
    def tally() -> tuple[Counter, Counter]:
        logs = "".join(worker.log() for worker in workers)
        started = Counter(int(m) for m in re.findall(r"job (\d+): attempt \d+ on ", logs))
        refused = Counter(
            int(m)
            for m in re.findall(
                r"job (\d+): (?:(?:already \w+, redelivery|running (?:on \S+|in this process), duplicate delivery) ignored"
                r"|claimed by another delivery meanwhile)",
                logs,
            )
        )
        return started, refused

    drained = time.monotonic() + 60
    started, refused = tally()
    while time.monotonic() < drained and (
        set(refused) != set(ids) or min(refused.values(), default=0) < DELIVERIES - 1
    ):
        time.sleep(0.5)
        started, refused = tally()
    assert started == Counter({job_id: 1 for job_id in ids})
    # At least the extra copies sent here; the workers' watchdogs may add re-sends of their own
    # (vision.runners.recovery.jobs_resend_lost sends queued jobs again while the queue is empty,
    # as it is before the test sends its messages), and those are refused the same way.
    assert set(refused) == set(ids)
    assert min(refused.values()) >= DELIVERIES - 1
