"""The key fields of the real corpus's e-invoices read straight from the XML (CII or UBL, and the
XML a Factur-X / ZUGFeRD PDF carries), for the corpus integrity test: independent of
vision/ocr/einvoice.py, so the corpus checks the reader rather than agreeing with it."""

from __future__ import annotations

from decimal import Decimal


def xml_fields(data: bytes) -> dict[str, str | None]:
    """The key fields of a CII or UBL invoice read straight from its elements (independent of
    vision/ocr/einvoice.py, so the corpus checks the reader rather than agreeing with it):
    BT-1, BT-2, BT-27, BT-44, BT-109 (subtotal), BT-110 in the invoice currency (tax), BT-112
    (total), BT-5."""
    import defusedxml.ElementTree as SafeET

    root = SafeET.fromstring(data)

    def local(tag: str) -> str:
        return tag.rsplit("}", 1)[-1]

    def kid(el, *path):
        for name in path:
            if el is None:
                return None
            el = next((c for c in el if local(c.tag) == name), None)
        return el

    def text(el) -> str | None:
        return None if el is None or el.text is None else " ".join(el.text.split())

    def money(el) -> str | None:
        value = text(el)
        return None if value is None else str(Decimal(value).quantize(Decimal("0.01")))

    if local(root.tag) in ("CrossIndustryInvoice", "CrossIndustryDocument"):
        doc = kid(root, "ExchangedDocument") or kid(root, "HeaderExchangedDocument")
        stamp = text(kid(doc, "IssueDateTime", "DateTimeString")) or ""
        transaction = kid(root, "SupplyChainTradeTransaction") or kid(
            root, "SpecifiedSupplyChainTradeTransaction"
        )
        agreement = kid(transaction, "ApplicableHeaderTradeAgreement") or kid(
            transaction, "ApplicableSupplyChainTradeAgreement"
        )
        settlement = kid(transaction, "ApplicableHeaderTradeSettlement") or kid(
            transaction, "ApplicableSupplyChainTradeSettlement"
        )
        currency = text(kid(settlement, "InvoiceCurrencyCode"))
        sums = kid(settlement, "SpecifiedTradeSettlementHeaderMonetarySummation") or kid(
            settlement, "SpecifiedTradeSettlementMonetarySummation"
        )
        taxes = [c for c in (sums if sums is not None else []) if local(c.tag) == "TaxTotalAmount"]
        tax = next((t for t in taxes if t.get("currencyID") in (None, currency)), taxes[0] if taxes else None)
        return {
            "invoice_number": text(kid(doc, "ID")),
            "invoice_date": f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}" if len(stamp) == 8 else stamp or None,
            "seller": text(kid(agreement, "SellerTradeParty", "Name")),
            "buyer": text(kid(agreement, "BuyerTradeParty", "Name")),
            "subtotal": money(kid(sums, "TaxBasisTotalAmount")),
            "tax": money(tax),
            "total": money(kid(sums, "GrandTotalAmount")),
            "currency": currency,
        }
    currency = text(kid(root, "DocumentCurrencyCode"))

    def party(role: str) -> str | None:
        p = kid(root, role, "Party")
        return text(kid(p, "PartyLegalEntity", "RegistrationName")) or text(kid(p, "PartyName", "Name"))

    tax = None
    for total in (c for c in root if local(c.tag) == "TaxTotal"):
        amount = kid(total, "TaxAmount")
        if amount is not None and amount.get("currencyID") in (None, currency):
            tax = money(amount)
    sums = kid(root, "LegalMonetaryTotal")
    return {
        "invoice_number": text(kid(root, "ID")),
        "invoice_date": text(kid(root, "IssueDate")),
        "seller": party("AccountingSupplierParty"),
        "buyer": party("AccountingCustomerParty"),
        "subtotal": money(kid(sums, "TaxExclusiveAmount")),
        "tax": tax,
        "total": money(kid(sums, "TaxInclusiveAmount")),
        "currency": currency,
    }


def pdf_attached_xml(data: bytes) -> bytes | None:
    """The first XML file attached to a PDF (Factur-X / ZUGFeRD), read with pypdfium2."""
    import pypdfium2

    pdf = pypdfium2.PdfDocument(data)
    try:
        for index in range(pdf.count_attachments()):
            attachment = pdf.get_attachment(index)
            if attachment.get_name().lower().endswith(".xml"):
                return bytes(attachment.get_data())
    finally:
        pdf.close()
    return None
