"""The Job status machine (vision.services.job_status): the allowed moves, and a refused one."""

import pytest

from accounts.scope import scope_for
from vision.models import FINISHED_STATUSES, Job, JobStatus
from vision.services.job_status import MOVES, UNFINISHED, JobMoveRefused, job_move

Q, R, S, F, C = (
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.SUCCEEDED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
)


def test_the_allowed_moves():
    allowed = {(source, target) for source, targets in MOVES.items() for target in targets}
    assert allowed == {
        (Q, R),  # a worker claims it
        (Q, F),  # the queue is down, its attempts are used up, no engine can run it
        (Q, C),  # the user cancels it
        (R, R),  # a re-attempt under the same claim, or a take-over from a lost worker
        (R, Q),  # released (engine busy) or requeued (worker lost)
        (R, S),
        (R, F),
        (R, C),
    }
    assert set(MOVES) == set(JobStatus)
    assert set(UNFINISHED) == {Q, R} and all(not MOVES[status] for status in FINISHED_STATUSES)


@pytest.mark.django_db
def test_a_forbidden_move_is_refused_before_the_database_is_touched(user_factory):
    job = Job.objects.create(
        owner=(_owner := user_factory()),
        organization=scope_for(_owner).organization,
        task="chat",
        options={"message": "hi"},
        max_tokens=4,
        status=S,
    )
    with pytest.raises(JobMoveRefused, match="succeeded to running"):
        job_move(source=S, target=R, where={"pk": job.pk})
    with pytest.raises(JobMoveRefused, match="queued to succeeded"):
        job_move(source=Q, target=S, where={"pk": job.pk})
    assert Job.objects.get(pk=job.pk).status == S


@pytest.mark.django_db
def test_a_move_is_conditional_on_the_source_status_and_the_match(user_factory):
    job = Job.objects.create(
        owner=(_owner := user_factory()),
        organization=scope_for(_owner).organization,
        task="chat",
        options={"message": "hi"},
        max_tokens=4,
    )
    assert job_move(source=R, target=F, where={"pk": job.pk}) == 0  # not running: nothing moves
    assert job_move(source=Q, target=R, where={"pk": job.pk, "attempts": 5}) == 0  # not as read
    assert job_move(source=Q, target=R, where={"pk": job.pk, "attempts": 0}, worker="w@host") == 1
    row = Job.objects.get(pk=job.pk)
    assert (row.status, row.worker) == (R, "w@host")
