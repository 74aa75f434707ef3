"""E-invoices read from their XML (vision.ocr.einvoice): every public sample format gives exactly
the fields its XML holds (truth copied by hand from each file), with source xml and confidence 1;
hostile XML (entity bomb, external entity, malformed, oversized, not an invoice) is refused with
its reason; a PDF whose page disagrees with its embedded XML is flagged field by field."""

from __future__ import annotations

import io
from decimal import Decimal

import pypdfium2
import pytest

from tests.conftest import stored_document
from tests.vision.ocr import einvoices
from tests.vision.ocr.einvoices import (
    SAMPLES,
    cii_xml,
    doctored_total,
    image_pdf,
    sample,
    truth,
    with_embedded_xml,
)
from tests.vision.ocr.invoices import make_invoice
from vision.ocr.einvoice import (
    XML_DISAGREES,
    EInvoiceError,
    combine,
    compare,
    embedded_xml,
    read_einvoice_xml,
)
from vision.ocr.invoice import SCALAR_FIELDS, Field, InvoiceExtraction


def _xml_of(name: str) -> bytes:
    data = sample(name)
    if name.endswith(".pdf"):
        found = embedded_xml(data)
        assert found is not None, f"{name}: no embedded XML found"
        return found
    return data


def _numbers(rows: list[dict], keys: tuple[str, ...]) -> list[tuple]:
    """Rows with their numeric values as Decimals: '20.0000' and '20' are the same quantity."""
    texts = ("description", "category", "exemption")
    return [tuple(row[k] if k in texts or row[k] is None else Decimal(row[k]) for k in keys) for row in rows]


@pytest.mark.parametrize(("name", "kind"), SAMPLES, ids=[s[0] for s in SAMPLES])
def test_each_format_gives_exactly_the_fields_its_xml_holds(name: str, kind: str) -> None:
    expected = truth(name)
    result = read_einvoice_xml(_xml_of(name))
    got = result.to_dict()

    assert {f: got[f] for f in SCALAR_FIELDS} == {f: expected[f] for f in SCALAR_FIELDS}, kind
    item_keys = ("description", "quantity", "unit_price", "amount")
    assert _numbers(got["items"], item_keys) == _numbers(expected["items"], item_keys)
    tax_keys = ("category", "rate", "basis", "amount", "exemption")
    assert _numbers(got["tax_breakdown"], tax_keys) == _numbers(expected["tax_breakdown"], tax_keys)
    # Every field the XML holds: read from it, fully trusted, and the exact XML raises no doubt.
    held = {f for f in SCALAR_FIELDS if expected[f] is not None}
    assert set(result.fields) == held
    assert {f.source for f in result.fields.values()} == {"xml"}
    assert {f.confidence for f in result.fields.values()} == {1.0}
    assert got["sources"] == dict.fromkeys(held, "xml")
    assert result.flags == []
    assert result.checks and all(c.ok for c in result.checks), result.checks


def test_the_syntaxes_are_told_apart() -> None:
    assert read_einvoice_xml(sample("xrechnung-cii-01.01a.xml")).syntax == "cii"
    assert read_einvoice_xml(sample("xrechnung-ubl-01.01a.xml")).syntax == "ubl"
    peppol = read_einvoice_xml(sample("peppol-bis3-ubl.xml"))
    assert "peppol" in peppol.profile and peppol.syntax == "ubl"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (einvoices.ENTITY_BOMB, "xml_forbidden"),
        (einvoices.EXTERNAL_ENTITY, "xml_forbidden"),
        (einvoices.MALFORMED, "xml_malformed"),
        (
            b"<?xml version='1.0'?><Order xmlns='urn:oasis:names:specification:ubl:schema:xsd:Order-2'/>",
            "xml_not_einvoice",
        ),
        (b"<Invoice><ID>1</ID></Invoice>", "xml_not_einvoice"),  # no namespace: not UBL
    ],
    ids=["entity-bomb", "external-entity", "malformed", "ubl-order", "no-namespace"],
)
def test_hostile_or_foreign_xml_is_refused_with_its_reason(data: bytes, code: str) -> None:
    with pytest.raises(EInvoiceError) as caught:
        read_einvoice_xml(data)
    assert caught.value.code == code
    assert "lol" not in str(caught.value)  # the bomb was not expanded into the message


