"""Service blips versus job failures in the run loop (vision/runners/loop.py, faults.py): the
classification, best-effort stream publishing, the claim token, idempotent writes. No worker:
runners are stand-ins; Redis is the suite's real one, or a port nothing listens on."""

from __future__ import annotations

import errno
import socket

import pytest
import redis
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError
from django.db import OperationalError

from accounts.scope import scope_for
from vision import streams
from vision.faults import is_transient
from vision.models import Job, JobStatus, JobTask
from vision.runners import loop
from vision.runners.types import JobOutcome

pytestmark = pytest.mark.django_db


def _job(user, **fields) -> Job:
    defaults = {"task": "chat", "options": {"message": "hi"}, "max_tokens": 4}
    return Job.objects.create(organization=scope_for(user).organization, owner=user, **{**defaults, **fields})


def _dead_redis() -> redis.Redis:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return redis.Redis(port=port, socket_connect_timeout=0.2, socket_timeout=0.2, retry=None)


def _wrapped(exc: Exception) -> Exception:
    try:
        try:
            raise exc
        except Exception as inner:
            raise RuntimeError("while publishing") from inner
    except RuntimeError as outer:
        return outer


def _s3_error(code: str, status: int) -> ClientError:
    response = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "GetObject")


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (redis.ConnectionError("Connection closed by server."), True),
        (redis.TimeoutError("timed out"), True),
        (redis.BusyLoadingError("loading the dataset"), True),
        (OperationalError("server closed the connection unexpectedly"), True),
        (OSError(errno.EIO, "I/O error"), True),
        (_wrapped(redis.ConnectionError("gone")), True),
        (FileNotFoundError(errno.ENOENT, "no such file"), False),
        (ValueError("bad input"), False),
        (redis.ResponseError("WRONGTYPE"), False),
        (RuntimeError("model bug"), False),
        # The media bucket (MEDIA_STORAGE=s3) down or busy versus a request it refuses.
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9/b/k"), True),
        (ConnectionClosedError(endpoint_url="http://127.0.0.1:9/b/k"), True),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:9/b/k"), True),
        (_wrapped(EndpointConnectionError(endpoint_url="http://127.0.0.1:9/b/k")), True),
        (_s3_error("SlowDown", 503), True),
        (_s3_error("InternalError", 500), True),
        (_s3_error("AccessDenied", 403), False),
        (_s3_error("NoSuchKey", 404), False),
    ],
)
def test_only_unreachable_services_are_transient(exc, transient):
    assert is_transient(exc) is transient


def test_best_effort_publisher_drops_events_when_redis_is_away_and_never_raises():
    publisher = streams.BestEffortPublisher(_dead_redis(), "job-x-1-abc", retries=1, pause_s=60)
    assert publisher.publish("delta", text="a") is False
    assert publisher.publish("delta", text="b") is False  # paused: not even tried
    assert publisher.publish("final", data={"finish_reason": "stop"}) is False  # final is tried
    assert publisher.dropped == 3


def test_best_effort_publisher_publishes_when_redis_is_there(redis_url):
    client = redis.Redis.from_url(redis_url)
    request_id = f"job-test-{socket.gethostname()}-{id(client)}"
    publisher = streams.BestEffortPublisher(client, request_id)
    assert publisher.publish("delta", text="hello") is True
    assert [e.text for e in streams.read_all(client, request_id)] == ["hello"]
    client.delete(streams.stream_key(request_id))


def test_a_runner_that_hits_redis_down_runs_again_and_succeeds(user_factory, redis_url, monkeypatch):
    """GIVEN a runner whose first run fails on Redis (the stream publish of the issue) WHEN the job
    runs THEN it is run again under the same claim and ends succeeded: attempts 2, retries 1."""
    calls = []

    def flaky(context):
        calls.append(context.job.request_id)
        if len(calls) == 1:
            raise redis.ConnectionError("Connection closed by server.")
        return JobOutcome(status=JobStatus.SUCCEEDED, text="a red square", usage={"completion_tokens": 3})

    monkeypatch.setitem(loop.JOB_RUNNERS, JobTask.CHAT, flaky)
    monkeypatch.setattr(loop.time, "sleep", lambda _s: None)
    job = loop._job_claim(job_id=_job(user_factory()).pk, worker="w@host")

    job, outcome = loop._job_attempts(job=job, engine=None, worker="w@host")
    assert loop._job_finish(job=job, outcome=outcome)

    row = Job.objects.get(pk=job.pk)
    assert (row.status, row.attempts, row.retries, row.result_text) == ("succeeded", 2, 1, "a red square")
    assert len(set(calls)) == 2 and row.request_id == calls[-1]  # a new claim token per attempt


