"""Test e-invoices: the public samples under tests/data/einvoice, a Factur-X (CII) XML written
from a generated invoice's truth, PDFs with an XML embedded (pdfium's attachment API), and the
hostile XML an upload must refuse."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path
from xml.sax.saxutils import escape

import pypdfium2
from PIL import Image

from tests.vision.ocr.invoices import InvoiceTruth

DATA = Path(__file__).resolve().parents[2] / "data" / "einvoice"

# (file, format) of every sample; each has a <stem>.truth.json copied by hand from its XML.
SAMPLES = [
    ("factur-x-en16931-einfach.pdf", "Factur-X EN 16931 PDF (CII)"),
    ("zugferd1-basic-505.pdf", "ZUGFeRD 1.0 PDF (CII)"),
    ("xrechnung-cii-01.01a.xml", "XRechnung CII"),
    ("xrechnung-ubl-01.01a.xml", "XRechnung UBL"),
    ("peppol-bis3-ubl.xml", "Peppol BIS 3 UBL"),
]


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


def truth(name: str) -> dict:
    return json.loads((DATA / f"{Path(name).stem}.truth.json").read_text(encoding="utf-8"))


def _amount(value: Decimal) -> str:
    return f"{value:.2f}"


def cii_xml(t: InvoiceTruth, *, rate: Decimal, total: Decimal | None = None) -> bytes:
    """A Factur-X EN 16931 CII invoice holding the truth's fields, items and one tax category at
    `rate`; `total` replaces the grand total (a doctored XML)."""
    lines = "".join(
        f"""
    <ram:IncludedSupplyChainTradeLineItem>
      <ram:AssociatedDocumentLineDocument><ram:LineID>{n}</ram:LineID></ram:AssociatedDocumentLineDocument>
      <ram:SpecifiedTradeProduct><ram:Name>{escape(item.description)}</ram:Name></ram:SpecifiedTradeProduct>
      <ram:SpecifiedLineTradeAgreement>
        <ram:NetPriceProductTradePrice><ram:ChargeAmount>{item.unit_price}</ram:ChargeAmount></ram:NetPriceProductTradePrice>
      </ram:SpecifiedLineTradeAgreement>
      <ram:SpecifiedLineTradeDelivery><ram:BilledQuantity unitCode="C62">{item.quantity}</ram:BilledQuantity></ram:SpecifiedLineTradeDelivery>
      <ram:SpecifiedLineTradeSettlement>
        <ram:ApplicableTradeTax><ram:TypeCode>VAT</ram:TypeCode><ram:CategoryCode>S</ram:CategoryCode><ram:RateApplicablePercent>{rate * 100:.2f}</ram:RateApplicablePercent></ram:ApplicableTradeTax>
        <ram:SpecifiedTradeSettlementLineMonetarySummation><ram:LineTotalAmount>{_amount(item.amount)}</ram:LineTotalAmount></ram:SpecifiedTradeSettlementLineMonetarySummation>
      </ram:SpecifiedLineTradeSettlement>
    </ram:IncludedSupplyChainTradeLineItem>"""
        for n, item in enumerate(t.items, start=1)
    )
    due = ""
    if t.due_date:
        due = f"""
      <ram:SpecifiedTradePaymentTerms>
        <ram:DueDateDateTime><udt:DateTimeString format="102">{t.due_date.replace("-", "")}</udt:DateTimeString></ram:DueDateDateTime>
      </ram:SpecifiedTradePaymentTerms>"""
    xml = f"""<?xml version="1.0" encoding="UTF-8"?>