def test_an_oversized_xml_is_refused_before_it_is_parsed() -> None:
    data = einvoices.oversized(sample("xrechnung-ubl-01.01a.xml"), 70_000)
    assert read_einvoice_xml(data).value("invoice_number") == "123456XX"  # the padding is harmless
    with pytest.raises(EInvoiceError) as caught:
        read_einvoice_xml(data, max_bytes=64 * 1024)
    assert caught.value.code == "xml_too_large"


def test_an_inconsistent_xml_is_flagged_by_the_invoice_checks() -> None:
    """The XML's own numbers disagree (grand total 1.00 above subtotal + tax): the values stay the
    XML's, and the failed check flags them."""
    data = doctored_total(sample("xrechnung-cii-01.01a.xml"), "336.9", "337.9")
    result = read_einvoice_xml(data)
    assert result.value("total") == Decimal("337.90")
    failed = [c for c in result.checks if not c.ok]
    assert [c.name for c in failed] == ["subtotal_plus_tax_total"]
    assert {f.field for f in result.flags if f.code == "check_failed"} == {"subtotal", "tax", "total"}


def test_a_bad_amount_is_flagged_not_guessed() -> None:
    data = sample("xrechnung-ubl-01.01a.xml").replace(b">336.9<", b">33six<")
    result = read_einvoice_xml(data)
    assert result.value("total") is None
    assert any(f.field == "total" and f.code == "xml_invalid" for f in result.flags)


def test_document_allowances_and_charges_are_items_so_the_items_still_sum() -> None:
    """A document-level allowance (BG-20) and charge (BG-21) in UBL: they become items (negative
    for the allowance) and the items still sum to the subtotal, as on the printed page."""
    data = sample("xrechnung-ubl-01.01a.xml")
    extra = b"""<cac:AllowanceCharge><cbc:ChargeIndicator>false</cbc:ChargeIndicator>
        <cbc:AllowanceChargeReason>Rabatt</cbc:AllowanceChargeReason><cbc:Amount currencyID="EUR">14.86</cbc:Amount></cac:AllowanceCharge>
        <cac:AllowanceCharge><cbc:ChargeIndicator>true</cbc:ChargeIndicator>
        <cbc:AllowanceChargeReason>Fracht</cbc:AllowanceChargeReason><cbc:Amount currencyID="EUR">4.86</cbc:Amount></cac:AllowanceCharge>
    <cac:TaxTotal>"""
    data = data.replace(b"<cac:TaxTotal>", extra, 1).replace(b">314.86<", b">304.86<")
    data = data.replace(b">22.04<", b">21.34<").replace(b">336.9<", b">326.2<")
    data = data.replace(
        b'<cbc:LineExtensionAmount currencyID="EUR">304.86',
        b'<cbc:LineExtensionAmount currencyID="EUR">314.86',
    )
    result = read_einvoice_xml(data)
    assert [(i.description, i.amount) for i in result.items[2:]] == [
        ("Allowance: Rabatt", Decimal("-14.86")),
        ("Charge: Fracht", Decimal("4.86")),
    ]
    checks = {c.name: c.ok for c in result.checks}
    assert checks["items_sum_subtotal"] and checks["subtotal_plus_tax_total"], result.checks


