"""Django admin: every vision model listed with filters and search; extractions approved and
rejected in bulk through the review services (audit trail included)."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.roles import Role
from tests.conftest import stored_document
from tests.vision.ocr.test_invoice import _page
from vision.models import ExtractionStatus
from vision.ocr.invoice import extract_invoice
from vision.ocr.pipeline import InvoiceReading
from vision.services.extractions import extraction_create_from_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_user_client(user_factory):
    client = Client()
    client.force_login(user_factory(Role.ADMIN, is_superuser=True))
    return client


def _extraction(owner, name: str):
    document = stored_document(owner, name)
    ocr = _page([("Invoice No: INV-7", 640, 1000)], [("Total:", 640, 800), ("$1,210.00", 880, 1040)])
    return extraction_create_from_invoice(
        document=document, reading=InvoiceReading(extract_invoice(ocr), ocr, False)
    )


@pytest.mark.parametrize(
    "model", ["document", "job", "batch", "conversation", "extraction", "extractionevent"]
)
def test_changelists_render_with_filters_and_search(admin_user_client, model) -> None:
    response = admin_user_client.get(f"/admin/vision/{model}/?q=x")
    assert response.status_code == 200
    assert b'id="changelist-filter"' in response.content


def test_bulk_approve_and_reject(admin_user_client, user_factory) -> None:
    owner = user_factory()
    first, second = _extraction(owner, "a.png"), _extraction(owner, "b.png")
    url = "/admin/vision/extraction/"
    admin_user_client.post(url, {"action": "approve_extractions", "_selected_action": [first.pk]})
    admin_user_client.post(url, {"action": "reject_extractions", "_selected_action": [second.pk]})
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == ExtractionStatus.APPROVED
    assert second.status == ExtractionStatus.REJECTED and second.comment
    assert [e.action for e in second.events.all()] == ["created", "rejected"]
