"""E-invoices read exactly: the invoice fields from an e-invoice's XML, not from its pixels.

Formats: UN/CEFACT CII (Factur-X / ZUGFeRD 2.x, XRechnung CII; ZUGFeRD 1.0's CrossIndustryDocument
too) and OASIS UBL 2.1 Invoice / CreditNote (XRechnung UBL, Peppol BIS Billing 3.0). Every field
read from the XML has the source `xml` and confidence 1.0; the checks are the invoice reader's own
(`vision.ocr.invoice_checks.invoice_checks`), so a reviewer's correction reruns the same ones, and an XML
whose own numbers disagree (items vs subtotal, subtotal + tax vs total) is flagged like a page.

The parts: einvoice_xml (the safe, bounded parse and the tree helpers), einvoice_read (the CII and
UBL readers), einvoice_pdf (the XML a Factur-X / ZUGFeRD PDF embeds); this module reads a
document and compares a PDF's visual reading with its XML (`compare` flags every field where they
disagree, `combine` makes the XML's values the fields). No Django.
"""

from __future__ import annotations

import unicodedata
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any
from xml.etree.ElementTree import Element

from vision.ocr.einvoice_pdf import EMBEDDED_NAMES, embedded_xml
from vision.ocr.einvoice_read import SOURCE, CiiReader, EInvoiceExtraction, TaxLine, UblReader
from vision.ocr.einvoice_xml import (
    MAX_XML_BYTES,
    XML_FORBIDDEN,
    XML_MALFORMED,
    XML_NOT_EINVOICE,
    XML_TOO_LARGE,
    EInvoiceError,
    parse_xml,
    split_tag,
)
from vision.ocr.invoice_checks import invoice_checks
from vision.ocr.invoice_types import REQUIRED, SCALAR_FIELDS, Flag, InvoiceExtraction, json_value

__all__ = [
    "EMBEDDED_NAMES",
    "MAX_XML_BYTES",
    "SOURCE",
    "XML_DISAGREES",
    "XML_FORBIDDEN",
    "XML_MALFORMED",
    "XML_NOT_EINVOICE",
    "XML_TOO_LARGE",
    "EInvoiceError",
    "EInvoiceExtraction",
    "TaxLine",
    "combine",
    "compare",
    "einvoice_syntax",
    "embedded_xml",
    "parse_xml",
    "read_einvoice_xml",
]

XML_DISAGREES = "xml_disagrees"

CII_ROOTS = {"CrossIndustryInvoice", "CrossIndustryDocument"}  # D16B (ZF 2.x, FX, XR); ZUGFeRD 1.0
UBL_ROOTS = {"Invoice", "CreditNote"}
_CII_NS = "urn:un:unece:uncefact:data:standard:"
_ZF1_NS = "urn:ferd:CrossIndustryDocument:invoice:1p0"
_UBL_NS = "urn:oasis:names:specification:ubl:schema:xsd:"


def einvoice_syntax(root: Element) -> str | None:
    """'cii' or 'ubl' when the root is an invoice of either syntax, else None."""
    namespace, local = split_tag(root.tag)
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
        namespace, local = split_tag(root.tag)
        raise EInvoiceError(
            f"The XML's root is {local!r} in {namespace or 'no namespace'!r}, not a CII (Factur-X, "
            "ZUGFeRD, XRechnung) or UBL (XRechnung, Peppol) invoice.",
            code=XML_NOT_EINVOICE,
        )
    reader = CiiReader(root) if syntax == "cii" else UblReader(root)
    result = reader.read()
    result.syntax = syntax
    result.checks = invoice_checks(result)
    for check in result.checks:
        if check.ok:
            continue
        for name in check.fields:
            reason = f"{check.name}: expected {check.expected}, the XML says {check.found}"
            result.flags.append(Flag(name, "check_failed", reason))
    for name in REQUIRED:
        if name not in result.fields:
            result.flags.append(Flag(name, "missing", f"the e-invoice's XML has no {name.replace('_', ' ')}"))
    return result


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
            Flag(
                name,
                XML_DISAGREES,
                f"read from the page as {json_value(seen)!r}; its embedded XML says {json_value(exact)!r}",
            )
        )
    seen_amounts = sorted(x.amount for x in visual.items if x.amount is not None)
    exact_amounts = sorted(x.amount for x in xml.items if x.amount is not None)
    if seen_amounts and seen_amounts != exact_amounts:
        flags.append(
            Flag(
                "items",
                XML_DISAGREES,
                f"the item amounts read from the page {[str(a) for a in seen_amounts]} are not the XML's {[str(a) for a in exact_amounts]}",
            )
        )
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
