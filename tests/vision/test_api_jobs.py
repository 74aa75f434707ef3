"""/api/jobs end to end through the real Celery worker and the tiny checkpoint (scripts/test.sh).

The tiny model has random weights: tests assert on status, usage, timings and that text came
out, never on wording."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from accounts.scope import scope_for
from tests.conftest import wait_for
from tests.vision import files
from tests.vision.jobs_helpers import wait_finished, wait_status
from vision.models import Job, JobStatus
from vision.services.documents import document_upload

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def _png(name: str = "photo.png", color: str = "red") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, files.image_bytes("PNG", (96, 64), color), content_type="image/png")


def test_caption_job_runs_end_to_end(api_client, user_factory, redis_url):
    """GIVEN an image WHEN a caption job is posted THEN 202 with a status URL, and polling it
    shows the job succeed with text, token usage and timings."""
    api_client.force_authenticate(user_factory())

    response = api_client.post(
        "/api/jobs", {"task": "caption", "file": _png(), "max_tokens": 8}, format="multipart"
    )

    assert response.status_code == 202, response.content
    job = response.json()
    assert job["status"] == "queued" and job["queue_position"] >= 1
    assert job["status_url"].endswith(f"/api/jobs/{job['id']}")
    assert response["Location"] == job["status_url"]

    done = wait_finished(api_client, job["status_url"])

    assert done["status"] == "succeeded", done
    assert done["error"] is None and done["queue_position"] is None
    assert done["result"]["text"]  # random weights: any text, often whitespace
    assert done["result"]["finish_reason"] in {"stop", "length"}
    usage = done["usage"]
    assert usage["image_tokens"] > 0 and usage["prompt_tokens"] > usage["image_tokens"]
    assert 1 <= usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert done["timings"]["total_s"] > 0 and done["timings"]["run_s"] >= 0
    assert done["progress"]["fraction"] == 1.0
    assert done["attempts"] == 1


def test_vqa_on_an_uploaded_document(api_client, user_factory, redis_url):
    api_client.force_authenticate(user_factory())
    uploaded = api_client.post("/api/documents", {"file": _png("q.png", "blue")}, format="multipart")
    assert uploaded.status_code == 201, uploaded.content
    document_id = uploaded.json()["id"]

    response = api_client.post(
        "/api/jobs",
        {"task": "vqa", "document_id": document_id, "question": "What colour is it?", "max_tokens": 6},
        format="json",
    )

    assert response.status_code == 202, response.content
    done = wait_finished(api_client, response.json()["status_url"])
    assert done["status"] == "succeeded", done
    assert done["document_id"] == document_id
    assert done["options"] == {"question": "What colour is it?"}
    assert done["usage"]["completion_tokens"] >= 1


def test_vqa_without_a_question_is_400_and_stores_nothing(api_client, user_factory):
    api_client.force_authenticate(user_factory())

    response = api_client.post("/api/jobs", {"task": "vqa", "file": _png()}, format="multipart")

    assert response.status_code == 400
    assert "question" in response.json()["detail"]
    assert Job.objects.count() == 0


def test_bad_upload_on_a_job_names_the_rule(api_client, user_factory):
    api_client.force_authenticate(user_factory())
    html = SimpleUploadedFile("x.png", files.HTML_AS_PNG, content_type="image/png")

    response = api_client.post("/api/jobs", {"task": "caption", "file": html}, format="multipart")

    assert response.status_code == 415
    assert response.json()["code"] == "type_unsupported"
    assert Job.objects.count() == 0


def test_cancel_a_running_job(api_client, user_factory, redis_url):
    """GIVEN a long job WHEN cancelled while it runs THEN it ends cancelled and stays so (the
    worker's late outcome is discarded); cancelling again is 409."""
    api_client.force_authenticate(user_factory())
    job = api_client.post(
        "/api/jobs", {"task": "chat", "message": "Tell me a long story.", "max_tokens": 4000}, format="json"
    ).json()
    wait_status(api_client, job["status_url"], {"running", "succeeded"})
    # Progress shows while it runs: the worker writes the tokens generated so far to the row.
    running = wait_for(
        lambda: (body := api_client.get(job["status_url"]).json())["progress"]["tokens"] > 0 and body,
        timeout=60,
        message="progress while running",
    )
    assert running["status"] == "running" and running["result"] is None
    assert 0 <= running["progress"]["fraction"] < 1 and running["progress"]["max_tokens"] == 4000

    response = api_client.post(f"/api/jobs/{job['id']}/cancel")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    assert response.json()["error"]["code"] == "cancelled"
    # The worker stops the generation and its outcome must not overwrite the cancel.
    import time

    time.sleep(3)
    assert api_client.get(job["status_url"]).json()["status"] == "cancelled"
    assert api_client.post(f"/api/jobs/{job['id']}/cancel").status_code == 409


def test_cancel_a_queued_job_means_it_never_runs(api_client, user_factory):
    user = user_factory()
    api_client.force_authenticate(user)
    document = document_upload(
        scope=scope_for(user), data=files.image_bytes("PNG"), filename="a.png"
    ).document
    # Created without a Celery message: stays queued until cancelled.
    job = Job.objects.create(
        organization=scope_for(user).organization, owner=user, document=document, task="caption", max_tokens=8
    )

    response = api_client.post(f"/api/jobs/{job.pk}/cancel")

    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    from vision.runners.loop import _job_claim

    assert _job_claim(job_id=job.pk, worker="test@host") is None  # a late delivery does nothing


def test_list_is_paginated_and_only_mine(api_client, user_factory):
    alice, bob = user_factory(), user_factory()
    document = document_upload(
        scope=scope_for(alice), data=files.image_bytes("PNG"), filename="a.png"
    ).document
    for _ in range(3):
        Job.objects.create(
            organization=scope_for(alice).organization,
            owner=alice,
            document=document,
            task="caption",
            max_tokens=8,
        )
    Job.objects.create(
        organization=scope_for(bob).organization,
        owner=bob,
        task="chat",
        options={"message": "hi"},
        max_tokens=8,
    )
    api_client.force_authenticate(alice)

    page = api_client.get("/api/jobs?page_size=2").json()

    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    assert api_client.get("/api/jobs?status=succeeded").json()["count"] == 0


def test_other_users_objects_are_404(api_client, user_factory):
    alice, bob = user_factory(), user_factory()
    document = document_upload(
        scope=scope_for(alice), data=files.image_bytes("PNG"), filename="a.png"
    ).document
    job = Job.objects.create(
        organization=scope_for(alice).organization,
        owner=alice,
        document=document,
        task="caption",
        max_tokens=8,
    )
    api_client.force_authenticate(bob)

    assert api_client.get(f"/api/jobs/{job.pk}").status_code == 404
    assert api_client.post(f"/api/jobs/{job.pk}/cancel").status_code == 404
    assert api_client.get(f"/api/documents/{document.pk}").status_code == 404
    response = api_client.post("/api/jobs", {"task": "caption", "document_id": document.pk}, format="json")
    assert response.status_code == 404
    assert Job.objects.filter(owner=bob).count() == 0
    assert Job.objects.get(pk=job.pk).status == JobStatus.QUEUED


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/jobs"),
        ("post", "/api/jobs"),
        ("get", "/api/jobs/1"),
        ("post", "/api/jobs/1/cancel"),
        ("get", "/api/documents"),
        ("post", "/api/documents"),
        ("get", "/api/documents/1"),
        ("get", "/api/batches"),
        ("post", "/api/batches"),
        ("get", "/api/batches/1"),
        ("get", "/api/batches/1/export?format=csv"),
    ],
)
def test_unauthenticated_is_401(api_client, method, path):
    response = getattr(api_client, method)(path)
    assert response.status_code == 401


