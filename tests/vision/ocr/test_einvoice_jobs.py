"""E-invoices through the platform: an XML upload is stored without pages (and a hostile one is a
4xx naming the rule, nothing stored); an XML document takes only invoice jobs, which read its XML
exactly; its job and review pages draw the invoice it holds; a doctored Factur-X PDF gets its total
flagged; a reviewer's correction of an XML field says so."""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.roles import Role
from accounts.scope import scope_for
from tests.conftest import stored_document
from tests.vision.ocr import einvoices
from tests.vision.ocr.einvoices import (
    cii_xml,
    image_pdf,
    sample,
    truth,
    with_embedded_xml,
)
from tests.vision.ocr.invoices import make_invoice
from vision.ocr.einvoice import (
    XML_DISAGREES,
    read_einvoice_xml,
)
from vision.ocr.invoice import SCALAR_FIELDS

# -- uploads ------------------------------------------------------------------------------------


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def _upload(api_client, name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return api_client.post("/api/documents", {"file": SimpleUploadedFile(name, data)}, format="multipart")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "name", ["xrechnung-cii-01.01a.xml", "xrechnung-ubl-01.01a.xml", "peppol-bis3-ubl.xml"]
)
def test_an_xml_e_invoice_upload_is_stored_without_pages(api_client, user_factory, media_root, name) -> None:
    api_client.force_authenticate(user_factory())
    response = _upload(api_client, name, sample(name))
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["kind"], body["content_type"], body["page_count"], body["pages"]) == (
        "xml",
        "application/xml",
        0,
        [],
    )
    stored = [p for p in media_root.rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in stored] == [sample(name)]  # the XML as received, nothing else


@pytest.mark.django_db
def test_an_xml_without_a_declaration_is_still_an_e_invoice(api_client, user_factory, media_root) -> None:
    data = sample("xrechnung-ubl-01.01a.xml").split(b"?>", 1)[1].lstrip()
    api_client.force_authenticate(user_factory())
    response = _upload(api_client, "bare.xml", data)
    assert response.status_code == 201, response.content
    assert response.json()["kind"] == "xml"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "status", "rule"),
    [
        (einvoices.ENTITY_BOMB, 422, "xml_forbidden"),
        (einvoices.EXTERNAL_ENTITY, 422, "xml_forbidden"),
        (einvoices.MALFORMED, 422, "xml_malformed"),
        (einvoices.oversized(sample("xrechnung-cii-01.01a.xml"), 6 * 1024 * 1024), 413, "xml_too_large"),
        (b"<?xml version='1.0'?><note><to>someone</to></note>", 415, "xml_not_einvoice"),
    ],
    ids=["entity-bomb", "external-entity", "malformed", "oversized", "not-an-invoice"],
)
def test_bad_xml_uploads_are_4xx_naming_the_rule_and_nothing_is_stored(
    api_client, user_factory, media_root, data, status, rule
) -> None:
    from vision.models import Document

    api_client.force_authenticate(user_factory())
    response = _upload(api_client, "invoice.xml", data)
    assert response.status_code == status, response.content
    assert response.json()["code"] == rule and response.json()["detail"]
    assert Document.objects.count() == 0
    assert not [p for p in media_root.rglob("*") if p.is_file()]


@pytest.mark.django_db
def test_an_xml_e_invoice_takes_only_invoice_jobs(api_client, user_factory, media_root) -> None:
    """It has no page image: an ocr job on it is refused before anything is queued."""
    from vision.models import Job

    api_client.force_authenticate(user_factory())
    document = _upload(api_client, "x.xml", sample("xrechnung-cii-01.01a.xml")).json()
    response = api_client.post("/api/jobs", {"task": "ocr", "document_id": document["id"]}, format="json")
    assert response.status_code == 400, response.content
    assert "task=invoice" in response.json()["detail"]
    assert Job.objects.count() == 0


# -- invoice jobs through the real worker (scripts/test.sh) ---------------------------------------

_WORKER_DB = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def user_factory(user_factory, team):
    """Uploaders, admins and reviewers of one team organisation, as a team works."""
    return lambda role=Role.MEMBER, **kwargs: user_factory(role, organization=team, **kwargs)


