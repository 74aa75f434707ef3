"""The job row decides: claims, redelivery, lost workers, outcomes after a cancel. No worker."""

import time

import pytest
import redis
from django.utils import timezone

from accounts.scope import scope_for
from vision.heartbeat import heartbeat_delete, heartbeat_write
from vision.models import Job, JobStatus
from vision.runners.loop import _job_claim, _job_finish
from vision.runners.types import JobOutcome
from vision.services.jobs import job_cancel, job_options_validate

pytestmark = pytest.mark.django_db


@pytest.fixture
def live_worker(redis_url):
    client = redis.Redis.from_url(redis_url)
    name = f"alive-{time.monotonic_ns()}@host"
    heartbeat_write(
        client,
        {"hostname": name, "pid": 1, "queues": [], "pool": "threads", "started_at": 0, "ts": 0, "engine": {}},
        ttl_seconds=30,
    )
    yield name
    heartbeat_delete(client, name)


def _job(user, **fields) -> Job:
    defaults = {"task": "chat", "options": {"message": "hi"}, "max_tokens": 4}
    return Job.objects.create(organization=scope_for(user).organization, owner=user, **{**defaults, **fields})


def test_first_claim_runs_and_counts_an_attempt(user_factory, redis_url):
    job = _job(user_factory())
    claimed = _job_claim(job_id=job.pk, worker="w1@host")
    assert claimed.status == JobStatus.RUNNING and claimed.attempts == 1 and claimed.worker == "w1@host"
    assert claimed.request_id.startswith(f"job-{job.pk}-1-")
    again = _job_claim(
        job_id=Job.objects.create(
            organization=scope_for(job.owner).organization, owner=job.owner, task="chat", max_tokens=4
        ).pk,
        worker="w1@host",
    )
    assert again.request_id != claimed.request_id


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED])
def test_redelivery_of_a_finished_job_does_nothing(user_factory, redis_url, status):
    job = _job(user_factory(), status=status, attempts=1, result_text="done")
    assert _job_claim(job_id=job.pk, worker="w2@host") is None
    job.refresh_from_db()
    assert (job.status, job.attempts, job.result_text) == (status, 1, "done")


def test_duplicate_delivery_while_a_live_worker_runs_it_is_ignored(user_factory, live_worker):
    job = _job(user_factory(), status=JobStatus.RUNNING, attempts=1, worker=live_worker)
    assert _job_claim(job_id=job.pk, worker="other@host") is None
    assert Job.objects.get(pk=job.pk).worker == live_worker


def test_redelivery_after_the_worker_died_takes_over(user_factory, redis_url):
    job = _job(user_factory(), status=JobStatus.RUNNING, attempts=1, worker="dead@host")
    claimed = _job_claim(job_id=job.pk, worker="w3@host")
    assert claimed.attempts == 2 and claimed.worker == "w3@host"


def test_poison_job_fails_after_max_attempts(user_factory, redis_url, settings):
    job = _job(
        user_factory(), status=JobStatus.RUNNING, attempts=settings.JOB_MAX_ATTEMPTS, worker="dead@host"
    )
    assert _job_claim(job_id=job.pk, worker="w4@host") is None
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.error_code == "worker_lost"
    assert f"{settings.JOB_MAX_ATTEMPTS} times" in job.error


def test_outcome_after_a_cancel_is_discarded(user_factory, redis_url):
    job = _job(user_factory())
    claimed = _job_claim(job_id=job.pk, worker="w5@host")
    job_cancel(job=claimed)

    stored = _job_finish(job=claimed, outcome=JobOutcome(status=JobStatus.SUCCEEDED, text="late"))

    assert stored is False
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED and job.result_text == ""
    assert job.finished_at <= timezone.now()


@pytest.mark.parametrize(
    ("task", "options", "message"),
    [
        ("paint", {}, "Unknown task"),
        ("vqa", {}, "question"),
        ("chat", {"message": "  "}, "message"),
        ("caption", {"max_tokens": 0}, "max_tokens"),
        ("caption", {"max_tokens": 10**6}, "max_tokens"),
        ("caption", {"pages": [0]}, "pages"),
    ],
)
@pytest.mark.django_db
def test_bad_options_are_refused(task, options, message, user_factory):
    from docplatform.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match=message):
        job_options_validate(scope=scope_for(user_factory()), task=task, options=options)
