"""Extraction services: created awaiting review from an invoice reading, corrected with the
checks rerun, approved or rejected by reviewers only, every change in the audit trail."""

from __future__ import annotations

import pytest

from accounts.roles import Role
from accounts.scope import scope_for
from docplatform.errors import Conflict, PermissionDenied, ValidationFailed
from tests.conftest import stored_document
from tests.vision.ocr.test_invoice import _page
from vision.models import ExtractionStatus
from vision.ocr.invoice import extract_invoice
from vision.ocr.pipeline import InvoiceReading
from vision.services.extractions import (
    extraction_approve,
    extraction_create_from_invoice,
    extraction_reject,
    extraction_update_field,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def user_factory(user_factory, team):
    """Everyone here works in one team organisation, as reviewers and uploaders do."""
    return lambda role=Role.MEMBER, **kwargs: user_factory(role, organization=team, **kwargs)


@pytest.fixture
def extraction(user_factory):
    owner = user_factory()
    document = stored_document(owner)
    ocr = _page(
        [("Acme Supplies Ltd", 60, 400)],
        [("Invoice No: INV-7", 640, 1000)],
        [("Subtotal:", 640, 800), ("1,000.00", 900, 1040)],
        [("VAT (20%):", 640, 800), ("200.00", 900, 1040)],
        [("Total:", 640, 800), ("$1,210.00", 880, 1040)],  # altered: should be 1,200.00
    )
    return extraction_create_from_invoice(
        document=document, reading=InvoiceReading(extract_invoice(ocr), ocr, False)
    )


def test_created_awaiting_review_with_reasons(extraction) -> None:
    assert extraction.status == ExtractionStatus.AWAITING_REVIEW
    assert extraction.fields["total"] == "1210.00" and extraction.boxes["total"]
    assert {(f["field"], f["code"]) for f in extraction.flags} >= {
        ("total", "check_failed"),
        ("invoice_date", "missing"),
    }
    assert [e.action for e in extraction.events.all()] == ["created"]


def test_reviewer_corrects_a_field_and_the_checks_rerun(extraction, user_factory) -> None:
    reviewer = user_factory(Role.REVIEWER)
    updated = extraction_update_field(
        extraction=extraction, field="total", value="1.200,00", scope=scope_for(reviewer)
    )
    assert updated.fields["total"] == "1200.00" and updated.confidence["total"] == 1.0
    assert all(c["ok"] for c in updated.checks)
    assert not any(f["code"] == "check_failed" for f in updated.flags)
    event = updated.events.last()
    assert (event.action, event.field, event.old_value, event.new_value, event.actor) == (
        "field_updated",
        "total",
        "1210.00",
        "1200.00",
        reviewer,
    )
    with pytest.raises(ValidationFailed):
        extraction_update_field(
            extraction=extraction, field="invoice_date", value="not a date", scope=scope_for(reviewer)
        )
    with pytest.raises(ValidationFailed):
        extraction_update_field(extraction=extraction, field="owner", value="x", scope=scope_for(reviewer))


def test_only_reviewers_review_and_only_once(extraction, user_factory) -> None:
    with pytest.raises(PermissionDenied):
        extraction_approve(extraction=extraction, scope=scope_for(user_factory(Role.MEMBER)))
    reviewer = user_factory(Role.REVIEWER)
    with pytest.raises(ValidationFailed):
        extraction_reject(extraction=extraction, scope=scope_for(reviewer), comment="  ")
    approved = extraction_approve(extraction=extraction, scope=scope_for(reviewer), comment="ok")
    assert (
        approved.status == ExtractionStatus.APPROVED
        and approved.reviewer == reviewer
        and approved.reviewed_at
    )
    with pytest.raises(Conflict):
        extraction_reject(extraction=approved, scope=scope_for(reviewer), comment="changed my mind")
    assert [e.action for e in approved.events.all()] == ["created", "approved"]


@pytest.fixture
def rate_mismatch(user_factory):
    """Subtotal 1000 + tax 150 = total 1150 adds up, but the page prints the rate as 20 %: only the
    tax-rate check fails, and it needs the rate, which is not a field."""
    owner = user_factory()
    document = stored_document(owner)
    ocr = _page(
        [("Acme Supplies Ltd", 60, 400)],
        [("Invoice No: INV-8", 640, 1000)],
        [("Bill To:", 60, 300), ("Globex Corporation", 320, 700)],
        [("Subtotal:", 640, 800), ("1,000.00", 900, 1040)],
        [("VAT (20%):", 640, 800), ("150.00", 900, 1040)],
        [("Total:", 640, 800), ("1,150.00", 900, 1040)],
    )
    return extraction_create_from_invoice(
        document=document, reading=InvoiceReading(extract_invoice(ocr), ocr, False)
    )


def test_correcting_another_field_keeps_a_failing_tax_rate_check_and_its_flags(
    rate_mismatch, user_factory
) -> None:
    before = {c["name"]: c["ok"] for c in rate_mismatch.checks}
    assert before == {"subtotal_plus_tax_total": True, "tax_rate": False}
    assert rate_mismatch.check_inputs["rates"] == ["0.2"]
    flagged = {(f["field"], f["code"]) for f in rate_mismatch.flags}
    assert {("subtotal", "check_failed"), ("tax", "check_failed")} <= flagged
    reviewer = user_factory(Role.REVIEWER)
    updated = extraction_update_field(
        extraction=rate_mismatch, field="buyer", value="Globex Corp.", scope=scope_for(reviewer)
    )
    assert {c["name"]: c["ok"] for c in updated.checks} == before  # the rate check was rerun, not dropped
    assert {("subtotal", "check_failed"), ("tax", "check_failed")} <= {
        (f["field"], f["code"]) for f in updated.flags
    }
    # Correcting the tax itself resolves the tax's own flags; the rate check passes, so the
    # subtotal's flag from that check goes too.
    fixed = extraction_update_field(
        extraction=updated, field="tax", value="200.00", scope=scope_for(reviewer)
    )
    fixed = extraction_update_field(
        extraction=fixed, field="total", value="1200.00", scope=scope_for(reviewer)
    )
    assert all(c["ok"] for c in fixed.checks) and {c["name"] for c in fixed.checks} == set(before)
    assert not any(f["code"] == "check_failed" for f in fixed.flags)


def test_a_correction_that_breaks_a_check_flags_the_other_fields(extraction, user_factory) -> None:
    reviewer = user_factory(Role.REVIEWER)
    fixed = extraction_update_field(
        extraction=extraction, field="total", value="1200.00", scope=scope_for(reviewer)
    )
    assert not any(f["code"] == "check_failed" for f in fixed.flags)
    broken = extraction_update_field(
        extraction=fixed, field="subtotal", value="900.00", scope=scope_for(reviewer)
    )
    failed = {c["name"] for c in broken.checks if not c["ok"]}
    assert failed == {"subtotal_plus_tax_total", "tax_rate"}
    assert {("tax", "check_failed"), ("total", "check_failed")} <= {
        (f["field"], f["code"]) for f in broken.flags
    }
    assert not any(f["field"] == "subtotal" for f in broken.flags)  # the reviewer's own value
