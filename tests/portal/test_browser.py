"""The portal in a real browser: headless Chromium against uvicorn, Redis and the test worker
(tiny random-weight checkpoint: assertions are on states and non-empty results, not wording)."""

from __future__ import annotations

import csv
import io
import re
import time

import httpx
import pytest
from playwright.sync_api import expect

from accounts.roles import Role
from accounts.scope import scope_for
from tests.portal.conftest import login, screenshot
from tests.vision.files import image_bytes

pytestmark = [pytest.mark.browser, pytest.mark.integration]

XSS_NAME = "<img src=x onerror=alert('name')>.png"  # no double quote: browsers send it as %22
XSS_TEXT = '<script>alert("answer")</script><img src=x onerror=alert("answer")>'
JOB_TIMEOUT_MS = 120_000


def _invoice_png(seed: int = 3, **kwargs) -> bytes:
    from tests.vision.ocr.invoices import encode, make_invoice

    image, _ = make_invoice(seed, **kwargs)
    return encode(image, "PNG")


def test_login_dashboard_and_api_keys(new_page, portal_user, ready_worker) -> None:
    """GIVEN a member WHEN they log in THEN the dashboard shows the worker with its model and
    number formats; an API key is created (shown once), works, and is revoked; logout works."""
    user = portal_user(Role.MEMBER)
    page = new_page()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    login(page, user)
    workers = page.locator("#workers tbody")
    row = workers.locator("tr", has_text=ready_worker["hostname"])
    expect(row.locator("[data-state=ready]")).to_be_visible()
    for part, fmt in ready_worker["engine"]["formats"].items():
        expect(row).to_contain_text(fmt)
        assert part in ("lm", "vision")
    screenshot(page, "dashboard")

    page.click("nav.mainnav >> text=API keys")
    page.fill("#key-name", "my script")
    page.click("text=Create key")
    raw_key = page.locator("#raw-key").inner_text().strip()
    assert raw_key.startswith("dp_")
    expect(page.locator("#key-list")).to_contain_text("my script")
    screenshot(page, "api-keys")
    base = page.url.split("/keys/")[0]
    assert httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {raw_key}"}).status_code == 200

    page.locator("#key-list button", has_text="Revoke").click()
    expect(page.locator(".messages")).to_contain_text("revoked")
    assert raw_key not in page.content()
    assert httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {raw_key}"}).status_code == 401

    page.click("text=Log out")
    expect(page).to_have_url(re.compile(r"/login/$"))


def test_upload_an_image_and_watch_the_job_finish(new_page, portal_user, ready_worker, tmp_path) -> None:
    """GIVEN a logged-in member WHEN they drop one image (its name an XSS attempt) and start a
    caption job THEN the job page shows it queued/running and then succeeded with a non-empty
    answer, timings, and the file name as text."""
    user = portal_user()
    page = new_page()
    login(page, user)
    page.click("nav.mainnav >> text=Upload")
    page.check("input[name=task][value=caption]")
    page.set_input_files(
        "#files", files=[{"name": XSS_NAME, "mimeType": "image/png", "buffer": image_bytes()}]
    )
    expect(page.locator("#file-list")).to_contain_text(XSS_NAME)
    screenshot(page, "upload")
    page.click("#upload-submit")
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    expect(page.locator("#job-file")).to_have_text(XSS_NAME)
    expect(page.locator("#job-status .status")).to_have_attribute(
        "data-status", "succeeded", timeout=JOB_TIMEOUT_MS
    )
    from vision.models import Job

    job = Job.objects.get(pk=int(page.url.rstrip("/").rsplit("/", 1)[1]))
    assert job.result_text and job.completion_tokens > 0, "the job's answer is empty"
    # The tiny random-weight model may answer in whitespace only: compare the raw text.
    assert page.locator("#job-result").evaluate("node => node.textContent") == job.result_text
    expect(page.locator(".facts")).to_contain_text("Engine total")
    expect(page.locator(".pageimg img")).to_have_js_property("complete", True)
    assert page.locator(".pageimg img").evaluate("img => img.naturalWidth") == 64
    screenshot(page, "job")
    page.goto("/")
    expect(page.locator(".filename", has_text=XSS_NAME).first).to_be_visible()


