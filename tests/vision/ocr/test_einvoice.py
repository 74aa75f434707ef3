"""E-invoices read from their XML (vision.ocr.einvoice): every public sample format gives exactly
the fields its XML holds (truth copied by hand from each file), with source xml and confidence 1;
hostile XML (entity bomb, external entity, malformed, oversized, not an invoice) is refused with
its reason; a PDF whose page disagrees with its embedded XML is flagged field by field."""

from __future__ import annotations

import io
from decimal import Decimal

import pypdfium2
import pytest

from tests.vision.ocr import einvoices
from tests.vision.ocr.einvoices import (
    SAMPLES,
    cii_xml,
    doctored_total,
    image_pdf,
    sample,
    truth,
    with_embedded_xml,
    with_embedded_xml_pdf,
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
