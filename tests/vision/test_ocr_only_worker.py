"""A deployment without a working vision-language model still does its main job.

Each case starts a private stack (tests/reliability/stack.py: its own Redis, a real Celery worker,
a real uvicorn), so the suite's main worker, which runs the tiny checkpoint on the shared Redis,
neither sees these jobs nor counts in these heartbeats:
- `none`: VISION_MODEL=none, an OCR-only deployment (no download, no tuning);
- `broken`: VISION_MODEL names a folder that does not exist, so the model fails to load.

Through the API and the portal: OCR and invoice jobs succeed (the invoice flagged
`vlm_unavailable`, in English and Chinese on the review pages); caption jobs and chat answer 503
`engine_unavailable` with the reason; /readyz and the dashboard say "OCR ready, VLM unavailable:
<reason>"; the upload page offers only what can run.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass

import httpx
import pytest

from accounts.scope import scope_for
from tests.reliability.stack import RedisServer, WebServer, Worker, wait_until
from tests.vision.jobs_helpers import wait_finished
from tests.vision.ocr.invoices import encode, make_invoice

pytestmark = [pytest.mark.integration]

PASSWORD = "correct horse battery"
BROKEN_MODEL = "/nonexistent/docplatform-model"
# The reason each case's worker gives for its VLM (a part of it: the rest names paths).
REASONS = {
    "none": "VISION_MODEL=none: an OCR-only deployment, no model is loaded",
    "broken": f"model folder {BROKEN_MODEL} does not exist",
}


@dataclass
class Stack:
    case: str
    worker: Worker
    web: WebServer
    vlm_reason: str  # the full reason the worker's heartbeat gives


@pytest.fixture(scope="module", params=["none", "broken"])
def stack(request, django_db_setup) -> Iterator[Stack]:
    case = request.param
    redis_server = RedisServer()
    redis_server.start()
    model = "none" if case == "none" else BROKEN_MODEL
    # Bounded: one worker with two task threads, its own node name, on the private Redis only.
    worker = Worker(
        redis_url=redis_server.url(),
        env={"VISION_MODEL": model, "VISION_DTYPE": "fp32"},
        name=f"ocronly-{case}-{time.monotonic_ns() % 10**8}@localhost",
    ).start()
    web = None
    try:
        beat = wait_until(
            lambda: _settled(worker), timeout=180, interval=0.5, what=f"{worker.name} capabilities"
        )
        web = WebServer(redis_url=redis_server.url()).start()
        yield Stack(case, worker, web, beat["capabilities"]["vlm"]["reason"])
    finally:
        if web is not None:
            web.stop()
        worker.stop()
        redis_server.remove()


def _settled(worker: Worker) -> dict | None:
    """The worker's heartbeat once OCR is ready and the VLM is known to be unavailable."""
    if worker.process is not None and worker.process.poll() is not None:
        raise RuntimeError(f"worker exited {worker.process.returncode}:\n{worker.log()[-3000:]}")
    beat = worker.heartbeat() or {}
    caps = beat.get("capabilities", {})
    if caps.get("ocr", {}).get("state") == "ready" and caps.get("vlm", {}).get("state") == "unavailable":
        return beat
    return None


@pytest.fixture
def reviewer(transactional_db, django_db_serialized_rollback):
    """A reviewer with an API key, committed so the stack's processes see them."""
    from accounts.roles import Role
    from accounts.services import api_key_create, user_create

    user = user_create(username=f"ocronly-{time.monotonic_ns()}", password=PASSWORD, role=Role.REVIEWER)
    return user, api_key_create(scope=scope_for(user), name="ocr-only").raw_key