def test_batch_of_invoices_with_ocr_boxes_progress_and_export(new_page, portal_user, ready_worker) -> None:
    """GIVEN two invoice scans dropped together with the OCR task THEN a batch starts, its page
    shows progress until both finished, the CSV export lists both, and a job page draws the
    OCR boxes over the page image."""
    user = portal_user()
    page = new_page()
    login(page, user)
    page.goto("/upload/")
    page.check("input[name=task][value=ocr]")
    page.set_input_files(
        "#files",
        files=[
            {"name": "invoice-a.png", "mimeType": "image/png", "buffer": _invoice_png(3)},
            {"name": "invoice-b.png", "mimeType": "image/png", "buffer": _invoice_png(4)},
        ],
    )
    expect(page.locator("#upload-submit")).to_contain_text("2")
    page.click("#upload-submit")
    page.wait_for_url(re.compile(r"/batches/\d+/$"))
    expect(page.locator("#batch-jobs tbody tr")).to_have_count(2)
    expect(page.locator("#batch-summary")).to_have_text(re.compile(r"2 of 2"), timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#batch-jobs .status[data-status=succeeded]")).to_have_count(2)
    screenshot(page, "batch")

    export = page.locator("a", has_text="CSV").get_attribute("href")
    with page.expect_download() as download:
        page.click("a:has-text('CSV')")
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text(encoding="utf-8"))))
    assert export and sorted(r["file_name"] for r in rows) == ["invoice-a.png", "invoice-b.png"]
    assert all(r["status"] == "succeeded" and r["result"] for r in rows)

    page.locator("#batch-jobs a", has_text="invoice-a.png").click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    assert page.locator(".pageimg svg rect.box-line").count() > 5, "no OCR boxes drawn"
    assert page.locator("#job-result").inner_text().strip()
    screenshot(page, "job-ocr")


def test_chat_streams_the_answer_and_keeps_the_history(new_page, portal_user, ready_worker) -> None:
    """GIVEN the chat page WHEN a member attaches an image with the camera button and asks THEN
    the answer grows in several steps while it streams; after a reload the conversation is in
    the side list with its history, and a follow-up lands in the same conversation."""
    from vision.models import Conversation

    user = portal_user()
    page = new_page()
    login(page, user)
    page.click("nav.mainnav >> text=Chat")
    expect(page.locator(".camera svg")).to_be_visible()
    page.set_input_files(
        "#image-input",
        files=[{"name": "photo.png", "mimeType": "image/png", "buffer": image_bytes(color="blue")}],
    )
    expect(page.locator("#attachment")).to_be_visible()
    expect(page.locator("#attachment-name")).to_have_text("photo.png")
    # Record every length the answer bubble takes while it streams.
    page.evaluate(
        """() => {
        window.__lengths = [];
        new MutationObserver(() => {
          const node = document.querySelector('.msg-assistant .msgtext');
          if (node) window.__lengths.push(node.textContent.length);
        }).observe(document.getElementById('messages'), {childList: true, subtree: true, characterData: true});
        }"""
    )
    page.fill("#prompt", "What colour is this picture?")
    page.click("#send")
    expect(page.locator(".msg-user .msgimg")).to_be_visible()
    expect(page.locator("#attachment")).to_be_hidden()
    expect(page.locator(".msg-assistant.streaming")).to_have_count(0, timeout=JOB_TIMEOUT_MS)
    expect(page).to_have_url(re.compile(r"/chat/\d+/$"))
    lengths = page.evaluate("window.__lengths")
    growing = sorted({n for n in lengths if n > 0})
    assert len(growing) >= 3, f"the answer did not stream in steps: {lengths[:50]}"
    assert page.locator(".msg-assistant .msgtext").evaluate("node => node.textContent")
    screenshot(page, "chat")

    page.reload()
    expect(page.locator(".msg-user .msgtext")).to_have_text("What colour is this picture?")
    expect(page.locator(".msg-assistant")).to_have_count(1)
    expect(page.locator("#conversation-list a[aria-current=page]")).to_contain_text("What colour")
    page.fill("#prompt", "And the shape?")
    page.click("#send")
    expect(page.locator(".msg-assistant")).to_have_count(2)
    expect(page.locator(".msg-assistant.streaming")).to_have_count(0, timeout=JOB_TIMEOUT_MS)
    conversations = Conversation.objects.filter(owner=user)
    assert conversations.count() == 1
    assert [m.role for m in conversations.get().messages.all()] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
    ]

    page.click("#new-chat")
    expect(page).to_have_url(re.compile(r"/chat/$"))
    expect(page.locator("#chat-empty")).to_be_visible()


def test_answers_and_titles_are_shown_as_text(new_page, portal_user) -> None:
    """GIVEN a conversation whose title and stored answer are script WHEN its page is opened
    THEN both are shown as text and nothing runs (the fixture fails on any dialog)."""
    from vision.services.conversations import (
        TurnAnswer,
        TurnMessage,
        conversation_record_answer,
        conversation_record_request,
    )

    user = portal_user()
    conversation = conversation_record_request(
        scope=scope_for(user),
        key="xss",
        model="qwen3-vl-2b",
        messages=[TurnMessage(role="user", text=XSS_TEXT)],
    )
    conversation_record_answer(
        conversation=conversation,
        answer=TurnAnswer(
            text=XSS_TEXT, finish_reason="stop", prompt_tokens=1, completion_tokens=1, cached_tokens=0
        ),
    )
    page = new_page()
    login(page, user)
    page.goto(f"/chat/{conversation.pk}/")
    expect(page.locator(".msg-assistant .msgtext")).to_have_text(XSS_TEXT)
    expect(page.locator("#conversation-list")).to_contain_text('<script>alert("answer")')
    assert page.locator("#messages img:not(.msgimg)").count() == 0