<rsm:CrossIndustryInvoice xmlns:rsm="urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
    xmlns:ram="urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
    xmlns:udt="urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100">
  <rsm:ExchangedDocumentContext>
    <ram:GuidelineSpecifiedDocumentContextParameter><ram:ID>urn:cen.eu:en16931:2017</ram:ID></ram:GuidelineSpecifiedDocumentContextParameter>
  </rsm:ExchangedDocumentContext>
  <rsm:ExchangedDocument>
    <ram:ID>{escape(t.invoice_number)}</ram:ID>
    <ram:TypeCode>380</ram:TypeCode>
    <ram:IssueDateTime><udt:DateTimeString format="102">{t.invoice_date.replace("-", "")}</udt:DateTimeString></ram:IssueDateTime>
  </rsm:ExchangedDocument>
  <rsm:SupplyChainTradeTransaction>{lines}
    <ram:ApplicableHeaderTradeAgreement>
      <ram:SellerTradeParty>
        <ram:Name>{escape(t.seller)}</ram:Name>
        <ram:SpecifiedTaxRegistration><ram:ID schemeID="VA">{t.seller_tax_id}</ram:ID></ram:SpecifiedTaxRegistration>
      </ram:SellerTradeParty>
      <ram:BuyerTradeParty>
        <ram:Name>{escape(t.buyer)}</ram:Name>
        <ram:SpecifiedTaxRegistration><ram:ID schemeID="VA">{t.buyer_tax_id}</ram:ID></ram:SpecifiedTaxRegistration>
      </ram:BuyerTradeParty>
    </ram:ApplicableHeaderTradeAgreement>
    <ram:ApplicableHeaderTradeDelivery/>
    <ram:ApplicableHeaderTradeSettlement>
      <ram:InvoiceCurrencyCode>{t.currency}</ram:InvoiceCurrencyCode>
      <ram:ApplicableTradeTax>
        <ram:CalculatedAmount>{_amount(t.tax)}</ram:CalculatedAmount><ram:TypeCode>VAT</ram:TypeCode>
        <ram:BasisAmount>{_amount(t.subtotal)}</ram:BasisAmount><ram:CategoryCode>S</ram:CategoryCode>
        <ram:RateApplicablePercent>{rate * 100:.2f}</ram:RateApplicablePercent>
      </ram:ApplicableTradeTax>{due}
      <ram:SpecifiedTradeSettlementHeaderMonetarySummation>
        <ram:LineTotalAmount>{_amount(t.subtotal)}</ram:LineTotalAmount>
        <ram:TaxBasisTotalAmount>{_amount(t.subtotal)}</ram:TaxBasisTotalAmount>
        <ram:TaxTotalAmount currencyID="{t.currency}">{_amount(t.tax)}</ram:TaxTotalAmount>
        <ram:GrandTotalAmount>{_amount(total if total is not None else t.total)}</ram:GrandTotalAmount>
        <ram:DuePayableAmount>{_amount(total if total is not None else t.total)}</ram:DuePayableAmount>
      </ram:SpecifiedTradeSettlementHeaderMonetarySummation>
    </ram:ApplicableHeaderTradeSettlement>
  </rsm:SupplyChainTradeTransaction>
</rsm:CrossIndustryInvoice>
"""
    return xml.encode("utf-8")


def image_pdf(image: Image.Image, *, dpi: int = 150) -> bytes:
    """A one-page PDF showing `image` (a page drawn at `dpi`)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "PDF", resolution=dpi)
    return buffer.getvalue()


def with_embedded_xml(pdf_bytes: bytes, xml: bytes, *, name: str = "factur-x.xml") -> bytes:
    """`pdf_bytes` with its embedded XML files replaced by `xml` under `name` (pdfium's
    attachment API): how a Factur-X PDF is doctored or made."""
    pdf = pypdfium2.PdfDocument(pdf_bytes)
    try:
        for index in reversed(range(pdf.count_attachments())):
            if (pdf.get_attachment(index).get_name() or "").lower().endswith(".xml"):
                pdf.del_attachment(index)
        attachment = pdf.new_attachment(name)
        attachment.set_data(xml)
        buffer = io.BytesIO()
        pdf.save(buffer)
        return buffer.getvalue()
    finally:
        pdf.close()


def doctored_total(xml: bytes, old: str, new: str) -> bytes:
    """The XML with its grand total (and amount due) `old` written as `new`."""
    text = xml.decode("utf-8")
    changed = text.replace(f">{old}<", f">{new}<")
    assert changed != text, f"{old} is not in the XML"
    return changed.encode("utf-8")


# -- hostile XML --------------------------------------------------------------------------------

ENTITY_BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ubl:Invoice xmlns:ubl="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
    xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
  <cbc:ID>&lol9;</cbc:ID>
</ubl:Invoice>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE Invoice [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<ubl:Invoice xmlns:ubl="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
    xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
  <cbc:ID>&secret;</cbc:ID>
</ubl:Invoice>
"""

MALFORMED = b"""<?xml version="1.0" encoding="UTF-8"?>
<ubl:Invoice xmlns:ubl="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
    xmlns:cbc="urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2">
  <cbc:ID>123</cbc:IssueDate>
</ubl:Invoice>
"""


def oversized(xml: bytes, size: int) -> bytes:
    """A well-formed invoice padded past `size` bytes with a comment (nothing to expand)."""
    head, _, tail = xml.partition(b"?>")
    padding = b"<!--" + b"x" * (size - len(xml)) + b"-->"
    return head + b"?>" + padding + tail


def with_embedded_xml_pdf(xml: bytes) -> bytes:
    """A one-page image PDF carrying `xml` as its factur-x.xml attachment."""
    from tests.vision.ocr.invoices import make_invoice

    image, _ = make_invoice(3, "en")
    return with_embedded_xml(image_pdf(image), xml)
