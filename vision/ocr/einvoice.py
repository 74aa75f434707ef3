"""E-invoices read exactly: the invoice fields from an e-invoice's XML, not from its pixels.

Formats: UN/CEFACT CII (Factur-X / ZUGFeRD 2.x, XRechnung CII; ZUGFeRD 1.0's CrossIndustryDocument
too) and OASIS UBL 2.1 Invoice / CreditNote (XRechnung UBL, Peppol BIS Billing 3.0). Every field
read from the XML has the source `xml` and confidence 1.0; the checks are the invoice reader's own
(`vision.ocr.invoice.invoice_checks`), so a reviewer's correction reruns the same ones, and an XML
whose own numbers disagree (items vs subtotal, subtotal + tax vs total) is flagged like a page.

Parsing is defusedxml's: no DTD (so no entity, internal or external, and no entity bomb), no
network, and the bytes are bounded before the parser sees them. The XML of a PDF (Factur-X /
ZUGFeRD) is its embedded file, found with pdfium's attachment API (pypdfium2, already what renders
the pages): it reads the PDF's EmbeddedFiles name tree and never parses the XML, so the only parse
is the safe one here. `compare` flags every field where a PDF's visual reading disagrees with its
XML. No Django.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from vision.ocr.invoice import (
    REQUIRED,
    SCALAR_FIELDS,
    Field,
    Flag,
    InvoiceExtraction,
    Item,
    invoice_checks,
    json_value,
)
from vision.ocr.normalize import money

SOURCE = "xml"
XML_DISAGREES = "xml_disagrees"
# An e-invoice's XML is tens of kilobytes; XRechnung's largest public samples, with attachments in
# base64, are 1.3 MB. Anything past this is refused before it is parsed.
MAX_XML_BYTES = 5 * 1024 * 1024
# Names the Factur-X, ZUGFeRD and XRechnung specifications give the embedded XML, in that order.
EMBEDDED_NAMES = ("factur-x.xml", "zugferd-invoice.xml", "xrechnung.xml")

CII_ROOTS = {"CrossIndustryInvoice", "CrossIndustryDocument"}  # D16B (ZF 2.x, FX, XR); ZUGFeRD 1.0
UBL_ROOTS = {"Invoice", "CreditNote"}
_CII_NS = "urn:un:unece:uncefact:data:standard:"
_ZF1_NS = "urn:ferd:CrossIndustryDocument:invoice:1p0"
_UBL_NS = "urn:oasis:names:specification:ubl:schema:xsd:"


class EInvoiceError(ValueError):
    """The bytes are not a readable e-invoice; `code` names why (the upload's rule)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


XML_TOO_LARGE = "xml_too_large"
XML_FORBIDDEN = "xml_forbidden"  # a DTD, entities or external references: never expanded
XML_MALFORMED = "xml_malformed"
XML_NOT_EINVOICE = "xml_not_einvoice"


@dataclass
class TaxLine:
    """One row of the tax breakdown (EN 16931 BG-23): a category, its rate, basis and amount."""

    category: str | None
    rate: Decimal | None  # percent, e.g. 19
    basis: Decimal | None
    amount: Decimal | None
    exemption: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "rate": json_value(self.rate),
            "basis": json_value(self.basis),
            "amount": json_value(self.amount),
            "exemption": self.exemption,
        }


@dataclass
class EInvoiceExtraction(InvoiceExtraction):
    syntax: str = ""  # "cii" | "ubl"
    profile: str = ""  # the guideline / customization ID (Factur-X profile, XRechnung, Peppol)
    tax_breakdown: list[TaxLine] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["tax_breakdown"] = [line.to_dict() for line in self.tax_breakdown]
        out["sources"] = {name: f.source for name, f in self.fields.items()}
        return out


# -- parsing ------------------------------------------------------------------------------------


def parse_xml(data: bytes, *, max_bytes: int = MAX_XML_BYTES) -> Element:
    """The root element of `data`, parsed by defusedxml's rules; EInvoiceError otherwise."""
    if len(data) > max_bytes:
        raise EInvoiceError(
            f"The XML is {len(data)} bytes; the limit for an e-invoice is {max_bytes} bytes.",
            code=XML_TOO_LARGE,
        )
    try:
        return SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise EInvoiceError(
            "The XML declares a DTD, entities or external references; e-invoices need none, and "
            f"they are never expanded ({type(exc).__name__}).",
            code=XML_FORBIDDEN,
        ) from exc
    except ParseError as exc:
        raise EInvoiceError(f"The XML is not well-formed: {exc}.", code=XML_MALFORMED) from exc