def test_reviewer_corrects_a_field_and_approves(new_page, portal_user) -> None:
    """GIVEN an invoice extraction awaiting review (total misread) WHEN a reviewer opens it,
    focuses the total (its box lights up), corrects it and approves with a comment THEN it is
    approved and the audit trail shows who changed the total from what to what."""
    from PIL import Image

    from accounts.models import Organization
    from vision.models import ExtractionStatus
    from vision.ocr.pipeline import read_invoice
    from vision.services.documents import document_upload
    from vision.services.extractions import extraction_create_from_invoice

    team = Organization.objects.create(name="Accounts payable", slug=f"ap-{time.monotonic_ns()}")
    owner = portal_user(name="uploader", organization=team)
    data = _invoice_png(5)
    document = document_upload(scope=scope_for(owner), data=data, filename="march-invoice.png").document
    reading = read_invoice(Image.open(io.BytesIO(data)).convert("RGB"))
    extraction = extraction_create_from_invoice(document=document, reading=reading)
    assert extraction.boxes.get("total"), "the OCR pipeline found no total to correct"
    reviewer = portal_user(Role.REVIEWER, name="reviewer", organization=team)

    page = new_page()
    login(page, reviewer)
    page.click("nav.mainnav >> text=Review")
    row = page.locator("#review-list tr", has_text="march-invoice.png")
    expect(row).to_be_visible()
    screenshot(page, "review-queue")
    row.locator("a").first.click()
    page.wait_for_url(re.compile(r"/review/\d+/$"))
    expect(page.locator("#review-page img")).to_have_js_property("complete", True)
    page.focus("#field-total")
    expect(page.locator('rect.box.active[data-label="total"]')).to_have_count(1)
    screenshot(page, "review-detail")

    old_total = page.input_value("#field-total")
    page.fill("#field-total", "4321.00")
    page.fill("#review-comment", "Total checked against the paper copy.")
    page.uncheck("#review-form input[name=next]")
    page.click("#approve")
    page.wait_for_url(re.compile(r"/review/$"))
    expect(page.locator(".messages")).to_contain_text("approved")

    extraction.refresh_from_db()
    assert extraction.status == ExtractionStatus.APPROVED and extraction.fields["total"] == "4321.00"
    assert extraction.reviewer == reviewer and extraction.comment == "Total checked against the paper copy."
    page.goto(f"/review/{extraction.pk}/")
    trail = page.locator("#audit-trail")
    expect(trail).to_contain_text(reviewer.username)
    expect(trail).to_contain_text("total")
    expect(trail.locator("ins")).to_contain_text("4321.00")
    if old_total:
        expect(trail.locator("del")).to_contain_text(old_total)
    expect(trail).to_contain_text("approved")
    expect(trail).to_contain_text("Total checked against the paper copy.")
    screenshot(page, "review-approved")


def test_member_is_refused_the_review_queue(new_page, portal_user) -> None:
    user = portal_user(Role.MEMBER)
    page = new_page()
    login(page, user)
    assert page.locator("nav.mainnav >> text=Review").count() == 0
    response = page.goto("/review/")
    assert response.status == 403
    expect(page.locator("h1")).to_have_text("Not allowed")
    screenshot(page, "review-403")


def test_chinese_interface_from_the_browser_and_the_switcher(new_page, portal_user) -> None:
    """GIVEN a browser that prefers Simplified Chinese THEN the portal speaks Chinese; the
    language switcher turns it to English and back, and the choice sticks."""
    user = portal_user(Role.REVIEWER)
    page = new_page(locale="zh-CN")
    page.goto("/login/")
    expect(page.locator("h1")).to_have_text("登录")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    login(page, user)
    expect(page.locator("nav.mainnav")).to_contain_text("仪表盘")
    expect(page.locator("nav.mainnav")).to_contain_text("审核")
    screenshot(page, "dashboard-zh")
    page.goto("/upload/")
    expect(page.locator("#dropzone")).to_contain_text("把文件拖到这里")

    page.select_option("#lang-select", "en")
    page.wait_for_load_state()
    expect(page.locator("#dropzone")).to_contain_text("Drop files here")
    page.goto("/")
    expect(page.locator("nav.mainnav")).to_contain_text("Dashboard")
    page.select_option("#lang-select", "zh-hans")
    page.wait_for_load_state()
    expect(page.locator("nav.mainnav")).to_contain_text("仪表盘")


def test_phone_layout(new_page, portal_user) -> None:
    """The dashboard and chat fit a phone screen: no horizontal scrolling of the page."""
    user = portal_user()
    page = new_page(mobile=True)
    login(page, user)
    for path, name in (("/", "dashboard-phone"), ("/chat/", "chat-phone"), ("/upload/", "upload-phone")):
        page.goto(path)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"{path} scrolls sideways by {overflow}px on a phone"
        screenshot(page, name)
