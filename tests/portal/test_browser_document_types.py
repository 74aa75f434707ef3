"""A document type in the browser: an admin defines it in the Django admin, a member uses it
from the upload page, a reviewer checks its result on the review page, and a later schema change
in the admin leaves the reviewed result on its version. Headless Chromium against uvicorn, Redis
and the test worker (tiny random checkpoint: the answer's wording is random, its shape is not)."""

from __future__ import annotations

import json
import re
import time

import jsonschema
import pytest
from playwright.sync_api import expect

from accounts.roles import Role
from tests.portal.conftest import login, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.integration]

JOB_TIMEOUT_MS = 240_000


def _schema(order_number: str) -> dict:
    return {
        "type": "object",
        "properties": {
            "order_number": {"enum": [order_number]},  # only the page's: its box must be found
            "supplier": {"type": "string", "maxLength": 12},
            "total": {"type": "number", "minimum": 0, "maximum": 100000},
            "urgent": {"type": "boolean"},
        },
        "required": ["order_number", "supplier", "total", "urgent"],
        "additionalProperties": False,
    }


def test_a_type_defined_in_the_admin_is_used_from_the_upload_page_and_reviewed(
    new_page, portal_user, ready_worker
) -> None:
    from accounts.models import Organization
    from tests.vision.ocr.invoices import encode, make_invoice
    from vision.models import DocumentType, Extraction, ExtractionStatus, Job

    image, truth = make_invoice(9, "en")
    png = encode(image.resize((image.width // 2, image.height // 2)), "PNG")
    schema = _schema(truth.invoice_number)
    # The admin defines a site-wide type; the admin and the member work in one team, whose review
    # queue the admin (a reviewer too) sees.
    team = Organization.objects.create(name="Purchasing", slug=f"purchasing-{time.monotonic_ns()}")
    admin = portal_user(Role.ADMIN, name="admin", organization=team)

    # The admin defines the type; a schema constrained decoding cannot enforce is refused first.
    page = new_page()
    login(page, admin)
    page.goto("/admin/vision/documenttype/add/")
    page.fill("#id_name", "Purchase order")
    page.fill("#id_slug", "purchase-order")
    page.fill("#id_instruction", "Read the purchase order.")
    page.fill("#id_schema", json.dumps({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}))
    page.click("input[name=_save]")
    expect(page.locator(".errorlist")).to_contain_text("'not' at #/properties/a/not")
    page.fill("#id_schema", json.dumps(schema))
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    assert DocumentType.objects.get(slug="purchase-order").version == 1

    # A member uploads with it from the portal.
    member = portal_user(name="member", organization=team)
    upload = new_page()
    login(upload, member)
    upload.click("nav.mainnav >> text=Upload")
    expect(upload.locator("#document-type-row")).to_be_hidden()
    upload.check("input[name=task][value=extract]")
    expect(upload.locator("#document-type-row")).to_be_visible()
    upload.select_option("#document-type", "purchase-order")
    upload.set_input_files("#files", files=[{"name": "po-9.png", "mimeType": "image/png", "buffer": png}])
    screenshot(upload, "upload-document-type")
    upload.click("#upload-submit")
    upload.wait_for_url(re.compile(r"/jobs/\d+/$"))
    expect(upload.locator("#job-status .status")).to_have_attribute(
        "data-status", "succeeded", timeout=JOB_TIMEOUT_MS
    )
    expect(upload.locator("#invoice-fields tr[data-field=order_number]")).to_contain_text(
        truth.invoice_number
    )
    screenshot(upload, "job-document-type")
    job = Job.objects.get(pk=int(upload.url.rstrip("/").rsplit("/", 1)[1]))
    assert job.task == "extract" and job.options["document_type_version"] == 1
    jsonschema.validate(json.loads(job.result_text), schema)

    # The admin (a reviewer too) reviews it: the type and version are shown, the order number's
    # box lights up, a correction and the approval land in the audit trail.
    page.goto("/")  # the admin page has no portal navigation
    page.click("nav.mainnav >> text=Review")
    row = page.locator("#review-list tr", has_text="po-9.png")
    expect(row).to_be_visible()
    row.locator("a").first.click()
    page.wait_for_url(re.compile(r"/review/\d+/$"))
    expect(page.locator("#review-type")).to_have_text("Purchase order, version 1")
    expect(page.locator("#field-order_number")).to_have_value(truth.invoice_number)
    page.focus("#field-order_number")
    expect(page.locator('rect.box.active[data-label="order_number"]')).to_have_count(1)
    page.fill("#field-total", "abc")
    page.uncheck("#review-form input[name=next]")
    page.click("#approve")
    expect(page.locator("#review-error")).to_contain_text("total")  # v1's total is a number
    page.fill("#field-total", "1234.5")
    page.fill("#field-supplier", "Kestrel")
    page.fill("#review-comment", "Checked against the order.")
    page.click("#approve")
    page.wait_for_url(re.compile(r"/review/$"))
    extraction = Extraction.objects.get(job=job)
    assert extraction.status == ExtractionStatus.APPROVED
    assert (extraction.fields["supplier"], extraction.fields["total"]) == ("Kestrel", 1234.5)
    page.goto(f"/review/{extraction.pk}/")
    trail = page.locator("#audit-trail")
    expect(trail).to_contain_text("supplier")
    expect(trail.locator("ins").first).to_be_visible()
    expect(trail).to_contain_text("approved")
    screenshot(page, "review-document-type")

    # A schema change in the admin is a new version; the reviewed result stays on version 1.
    document_type = DocumentType.objects.get(slug="purchase-order")
    page.goto(f"/admin/vision/documenttype/{document_type.pk}/change/")
    changed = {**schema, "properties": {**schema["properties"], "total": {"type": "string", "maxLength": 12}}}
    page.fill("#id_schema", json.dumps(changed))
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was changed successfully")
    document_type.refresh_from_db()
    extraction.refresh_from_db()
    assert document_type.version == 2 and document_type.versions.count() == 2
    assert extraction.document_type_version.number == 1 and extraction.fields["total"] == 1234.5
    page.goto(f"/review/{extraction.pk}/")
    expect(page.locator("#review-type")).to_have_text("Purchase order, version 1")