def einvoice_syntax(root: Element) -> str | None:
    """'cii' or 'ubl' when the root is an invoice of either syntax, else None."""
    namespace, local = _split(root.tag)
    if local in CII_ROOTS and (namespace.startswith(_CII_NS) or namespace == _ZF1_NS):
        return "cii"
    if local in UBL_ROOTS and namespace.startswith(_UBL_NS):
        return "ubl"
    return None


def read_einvoice_xml(data: bytes, *, max_bytes: int = MAX_XML_BYTES) -> EInvoiceExtraction:
    """The invoice fields of a CII or UBL e-invoice, each with source `xml` and confidence 1.0,
    its items, tax breakdown, the invoice checks and their flags. EInvoiceError when the bytes
    are too large, forbidden (DTD / entities), malformed, or not an invoice of either syntax."""
    root = parse_xml(data, max_bytes=max_bytes)
    syntax = einvoice_syntax(root)
    if syntax is None:
        raise EInvoiceError(
            f"The XML's root is {_split(root.tag)[1]!r} in {_split(root.tag)[0] or 'no namespace'!r}, not "
            "a CII (Factur-X, ZUGFeRD, XRechnung) or UBL (XRechnung, Peppol) invoice.",
            code=XML_NOT_EINVOICE,
        )
    reader = _CiiReader(root) if syntax == "cii" else _UblReader(root)
    result = reader.read()
    result.syntax = syntax
    result.checks = invoice_checks(result)
    for check in result.checks:
        if check.ok:
            continue
        for name in check.fields:
            result.flags.append(
                Flag(
                    name,
                    "check_failed",
                    f"{check.name}: expected {check.expected}, the XML says {check.found}",
                )
            )
    for name in REQUIRED:
        if name not in result.fields:
            result.flags.append(Flag(name, "missing", f"the e-invoice's XML has no {name.replace('_', ' ')}"))
    return result


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def _children(element: Element | None, name: str) -> list[Element]:
    if element is None:
        return []
    return [child for child in element if _split(child.tag)[1] == name]


def _find(element: Element | None, path: str) -> Element | None:
    """The first element down `path` (local names joined by '/'; a step 'A|B' takes either)."""
    found = _find_all(element, path)
    return found[0] if found else None


def _find_all(element: Element | None, path: str) -> list[Element]:
    current = [element] if element is not None else []
    for step in path.split("/"):
        names = step.split("|")
        current = [child for parent in current for child in parent if _split(child.tag)[1] in names]
    return current