def test_job_stuck_running_on_a_dead_worker_is_requeued_and_finishes(
    api_client, user_factory, settings, redis_url
):
    """GIVEN a job "running" on a worker whose heartbeat is gone, past the grace period
    WHEN its status is read THEN it is requeued, and the live worker runs it (attempt 2)."""
    settings.JOB_STUCK_GRACE_SECONDS = 5
    user = user_factory()
    document = document_upload(
        scope=scope_for(user), data=files.image_bytes("PNG"), filename="a.png"
    ).document
    job = Job.objects.create(
        organization=scope_for(user).organization,
        owner=user,
        document=document,
        task="caption",
        max_tokens=4,
        status=JobStatus.RUNNING,
        attempts=1,
        worker="ghost@nowhere",
        request_id="job-x-1",
        started_at=timezone.now() - timedelta(minutes=10),
    )
    api_client.force_authenticate(user)

    first = api_client.get(f"/api/jobs/{job.pk}").json()

    assert first["status"] in {"queued", "running", "succeeded"}
    done = wait_finished(api_client, f"/api/jobs/{job.pk}")
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2


def test_job_stuck_past_its_attempts_fails_with_a_reason(api_client, user_factory, settings, redis_url):
    settings.JOB_STUCK_GRACE_SECONDS = 5
    user = user_factory()
    job = Job.objects.create(
        organization=scope_for(user).organization,
        owner=user,
        task="chat",
        options={"message": "hi"},
        max_tokens=4,
        status=JobStatus.RUNNING,
        attempts=settings.JOB_MAX_ATTEMPTS,
        worker="ghost@nowhere",
        started_at=timezone.now() - timedelta(minutes=10),
    )
    api_client.force_authenticate(user)
    from vision.runners.recovery import jobs_recover_stuck

    jobs_recover_stuck()  # what every worker's watchdog runs (reading the job never writes)
    body = api_client.get(f"/api/jobs/{job.pk}").json()

    assert body["status"] == "failed"
    assert body["error"]["code"] == "worker_lost"
    assert "ghost@nowhere" in body["error"]["message"]