def _api(stack: Stack, key: str) -> httpx.Client:
    return httpx.Client(base_url=stack.web.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _portal(stack: Stack, user, language: str = "en") -> httpx.Client:
    """A browser-like session: logged in through the login form, CSRF cookie kept."""
    client = httpx.Client(base_url=stack.web.url, timeout=60, headers={"Accept-Language": language})
    client.get("/login/")
    response = client.post(
        "/login/",
        data={
            "username": user.username,
            "password": PASSWORD,
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
    )
    assert response.status_code == 302, response.text[:500]
    return client


def _invoice_png(seed: int) -> tuple[bytes, object]:
    image, truth = make_invoice(seed, "en")
    return encode(image.resize((image.width // 2, image.height // 2)), "PNG"), truth


def _text(page: str, element_id: str) -> str:
    """The visible text of the element with this id, tags dropped and spaces collapsed."""
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</(p|ul|section|span)>', page, flags=re.S)
    assert match, f"no #{element_id} on the page"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", match.group(1))).split())


def test_the_worker_reports_ocr_ready_and_why_the_vlm_is_not(stack: Stack) -> None:
    beat = stack.worker.heartbeat()
    assert REASONS[stack.case] in stack.vlm_reason
    assert beat["capabilities"]["ocr"] == {"state": "ready", "reason": ""}
    # No VLM by configuration: the worker does not take VLM work; a failed load still consumes
    # it (and fails such jobs at once when no other worker has the VLM).
    assert ("vision" in beat["queues"]) is (stack.case == "broken")
    assert "ocr" in beat["queues"]
    log = stack.worker.log()
    if stack.case == "none":  # no engine at all: no download, no tuning of number formats
        assert "vision engine started loading" not in log and "weight formats chosen" not in log
        assert beat["engine"]["state"] == "off"
    else:
        assert beat["engine"]["state"] == "error"


def test_ocr_and_invoice_jobs_succeed_through_the_api(stack: Stack, reviewer) -> None:
    _, key = reviewer
    png, truth = _invoice_png(71)
    with _api(stack, key) as client:
        ocr = client.post("/api/jobs", data={"task": "ocr"}, files={"file": ("a.png", png, "image/png")})
        invoice = client.post(
            "/api/jobs", data={"task": "invoice"}, files={"file": ("a.png", png, "image/png")}
        )
        assert ocr.status_code == 202, ocr.text
        assert invoice.status_code == 202, invoice.text
        ocr_done = wait_finished(client, ocr.json()["status_url"], timeout=240)
        invoice_done = wait_finished(client, invoice.json()["status_url"], timeout=240)

    assert ocr_done["status"] == "succeeded", ocr_done
    assert truth.invoice_number in ocr_done["result"]["text"]
    assert invoice_done["status"] == "succeeded", invoice_done
    data = invoice_done["result"]["data"]
    assert data["used_vlm"] is False
    assert data["invoice_number"] == truth.invoice_number and data["total"] == str(truth.total)
    flags = [f for f in data["flags"] if f["code"] == "vlm_unavailable"]
    assert len(flags) == 1 and REASONS[stack.case] in flags[0]["reason"], data["flags"]
    from vision.models import Job

    assert {job.worker for job in Job.objects.filter(pk__in=[ocr_done["id"], invoice_done["id"]])} == {
        stack.worker.name
    }


def test_vlm_work_is_refused_with_503_engine_unavailable_and_the_reason(stack: Stack, reviewer) -> None:
    _, key = reviewer
    with _api(stack, key) as client:
        caption = client.post(
            "/api/jobs", data={"task": "caption"}, files={"file": ("a.png", _invoice_png(72)[0], "image/png")}
        )
        chat = client.post(
            "/v1/chat/completions",
            json={"model": "qwen3-vl-2b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        )

    assert caption.status_code == 503, caption.text
    assert caption.json()["code"] == "engine_unavailable"
    assert REASONS[stack.case] in caption.json()["detail"]
    assert int(caption.headers["Retry-After"]) >= 1
    assert chat.status_code == 503, chat.text
    error = chat.json()["error"]
    assert error["code"] == "engine_unavailable" and REASONS[stack.case] in error["message"]
    assert int(chat.headers["Retry-After"]) >= 1


def test_readyz_says_ocr_ready_vlm_unavailable(stack: Stack) -> None:
    response = httpx.get(f"{stack.web.url}/readyz", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["summary"] == f"OCR ready, VLM unavailable: {stack.vlm_reason}"
    assert body["capabilities"]["ocr"]["state"] == "ready"
    assert body["capabilities"]["vlm"]["state"] == "unavailable"


def test_portal_shows_what_can_run_and_flags_layout_only_invoices(stack: Stack, reviewer) -> None:
    user, _ = reviewer
    png, truth = _invoice_png(73)
    with closing(_portal(stack, user)) as browser:
        dashboard = browser.get("/").text
        upload = browser.get("/upload/").text
        # The upload page's own way of starting a job: the API with the session and CSRF header.
        started = browser.post(
            "/api/jobs",
            data={"task": "invoice"},
            files={"file": ("invoice.png", png, "image/png")},
            headers={"X-CSRFToken": browser.cookies["csrftoken"], "Accept": "application/json"},
        )
        assert started.status_code == 202, started.text
        done = wait_finished(browser, started.json()["status_url"], timeout=240)
        assert done["status"] == "succeeded", done
        extraction_id = done["result"]["data"]["extraction_id"]
        job_page = browser.get(f"/jobs/{done['id']}/").text
        review_page = browser.get(f"/review/{extraction_id}/").text
        queue = browser.get("/review/").text
    with closing(_portal(stack, user, "zh-hans")) as browser_zh:
        dashboard_zh = browser_zh.get("/").text
        review_zh = browser_zh.get(f"/review/{extraction_id}/").text

    assert _text(dashboard, "capability-summary") == f"OCR ready, VLM unavailable: {stack.vlm_reason}"
    tasks = _text(dashboard, "task-availability")
    assert "✓ OCR — can run now" in tasks
    assert "✓ Invoice — runs with the layout extractor alone" in tasks
    assert "✗ Caption — cannot run: no worker has the vision-language model" in tasks
    assert "✗ Chat — cannot run" in tasks
    assert _text(dashboard_zh, "capability-summary") == f"OCR 就绪, VLM 不可用: {stack.vlm_reason}"
    assert "无法运行：没有工作进程拥有视觉语言模型" in _text(dashboard_zh, "task-availability")

    assert re.search(r'value="caption"[^>]*\bdisabled\b', upload)
    assert re.search(r'value="ocr"(?![^>]*\bdisabled\b)[^>]*>', upload)
    assert re.search(r'value="invoice"(?![^>]*\bdisabled\b)[^>]*>', upload)

    banner = "Read by the layout extractor alone: the vision-language model was not available"
    assert banner in _text(review_page, "vlm-unavailable")
    assert banner in _text(job_page, "vlm-unavailable")
    assert "仅由版面提取器读取：视觉语言模型不可用" in _text(review_zh, "vlm-unavailable")
    assert 'data-flag="vlm_unavailable"' in queue and "layout only" in queue
    assert html.escape(truth.invoice_number) in review_page
