"""OCR work is not starved behind VLM work: OCR and invoice jobs travel on their own queue, which
every worker consumes next to the VLM queue, so an OCR job submitted behind a backlog of caption
jobs runs at the next free task slot instead of after the whole backlog.

A private stack (tests/reliability/stack.py) with one worker on the tiny checkpoint and a single
task thread, every job held 2 s (tests/reliability/worker_hooks.py) so the order is visible. With
one shared FIFO queue the OCR job would finish last.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from accounts.scope import scope_for
from tests.reliability.stack import RedisServer, WebServer, Worker
from tests.vision import files
from tests.vision.jobs_helpers import wait_finished

pytestmark = [pytest.mark.integration]

BACKLOG = 4


@pytest.fixture
def stack(django_db_setup) -> Iterator[tuple[Worker, WebServer]]:
    redis_server = RedisServer()
    redis_server.start()
    worker = Worker(
        redis_url=redis_server.url(),
        env={"RELIABILITY_HOLD_BEFORE_S": "2"},
        name=f"routing-{time.monotonic_ns() % 10**8}@localhost",
        concurrency=1,
    ).start()
    web = None
    try:
        worker.wait_ready(timeout=240)
        web = WebServer(redis_url=redis_server.url()).start()
        yield worker, web
    finally:
        if web is not None:
            web.stop()
        worker.stop()
        redis_server.remove()


@pytest.fixture
def key(transactional_db, django_db_serialized_rollback) -> str:
    from accounts.services import api_key_create, user_create

    user = user_create(username=f"routing-{time.monotonic_ns()}", password="correct horse battery")
    return api_key_create(scope=scope_for(user), name="routing").raw_key


def test_an_ocr_job_overtakes_a_backlog_of_caption_jobs(stack, key) -> None:
    from vision.models import Job

    worker, web = stack
    assert "ocr" in worker.heartbeat()["queues"] and "vision" in worker.heartbeat()["queues"]
    with httpx.Client(base_url=web.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:

        def submit(task: str, color: str) -> dict:
            image = files.image_bytes("PNG", (64, 48), color)  # distinct bytes: distinct documents
            response = client.post(
                "/api/jobs",
                data={"task": task, "max_tokens": "2"},
                files={"file": (f"{color}.png", image, "image/png")},
            )
            assert response.status_code == 202, response.text
            return response.json()

        captions = [submit("caption", color) for color in ("red", "green", "blue", "yellow")[:BACKLOG]]
        ocr = submit("ocr", "white")  # a blank page is enough: the order is what is measured
        done = [wait_finished(client, job["status_url"], timeout=240) for job in [*captions, ocr]]

    assert [job["status"] for job in done] == ["succeeded"] * (BACKLOG + 1), done
    order = [job.pk for job in Job.objects.filter(pk__in=[j["id"] for j in done]).order_by("started_at")]
    position = order.index(ocr["id"])
    # The first caption job was already running (or next) when the OCR job arrived; the OCR job
    # must run right after it, not behind the other caption jobs.
    assert position <= 2, f"the OCR job ran at position {position + 1} of {len(order)}: {order}"