def _text(element: Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    text = " ".join(element.text.split())
    return text or None


def _decimal(element: Element | None) -> Decimal | None:
    text = _text(element)
    if text is None:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _iso_date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _cii_date(element: Element | None) -> date | None:
    """udt:DateTimeString: format 102 is CCYYMMDD (the only one EN 16931 allows for dates)."""
    text = _text(element)
    if not text:
        return None
    if (element.get("format") or "102") == "102" and re.fullmatch(r"\d{8}", text):
        try:
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            return None
    return _iso_date(text)


class _Reader:
    def __init__(self, root: Element) -> None:
        self.root = root
        self.result = EInvoiceExtraction()
        self.currency: str | None = None

    def set(self, name: str, value: Any) -> None:
        if value in (None, "") or name in self.result.fields:
            return
        self.result.fields[name] = Field(value, None, 1.0, SOURCE)

    def amount(self, name: str, element: Element | None) -> None:
        value = _decimal(element)
        if element is not None and value is None:
            self.result.flags.append(
                Flag(name, "xml_invalid", f"{name} in the XML is not a number: {_text(element)!r}")
            )
        self.set(name, money(value))

    def in_currency(self, elements: list[Element]) -> Element | None:
        """Of several amounts (a tax total given in the invoice and in the VAT currency), the one in
        the invoice's currency, or the one without a currency."""
        for element in elements:
            if element.get("currencyID") in (None, self.currency):
                return element
        return elements[0] if elements else None

    def item(self, description: str | None, quantity: Decimal | None, price: Decimal | None,
             base: Decimal | None, amount: Decimal | None, adjustments: list[Element]) -> None:  # fmt: skip
        """One line. A line with its own allowances or charges (BG-27/28) has an amount that is not
        quantity × price: they are named in the description and the price is left out, so the
        quantity × price check does not fail on an exact line."""
        unit_price = price
        if price is not None and base is not None and base not in (0, 1):  # a price per 100 pieces
            unit_price = price / base
        notes = []
        for adjustment in adjustments:
            charge = (
                _text(_find(adjustment, "ChargeIndicator/Indicator|ChargeIndicator")) or ""
            ).lower() == "true"
            value = _decimal(_find(adjustment, "ActualAmount|Amount"))
            if value is not None:
                notes.append(f"{'charge' if charge else 'allowance'} {money(value)}")
        if notes:
            description = f"{description or ''} ({', '.join(notes)})".strip()
            unit_price = None
        self.result.items.append(Item(description or "", quantity, unit_price, money(amount), None, 1.0))

    def allowance(self, is_charge: bool, amount: Decimal | None, reason: str | None) -> None:
        """A document-level allowance or charge, as an item (negative for an allowance), so that
        the items still sum to the subtotal the way they do on the printed page."""
        if amount is None:
            return
        label = ("Charge" if is_charge else "Allowance") + (f": {reason}" if reason else "")
        value = money(amount if is_charge else -amount)
        self.result.items.append(Item(label, None, None, value, None, 1.0))

    def finish(self, taxes: list[TaxLine]) -> EInvoiceExtraction:
        self.result.tax_breakdown = taxes
        rates = {line.rate for line in taxes if line.rate is not None}
        # One rate for the whole invoice: the reader's tax-rate check applies (tax = subtotal × rate).
        if len(rates) == 1 and len(taxes) == 1:
            self.result.rates = [rates.pop() / 100]
        return self.result


class _CiiReader(_Reader):
    def read(self) -> EInvoiceExtraction:
        root, set_ = self.root, self.set
        self.result.profile = _text(_find(root, "ExchangedDocumentContext|SpecifiedExchangedDocumentContext/GuidelineSpecifiedDocumentContextParameter/ID")) or ""  # fmt: skip
        header = _find(root, "ExchangedDocument|HeaderExchangedDocument")
        set_("invoice_number", _text(_find(header, "ID")))
        set_("invoice_date", _cii_date(_find(header, "IssueDateTime/DateTimeString")))
        trade = _find(root, "SupplyChainTradeTransaction|SpecifiedSupplyChainTradeTransaction")
        agreement = _find(trade, "ApplicableHeaderTradeAgreement|ApplicableSupplyChainTradeAgreement")
        settlement = _find(trade, "ApplicableHeaderTradeSettlement|ApplicableSupplyChainTradeSettlement")
        self.currency = _text(_find(settlement, "InvoiceCurrencyCode"))
        set_("currency", self.currency.upper() if self.currency else None)
        for party, path in (("seller", "SellerTradeParty"), ("buyer", "BuyerTradeParty")):
            element = _find(agreement, path)
            set_(party, _text(_find(element, "Name")))
            set_(f"{party}_tax_id", _cii_tax_id(element))
        for terms in _children(settlement, "SpecifiedTradePaymentTerms"):
            set_("due_date", _cii_date(_find(terms, "DueDateDateTime/DateTimeString")))
        sums = _find(settlement, "SpecifiedTradeSettlementHeaderMonetarySummation|SpecifiedTradeSettlementMonetarySummation")  # fmt: skip
        self.amount("subtotal", _find(sums, "TaxBasisTotalAmount"))
        self.amount("tax", self.in_currency(_children(sums, "TaxTotalAmount")))
        self.amount("total", _find(sums, "GrandTotalAmount"))

        for line in _children(trade, "IncludedSupplyChainTradeLineItem"):
            price = _find(line, "SpecifiedLineTradeAgreement|SpecifiedSupplyChainTradeAgreement/NetPriceProductTradePrice")  # fmt: skip
            self.item(
                _text(_find(line, "SpecifiedTradeProduct/Name")),
                _decimal(_find(line, "SpecifiedLineTradeDelivery|SpecifiedSupplyChainTradeDelivery/BilledQuantity")),
                _decimal(_find(price, "ChargeAmount")),
                _decimal(_find(price, "BasisQuantity")),
                _decimal(_find(line, "SpecifiedLineTradeSettlement|SpecifiedSupplyChainTradeSettlement/SpecifiedTradeSettlementLineMonetarySummation|SpecifiedTradeSettlementMonetarySummation/LineTotalAmount")),
                _find_all(line, "SpecifiedLineTradeSettlement|SpecifiedSupplyChainTradeSettlement/SpecifiedTradeAllowanceCharge"),
            )  # fmt: skip
        for charge in _children(settlement, "SpecifiedTradeAllowanceCharge"):
            indicator = (_text(_find(charge, "ChargeIndicator/Indicator")) or "").lower()
            self.allowance(
                indicator == "true", _decimal(_find(charge, "ActualAmount")), _text(_find(charge, "Reason"))
            )
        taxes = [
            TaxLine(
                category=_text(_find(tax, "CategoryCode")),
                rate=_decimal(_find(tax, "RateApplicablePercent|ApplicablePercent")),
                basis=money(_decimal(_find(tax, "BasisAmount"))),
                amount=money(_decimal(_find(tax, "CalculatedAmount"))),
                exemption=_text(_find(tax, "ExemptionReason")),
            )
            for tax in _children(settlement, "ApplicableTradeTax")
        ]
        return self.finish(taxes)


def _cii_tax_id(party: Element | None) -> str | None:
    """The party's VAT ID (schemeID VA), else its tax number (FC)."""
    ids = {
        (e.get("schemeID") or "").upper(): _text(e) for e in _find_all(party, "SpecifiedTaxRegistration/ID")
    }
    return ids.get("VA") or ids.get("FC")


class _UblReader(_Reader):
    def read(self) -> EInvoiceExtraction:
        root, set_ = self.root, self.set
        credit = _split(root.tag)[1] == "CreditNote"
        self.result.profile = _text(_find(root, "CustomizationID")) or ""
        set_("invoice_number", _text(_find(root, "ID")))
        set_("invoice_date", _iso_date(_text(_find(root, "IssueDate"))))
        self.currency = _text(_find(root, "DocumentCurrencyCode"))
        set_("currency", self.currency.upper() if self.currency else None)
        for party, path in (
            ("seller", "AccountingSupplierParty/Party"),
            ("buyer", "AccountingCustomerParty/Party"),
        ):
            element = _find(root, path)
            set_(party, _text(_find(element, "PartyLegalEntity/RegistrationName")) or _text(_find(element, "PartyName/Name")))  # fmt: skip
            set_(f"{party}_tax_id", _ubl_tax_id(element))
        set_("due_date", _iso_date(_text(_find(root, "DueDate"))))
        set_("due_date", _iso_date(_text(_find(root, "PaymentMeans/PaymentDueDate"))))
        totals = _find(root, "LegalMonetaryTotal")
        self.amount("subtotal", _find(totals, "TaxExclusiveAmount"))
        tax_totals = _children(root, "TaxTotal")
        tax_total = next(
            (t for t in tax_totals if _find(t, "TaxAmount") is not None and _find(t, "TaxAmount").get("currencyID") in (None, self.currency)),
            tax_totals[0] if tax_totals else None,
        )  # fmt: skip
        self.amount("tax", _find(tax_total, "TaxAmount"))
        self.amount("total", _find(totals, "TaxInclusiveAmount"))

        for line in _children(root, "CreditNoteLine" if credit else "InvoiceLine"):
            self.item(
                _text(_find(line, "Item/Name")),
                _decimal(_find(line, "CreditedQuantity" if credit else "InvoicedQuantity")),
                _decimal(_find(line, "Price/PriceAmount")),
                _decimal(_find(line, "Price/BaseQuantity")),
                _decimal(_find(line, "LineExtensionAmount")),
                _children(line, "AllowanceCharge"),
            )
        for charge in _children(root, "AllowanceCharge"):
            indicator = (_text(_find(charge, "ChargeIndicator")) or "").lower()
            self.allowance(indicator == "true", _decimal(_find(charge, "Amount")), _text(_find(charge, "AllowanceChargeReason")))  # fmt: skip
        taxes = [
            TaxLine(
                category=_text(_find(sub, "TaxCategory/ID")),
                rate=_decimal(_find(sub, "TaxCategory/Percent")),
                basis=money(_decimal(_find(sub, "TaxableAmount"))),
                amount=money(_decimal(_find(sub, "TaxAmount"))),
                exemption=_text(_find(sub, "TaxCategory/TaxExemptionReason")),
            )
            for sub in _children(tax_total, "TaxSubtotal")
        ]
        return self.finish(taxes)


def _ubl_tax_id(party: Element | None) -> str | None:
    """The CompanyID of the party's VAT scheme, else of its first tax scheme."""
    schemes = _children(party, "PartyTaxScheme")
    for scheme in schemes:
        if (_text(_find(scheme, "TaxScheme/ID")) or "").upper() == "VAT":
            return _text(_find(scheme, "CompanyID"))
    return _text(_find(schemes[0], "CompanyID")) if schemes else None


# -- the PDF container --------------------------------------------------------------------------


def embedded_xml(pdf_bytes: bytes, *, max_bytes: int = MAX_XML_BYTES) -> bytes | None:
    """The e-invoice XML embedded in a PDF (Factur-X / ZUGFeRD / XRechnung in a PDF), or None.

    The attachment named by the specifications comes first (factur-x.xml, zugferd-invoice.xml,
    xrechnung.xml; any case); failing that, the first .xml attachment. The caller holds the
    process's pdfium lock where pdfium may run in threads. An unreadable PDF or attachment is None:
    the page is still read from its pixels. An attachment above `max_bytes` is refused
    (EInvoiceError xml_too_large) rather than read."""
    import pypdfium2

    try:
        pdf = pypdfium2.PdfDocument(pdf_bytes)
    except pypdfium2.PdfiumError:
        return None
    try:
        candidates: list[tuple[int, int]] = []  # (rank, index)
        for index in range(pdf.count_attachments()):
            name = (pdf.get_attachment(index).get_name() or "").lower()
            if name in EMBEDDED_NAMES:
                candidates.append((EMBEDDED_NAMES.index(name), index))
            elif name.endswith(".xml"):
                candidates.append((len(EMBEDDED_NAMES), index))
        for _, index in sorted(candidates):
            try:
                data = bytes(pdf.get_attachment(index).get_data())
            except pypdfium2.PdfiumError:
                continue
            if len(data) > max_bytes:
                raise EInvoiceError(
                    f"The PDF's embedded XML is {len(data)} bytes; the limit is {max_bytes} bytes.",
                    code=XML_TOO_LARGE,
                )
            return data
        return None
    finally:
        pdf.close()


# -- a PDF's visual reading against its XML -----------------------------------------------------


def _plain(value: Any) -> str:
    """A text value compared loosely: case, accents of spacing, punctuation and spaces ignored
    ("DE 123456789" = "DE123456789", "ACME GmbH." = "acme gmbh")."""
    text = unicodedata.normalize("NFKC", str(value)).casefold()
    return "".join(ch for ch in text if ch.isalnum())


def _same(name: str, visual: Any, xml: Any) -> bool:
    if isinstance(xml, Decimal) or isinstance(visual, Decimal):
        try:
            return Decimal(str(visual)) == Decimal(str(xml))
        except InvalidOperation:
            return False
    if isinstance(xml, date) or isinstance(visual, date):
        return str(visual) == str(xml)
    return _plain(visual) == _plain(xml)


def compare(visual: InvoiceExtraction, xml: InvoiceExtraction) -> list[Flag]:
    """A flag `xml_disagrees` for every field the page's visual reading holds with a value other
    than its XML's (a field the page reading missed is not a disagreement: the XML fills it), and
    for the items when the page's item amounts are not the XML's."""
    flags = []
    for name in SCALAR_FIELDS:
        seen, exact = visual.value(name), xml.value(name)
        if seen in (None, "") or exact in (None, "") or _same(name, seen, exact):
            continue
        flags.append(
            Flag(name, XML_DISAGREES, f"the page reads {json_value(seen)!r}, its embedded XML says {json_value(exact)!r}")
        )  # fmt: skip
    seen_amounts = sorted(x.amount for x in visual.items if x.amount is not None)
    exact_amounts = sorted(x.amount for x in xml.items if x.amount is not None)
    if seen_amounts and seen_amounts != exact_amounts:
        flags.append(
            Flag("items", XML_DISAGREES, f"the page's item amounts {[str(a) for a in seen_amounts]} are not the XML's {[str(a) for a in exact_amounts]}")
        )  # fmt: skip
    return flags


def combine(visual: InvoiceExtraction, xml: EInvoiceExtraction) -> EInvoiceExtraction:
    """A PDF with an embedded XML: the XML's values are the fields, each disagreement of the page
    is flagged, and a field the page agrees on keeps the page's box, so the reviewer sees where
    it is printed."""
    disagreements = compare(visual, xml)
    differing = {flag.field for flag in disagreements}
    for name, found in xml.fields.items():
        seen = visual.fields.get(name)
        if seen is not None and seen.box is not None and name not in differing:
            found.box, found.page = seen.box, seen.page
    xml.flags.extend(disagreements)
    return xml
