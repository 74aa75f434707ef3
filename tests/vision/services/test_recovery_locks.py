"""Concurrent recoverers of one stuck job on PostgreSQL: the one holding the row acts, the
other skips it at once (SELECT ... FOR UPDATE SKIP LOCKED) instead of waiting for the lock."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from accounts.scope import scope_for

# serialized_rollback like every transactional test here: a plain flush re-runs post_migrate (the
# role groups), which the next serialized_rollback test would then insert a second time.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_a_job_locked_by_another_recoverer_is_skipped_without_waiting(user_factory, settings):
    if connection.vendor != "postgresql":
        pytest.skip("row locks (SKIP LOCKED) exist on PostgreSQL; SQLite serialises writers instead")
    from django.db import connections

    from vision.models import Job, JobStatus, JobTask
    from vision.runners.recovery import job_recover

    settings.JOB_MAX_ATTEMPTS = 3
    job = Job.objects.create(
        owner=(_owner := user_factory()),
        organization=scope_for(_owner).organization,
        task=JobTask.CHAT,
        options={"message": "hi"},
        max_tokens=1,
        status=JobStatus.RUNNING,
        attempts=1,
        worker="gone@nowhere",
        started_at=timezone.now() - timedelta(hours=1),
    )
    locked, release = threading.Event(), threading.Event()

    def other_recoverer() -> None:
        try:
            with transaction.atomic():
                Job.objects.select_for_update().get(pk=job.pk)
                locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_recoverer)
    thread.start()
    try:
        assert locked.wait(30)
        started = time.monotonic()
        assert job_recover(job=job) == 0  # skipped: the row is someone else's right now
        assert time.monotonic() - started < 5  # and not waited for
    finally:
        release.set()
        thread.join(30)
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert job_recover(job=job) == 1  # unlocked: recovered (requeued)
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