def test_a_lines_own_charges_and_allowances_are_named_in_both_syntaxes() -> None:
    """A line's charge and allowance (BG-27/28): UBL gives the indicator as the text of
    cbc:ChargeIndicator, CII nests it (ram:ChargeIndicator/udt:Indicator); each is named as what
    it is, and the line's unit price is left out (quantity x price is not its amount)."""
    line = b'<cbc:LineExtensionAmount currencyID="EUR">26.07</cbc:LineExtensionAmount>'
    adjustments = b"""<cbc:LineExtensionAmount currencyID="EUR">27.07</cbc:LineExtensionAmount>
        <cac:AllowanceCharge><cbc:ChargeIndicator>true</cbc:ChargeIndicator>
        <cbc:Amount currencyID="EUR">2.00</cbc:Amount></cac:AllowanceCharge>
        <cac:AllowanceCharge><cbc:ChargeIndicator>false</cbc:ChargeIndicator>
        <cbc:Amount currencyID="EUR">1.00</cbc:Amount></cac:AllowanceCharge>"""
    ubl = read_einvoice_xml(sample("xrechnung-ubl-01.01a.xml").replace(line, adjustments))
    item = ubl.items[1]
    assert (item.description, item.unit_price, item.amount) == (
        "Porto + Versandkosten (charge 2.00, allowance 1.00)",
        None,
        Decimal("27.07"),
    )

    image, t = make_invoice(11, "en")
    rate = (t.tax / t.subtotal).quantize(Decimal("0.01"))
    settlement = b"<ram:SpecifiedLineTradeSettlement>"
    cii_charge = settlement + (
        b"<ram:SpecifiedTradeAllowanceCharge><ram:ChargeIndicator><udt:Indicator>true</udt:Indicator>"
        b"</ram:ChargeIndicator><ram:ActualAmount>3.00</ram:ActualAmount></ram:SpecifiedTradeAllowanceCharge>"
    )
    cii = read_einvoice_xml(cii_xml(t, rate=rate).replace(settlement, cii_charge, 1))
    assert cii.items[0].description == f"{t.items[0].description} (charge 3.00)"
    assert cii.items[0].unit_price is None


def test_embedded_xml_is_none_for_a_pdf_without_one() -> None:
    pdf = pypdfium2.PdfDocument.new()
    pdf.new_page(595, 842)

    buffer = io.BytesIO()
    pdf.save(buffer)
    pdf.close()
    assert embedded_xml(buffer.getvalue()) is None
    assert embedded_xml(b"%PDF-1.7 not really") is None


def test_embedded_xml_prefers_the_name_the_specification_gives() -> None:
    pdf = sample("factur-x-en16931-einfach.pdf")
    other = with_embedded_xml(pdf, b"<notes/>", name="notes.xml")
    both = pypdfium2.PdfDocument(other)
    try:
        attachment = both.new_attachment("factur-x.xml")
        attachment.set_data(_xml_of("factur-x-en16931-einfach.pdf"))
        import io

        buffer = io.BytesIO()
        both.save(buffer)
    finally:
        both.close()
    assert read_einvoice_xml(embedded_xml(buffer.getvalue())).value("invoice_number") == "471102"


def _extraction(**values) -> InvoiceExtraction:
    return InvoiceExtraction(
        fields={k: Field(v, (1.0, 2.0, 3.0, 4.0), 0.9, "same_line") for k, v in values.items()}
    )


def test_compare_flags_each_field_the_page_reads_differently() -> None:
    xml = read_einvoice_xml(sample("xrechnung-cii-01.01a.xml"))
    visual = _extraction(
        invoice_number="123456XX",
        seller_tax_id="DE123456789",  # spacing and case are not a disagreement
        total=Decimal("363.90"),
        tax=Decimal("22.04"),
        buyer="[buyer name]",
    )
    flags = compare(visual, xml)
    assert [(f.field, f.code) for f in flags] == [("total", XML_DISAGREES)]
    assert "363.90" in flags[0].reason and "336.90" in flags[0].reason
    # A field the page reading missed is filled by the XML, not flagged.
    assert compare(InvoiceExtraction(), xml) == []


