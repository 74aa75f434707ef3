"""A worker with MEDIA_STORAGE=s3 and no media folder at all runs an OCR job from the bucket.

A private stack (tests/reliability/stack.py): its own Redis, a real Celery worker and a real
uvicorn, both with MEDIA_STORAGE=s3 (the test server of scripts/test.sh, env S3_*) and MEDIA_ROOT
naming a folder that does not exist; the suite's main worker (local media) never sees the job.
The upload goes in through the API, the job succeeds with the page's text, the objects are in
the bucket, and the folder still does not exist: nothing read or wrote the local disk. This
process's settings point at the same bucket, so it reads what the web process stored.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from accounts.scope import scope_for
from tests.reliability.stack import RedisServer, WebServer, Worker, wait_until
from tests.vision.jobs_helpers import wait_finished
from tests.vision.ocr.invoices import encode, make_invoice
from tests.vision.s3 import object_keys, s3_env, use_s3

pytestmark = [pytest.mark.integration]


def _stack_env(media_root: Path) -> dict[str, str]:
    # VISION_MODEL=none: an OCR-only worker (no model to load), on the `ocr` queue only.
    return {**s3_env(), "MEDIA_STORAGE": "s3", "MEDIA_ROOT": str(media_root), "VISION_MODEL": "none"}


@pytest.fixture
def s3_stack(
    tmp_path, transactional_db, django_db_serialized_rollback
) -> Iterator[tuple[Worker, WebServer, Path]]:
    media_root = tmp_path / "absent-media"
    redis_server = RedisServer()
    redis_server.start()
    worker = Worker(
        redis_url=redis_server.url(),
        env=_stack_env(media_root),
        name=f"s3-{time.monotonic_ns() % 10**8}@localhost",
    ).start()
    web = None
    try:
        wait_until(lambda: _ocr_ready(worker), timeout=180, interval=0.5, what=f"{worker.name} OCR ready")
        web = WebServer(redis_url=redis_server.url(), env=_stack_env(media_root)).start()
        yield worker, web, media_root
    finally:
        if web is not None:
            web.stop()
        worker.stop()
        redis_server.remove()


def _ocr_ready(worker: Worker) -> bool:
    if worker.process is not None and worker.process.poll() is not None:
        raise RuntimeError(f"worker exited {worker.process.returncode}:\n{worker.log()[-3000:]}")
    beat = worker.heartbeat() or {}
    return beat.get("capabilities", {}).get("ocr", {}).get("state") == "ready"


def test_an_ocr_job_runs_from_the_bucket_with_no_media_folder(s3_stack, settings) -> None:
    from accounts.services import api_key_create, user_create
    from vision.media import media_read
    from vision.models import Job

    worker, web, media_root = s3_stack
    use_s3(settings)
    settings.MEDIA_ROOT = media_root
    user = user_create(username=f"s3-{time.monotonic_ns()}", password="correct horse battery")
    key = api_key_create(scope=scope_for(user), name="s3").raw_key
    image, truth = make_invoice(73, "en")
    png = encode(image.resize((image.width // 2, image.height // 2)), "PNG")

    with httpx.Client(base_url=web.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        submitted = client.post(
            "/api/jobs", data={"task": "ocr"}, files={"file": ("a.png", png, "image/png")}
        )
        assert submitted.status_code == 202, submitted.text
        done = wait_finished(client, submitted.json()["status_url"], timeout=240)

    assert done["status"] == "succeeded", (done, worker.log()[-3000:])
    assert truth.invoice_number in done["result"]["text"]
    job = Job.objects.select_related("document").get(pk=done["id"])
    assert job.worker == worker.name
    document = job.document
    stored = {document.file, *document.pages.values_list("file", flat=True)}
    assert stored <= object_keys(f"org-{document.organization_id}/uploads/")
    assert media_read(document.file) == png  # this process reads what the web process stored
    assert not media_root.exists(), "something wrote to the local media folder"