def test_a_service_that_stays_away_fails_the_job_after_the_bounded_retries(
    user_factory, redis_url, monkeypatch, settings
):
    settings.JOB_SERVICE_RETRIES = 2

    def down(_context):
        raise OperationalError("could not connect to server")

    monkeypatch.setitem(loop.JOB_RUNNERS, JobTask.CHAT, down)
    monkeypatch.setattr(loop.time, "sleep", lambda _s: None)
    job = loop._job_claim(job_id=_job(user_factory()).pk, worker="w@host")
    job, outcome = loop._job_attempts(job=job, engine=None, worker="w@host")
    assert outcome.status == JobStatus.FAILED and outcome.error_code == "service_unavailable"
    assert Job.objects.get(pk=job.pk).attempts == 3


def test_a_model_failure_is_the_jobs_failure_not_retried(user_factory, redis_url, monkeypatch):
    def broken(_context):
        raise ValueError("cannot decode this image")

    monkeypatch.setitem(loop.JOB_RUNNERS, JobTask.CHAT, broken)
    job = loop._job_claim(job_id=_job(user_factory()).pk, worker="w@host")
    job, outcome = loop._job_attempts(job=job, engine=None, worker="w@host")
    assert outcome.status == JobStatus.FAILED and outcome.error_code == "internal_error"
    assert Job.objects.get(pk=job.pk).attempts == 1


def test_a_cut_off_worker_cannot_store_over_the_claim_that_recovered_its_job(user_factory, redis_url):
    """GIVEN worker A's claim WHEN its job is recovered and claimed by worker B meanwhile (A lost
    Redis past its heartbeat TTL) THEN A's progress and outcome are refused and B's stored."""
    job = _job(user_factory())
    first = loop._job_claim(job_id=job.pk, worker="a@host")
    Job.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED)  # what recovery does
    second = loop._job_claim(job_id=job.pk, worker="b@host")

    assert not loop.claim_holds(first).update(progress_tokens=5)
    assert loop._job_reattempt(first) is None
    assert not loop._job_finish(job=first, outcome=JobOutcome(status=JobStatus.SUCCEEDED, text="late"))
    assert loop._job_finish(job=second, outcome=JobOutcome(status=JobStatus.SUCCEEDED, text="b's"))
    row = Job.objects.get(pk=job.pk)
    assert (row.worker, row.attempts, row.result_text) == ("b@host", 2, "b's")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)  # db_retry reconnects: no test transaction
def test_claim_and_finish_repeated_after_a_lost_reply_act_once(user_factory, redis_url, monkeypatch):
    """GIVEN a claim and an outcome write whose UPDATE landed but whose reply was lost (the
    connection died) WHEN each is retried THEN the retry finds its own write: one attempt, the
    outcome stored once and reported stored."""
    job = _job(user_factory())
    claimed = loop._job_claim(job_id=job.pk, worker="w@host", token="tok123")
    again = loop._job_claim(job_id=job.pk, worker="w@host", token="tok123")  # the retry of that claim
    assert again.request_id == claimed.request_id and Job.objects.get(pk=job.pk).attempts == 1

    real_claim_holds = loop.claim_holds
    landed = []

    class LostReply:
        def __init__(self, queryset):
            self.queryset = queryset

        def update(self, **fields):
            count = self.queryset.update(**fields)
            if not landed:
                landed.append(count)
                raise OperationalError("server closed the connection unexpectedly")
            return count

    monkeypatch.setattr(loop, "claim_holds", lambda j: LostReply(real_claim_holds(j)))
    monkeypatch.setattr("vision.faults.time.sleep", lambda _s: None)
    stored = loop._job_finish(job=claimed, outcome=JobOutcome(status=JobStatus.SUCCEEDED, text="done"))

    assert stored is True and landed == [1]
    row = Job.objects.get(pk=job.pk)
    assert (row.status, row.result_text, row.attempts) == ("succeeded", "done", 1)


def test_retries_do_not_count_against_the_worker_lost_bound(user_factory, redis_url, settings):
    job = _job(
        user_factory(),
        status=JobStatus.RUNNING,
        attempts=settings.JOB_MAX_ATTEMPTS,
        retries=1,
        worker="dead@host",
    )
    claimed = loop._job_claim(job_id=job.pk, worker="w@host")
    assert claimed is not None and claimed.attempts == settings.JOB_MAX_ATTEMPTS + 1