def test_doctored_pdf_whose_page_total_disagrees_with_its_xml_is_flagged() -> None:
    """GIVEN a generated invoice page made a Factur-X PDF with its exact XML, and a doctored copy
    whose XML total is changed and re-embedded WHEN each is read from its pixels and its XML
    THEN the exact copy raises no disagreement on the total, the doctored one flags the total
    with both values, and the fields are the XML's."""
    from vision.ocr.pipeline import read_invoice_pages

    image, t = make_invoice(11, "en")
    rate = (t.tax / t.subtotal).quantize(Decimal("0.01"))
    exact = cii_xml(t, rate=rate)
    wrong_total = t.total + Decimal("90.00")
    pdf = with_embedded_xml(image_pdf(image), exact)
    doctored = with_embedded_xml(pdf, doctored_total(exact, f"{t.total:.2f}", f"{wrong_total:.2f}"))

    document = pypdfium2.PdfDocument(doctored)
    try:
        page = document[0].render(scale=150 / 72).to_pil().convert("RGB")
    finally:
        document.close()
    visual = read_invoice_pages([page]).extraction
    assert visual.value("total") == t.total  # the page itself is read right

    honest = combine(visual, read_einvoice_xml(embedded_xml(pdf)))
    assert not [f for f in honest.flags if f.field == "total"]
    assert honest.fields["total"].box is not None  # agreeing: the page's box is kept

    result = combine(visual, read_einvoice_xml(embedded_xml(doctored)))
    total_flags = [f for f in result.flags if f.field == "total" and f.code == XML_DISAGREES]
    assert len(total_flags) == 1, result.flags
    assert str(t.total) in total_flags[0].reason and str(wrong_total) in total_flags[0].reason
    assert result.value("total") == wrong_total and result.fields["total"].source == "xml"
    assert result.fields["total"].box is None  # not where the page prints another total
    assert result.value("invoice_number") == t.invoice_number


@pytest.mark.parametrize(
    ("xml", "code"),
    [
        (einvoices.ENTITY_BOMB, "xml_forbidden"),
        (einvoices.MALFORMED, "xml_malformed"),
        (None, "xml_too_large"),
    ],
    ids=["entity-bomb", "malformed", "oversized"],
)
def test_a_pdf_whose_embedded_xml_is_hostile_keeps_its_page_reading_flagged(
    settings, tmp_path, xml, code
) -> None:
    """GIVEN a PDF invoice job whose embedded XML is an entity bomb, malformed or above the
    limit WHEN the runner adds the XML to the page's reading THEN nothing of the XML is used:
    the page's fields stand, flagged xml_unreadable with the rule (the bomb never expanded)."""
    from types import SimpleNamespace

    from vision.models import DocumentKind
    from vision.ocr.einvoice import MAX_XML_BYTES
    from vision.runners.einvoice import XML_UNREADABLE
    from vision.runners.einvoice import with_embedded_xml as add_embedded_xml

    if xml is None:
        xml = einvoices.oversized(sample("xrechnung-cii-01.01a.xml"), MAX_XML_BYTES + 1)
    settings.MEDIA_ROOT = tmp_path
    (tmp_path / "in.pdf").write_bytes(with_embedded_xml_pdf(xml))
    job = SimpleNamespace(pk=1, document=SimpleNamespace(kind=DocumentKind.PDF, file="in.pdf"))
    visual = _extraction(invoice_number="A-1", total=Decimal("10.00"))

    result = add_embedded_xml(job, visual)
    assert result is visual and result.value("total") == Decimal("10.00")
    assert {f.source for f in result.fields.values()} == {"same_line"}
    [flag] = [f for f in result.flags if f.code == XML_UNREADABLE]
    assert flag.field == "*" and f"({code})" in flag.reason, flag.reason
    assert "lol" not in flag.reason


def with_embedded_xml_pdf(xml: bytes) -> bytes:
    """A one-page image PDF carrying `xml` as its factur-x.xml attachment."""
    image, _ = make_invoice(3, "en")
    return with_embedded_xml(image_pdf(image), xml)


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
        extraction=extraction, field="buyer", value="Stadt Musterhausen", user=user_factory(Role.REVIEWER)
    )
    assert corrected.sources["buyer"] == "reviewer" and corrected.sources["seller"] == "xml"
    assert corrected.checks and all(c["ok"] for c in corrected.checks)