def _job(api_client, name: str, data: bytes) -> dict:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.vision.jobs_helpers import wait_finished

    upload = SimpleUploadedFile(name, data)
    response = api_client.post(
        "/api/jobs", {"task": "invoice", "file": upload, "max_tokens": 16}, format="multipart"
    )
    assert response.status_code == 202, response.content
    done = wait_finished(api_client, response.json()["status_url"], timeout=300)
    assert done["status"] == "succeeded", done
    return done


def _reviewer(user_factory):
    from django.test import Client

    from accounts.roles import Role

    client = Client()
    client.force_login(user_factory(Role.REVIEWER))
    return client


@pytest.mark.parametrize(
    "name", ["xrechnung-cii-01.01a.xml", "xrechnung-ubl-01.01a.xml", "peppol-bis3-ubl.xml"]
)
@pytest.mark.integration
@_WORKER_DB
def test_an_invoice_job_on_an_xml_document_reads_its_xml(api_client, user_factory, name) -> None:
    """GIVEN an XML e-invoice uploaded as an invoice job WHEN the worker runs it THEN the
    extraction holds exactly the XML's fields, each with source xml and confidence 1, no page;
    its review page shows the invoice the XML holds (no page image) with the tax breakdown and
    the source "XML", and so does the owner's job page; a reviewer corrects a field and approves it there, every check kept."""
    from vision.models import Extraction, ExtractionStatus

    expected = truth(name)
    owner = user_factory()
    api_client.force_authenticate(owner)
    done = _job(api_client, name, sample(name))
    extraction = Extraction.objects.get(job_id=done["id"])
    held = {f: expected[f] for f in SCALAR_FIELDS if expected[f] is not None}
    assert {f: extraction.fields.get(f) for f in held} == held
    assert extraction.sources == dict.fromkeys(held, "xml")
    assert extraction.confidence == dict.fromkeys(held, 1.0)
    assert extraction.flags == [] and extraction.checks and all(c["ok"] for c in extraction.checks)
    assert len(extraction.fields["tax_breakdown"]) == len(expected["tax_breakdown"])
    assert len(extraction.fields["items"]) == len(expected["items"])
    assert (extraction.page_width, extraction.page_height) == (0, 0)
    assert done["result"]["data"]["page"]["source"] == "xml"
    assert not done["result"]["data"]["used_vlm"]  # no model reads an XML

    # The owner's job page draws the invoice from its XML (there is no page image) and says so
    # instead of warning that no model cross-checked a reading of pixels.
    from django.test import Client

    owner_portal = Client()
    owner_portal.force_login(owner)
    job_html = owner_portal.get(f"/jobs/{done['id']}/").content.decode()
    assert 'id="review-einvoice"' in job_html and 'id="job-source"' in job_html
    assert 'id="from-xml"' in job_html and 'id="vlm-unavailable"' not in job_html
    assert "/page/" not in job_html.split('id="review-einvoice"', 1)[1].split("</article>", 1)[0]
    assert expected["invoice_number"] in job_html and expected["total"] in job_html

    reviewer = _reviewer(user_factory)
    page = reviewer.get(f"/review/{extraction.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="review-einvoice"' in html and 'id="review-tax-breakdown"' in html
    assert 'data-source="xml"' in html.split('id="review-source"', 1)[1].split("</span>", 1)[0]
    assert f"/review/{extraction.pk}/page/" not in html  # no page image to show
    assert expected["invoice_number"] in html and expected["total"] in html
    assert html.count('data-source="xml"') == len(held) + 1  # each field the XML holds, and the source
    assert 'name="field-tax_breakdown"' not in html and 'name="field-items"' not in html

    form = {f"field-{f}": v for f, v in held.items()}
    form.update({"field-buyer": "Stadt Musterhausen", "action": "approve", "comment": "checked"})
    response = reviewer.post(f"/review/{extraction.pk}/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    extraction.refresh_from_db()
    assert extraction.status == ExtractionStatus.APPROVED
    assert extraction.fields["buyer"] == "Stadt Musterhausen"
    assert {f: extraction.fields[f] for f in held if f != "buyer"} == {
        f: v for f, v in held.items() if f != "buyer"
    }
    assert extraction.sources == {**dict.fromkeys(held, "xml"), "buyer": "reviewer"}
    assert extraction.checks and all(c["ok"] for c in extraction.checks)
    assert [e.action for e in extraction.events.order_by("pk")] == ["created", "field_updated", "approved"]

    from django.test import Client

    job_page = Client()
    job_page.force_login(owner)
    shown = job_page.get(f"/jobs/{done['id']}/")
    assert shown.status_code == 200 and expected["invoice_number"] in shown.content.decode()


def _doctored_job(api_client, total_shift: Decimal) -> tuple[dict, object]:
    """An invoice job on a generated page made a Factur-X PDF whose XML total is the page's
    total + `total_shift` (0: the honest copy)."""
    image, t = make_invoice(11, "en")
    rate = (t.tax / t.subtotal).quantize(Decimal("0.01"))
    pdf = with_embedded_xml(image_pdf(image), cii_xml(t, rate=rate, total=t.total + total_shift))
    return _job(api_client, "doctored.pdf", pdf), t


@pytest.mark.integration
@_WORKER_DB
def test_an_invoice_job_on_a_doctored_factur_x_pdf_flags_the_total(api_client, user_factory) -> None:
    """GIVEN a generated invoice page as a PDF with its exact Factur-X XML, and a doctored copy
    whose XML says another total WHEN the worker reads each (pixels, then the XML) THEN the
    fields are the XML's; the honest copy's total agrees (no flag, the page's box kept); the
    doctored copy's total is flagged xml_disagrees with the page's reading and has no box, and
    its review page shows the page image, the flag and the note that the values are the XML's."""
    from vision.models import Extraction

    api_client.force_authenticate(user_factory())
    honest_job, t = _doctored_job(api_client, Decimal("0.00"))
    honest = Extraction.objects.get(job_id=honest_job["id"])
    assert honest.fields["total"] == str(t.total) and set(honest.sources.values()) == {"xml"}
    assert not [f for f in honest.flags if f["field"] == "total"], honest.flags
    assert honest.boxes["total"]

    done, t = _doctored_job(api_client, Decimal("90.00"))
    extraction = Extraction.objects.get(job_id=done["id"])
    wrong_total = t.total + Decimal("90.00")
    assert extraction.fields["total"] == str(wrong_total)
    assert extraction.fields["invoice_number"] == t.invoice_number
    assert set(extraction.sources.values()) == {"xml"}
    flagged = [f for f in extraction.flags if f["field"] == "total" and f["code"] == XML_DISAGREES]
    assert len(flagged) == 1 and str(t.total) in flagged[0]["reason"], extraction.flags
    assert extraction.boxes["total"] is None and extraction.boxes["invoice_number"]

    html = _reviewer(user_factory).get(f"/review/{extraction.pk}/").content.decode()
    assert f"/review/{extraction.pk}/page/" in html and 'id="review-einvoice"' not in html
    assert 'id="from-xml"' in html
    total_row = html.split('<tr data-field="total"', 1)[1].split("</tr>", 1)[0]
    assert 'class="flagged"' in total_row and str(t.total) in total_row  # the flag names the page's


@pytest.mark.django_db
def test_a_reviewer_correction_of_an_xml_field_says_so(user_factory) -> None:
    from accounts.roles import Role
    from vision.ocr.engine import OcrResult
    from vision.ocr.pipeline import InvoiceReading
    from vision.services.extractions import extraction_create_from_invoice, extraction_update_field

    owner = user_factory()
    document = stored_document(owner, "x.xml", kind="xml", content_type="application/xml", page_count=0)
    reading = InvoiceReading(read_einvoice_xml(sample("xrechnung-cii-01.01a.xml")), OcrResult(0, 0), False)
    extraction = extraction_create_from_invoice(document=document, reading=reading)
    assert extraction.sources["buyer"] == "xml"
    corrected = extraction_update_field(
        extraction=extraction,
        field="buyer",
        value="Stadt Musterhausen",
        scope=scope_for(user_factory(Role.REVIEWER)),
    )
    assert corrected.sources["buyer"] == "reviewer" and corrected.sources["seller"] == "xml"
    assert corrected.checks and all(c["ok"] for c in corrected.checks)
