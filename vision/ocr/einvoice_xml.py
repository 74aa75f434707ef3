"""An e-invoice's XML parsed safely, and the small tree helpers its readers walk it with.

Parsing is defusedxml's: no DTD (so no entity, internal or external, and no entity bomb), no
network, and the bytes are bounded before the parser sees them. Every refusal is an
EInvoiceError whose `code` names the rule (the upload's 4xx, vision.validators). No Django.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

# An e-invoice's XML is tens of kilobytes; XRechnung's largest public samples, with attachments in
# base64, are 1.3 MB. Anything past this is refused before it is parsed.
MAX_XML_BYTES = 5 * 1024 * 1024

XML_TOO_LARGE = "xml_too_large"
XML_FORBIDDEN = "xml_forbidden"  # a DTD, entities or external references: never expanded
XML_MALFORMED = "xml_malformed"
XML_NOT_EINVOICE = "xml_not_einvoice"


class EInvoiceError(ValueError):
    """The bytes are not a readable e-invoice; `code` names why (the upload's rule)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


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


# -- walking the tree by local names (CII and UBL qualify every element with a namespace) --------


def split_tag(tag: str) -> tuple[str, str]:
    """(namespace, local name) of an element's tag."""
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def children(element: Element | None, name: str) -> list[Element]:
    if element is None:
        return []
    return [child for child in element if split_tag(child.tag)[1] == name]


def find(element: Element | None, path: str) -> Element | None:
    """The first element down `path` (local names joined by '/'; a step 'A|B' takes either)."""
    found = find_all(element, path)
    return found[0] if found else None


def find_all(element: Element | None, path: str) -> list[Element]:
    current = [element] if element is not None else []
    for step in path.split("/"):
        names = step.split("|")
        current = [child for parent in current for child in parent if split_tag(child.tag)[1] in names]
    return current


def text(element: Element | None) -> str | None:
    """The element's text with its white space collapsed; None when empty."""
    if element is None or element.text is None:
        return None
    collapsed = " ".join(element.text.split())
    return collapsed or None


def number(element: Element | None) -> Decimal | None:
    """The element's text as a finite Decimal, else None."""
    value = text(element)
    if value is None:
        return None
    try:
        parsed = Decimal(value)
    except InvalidOperation:
        return None
    return parsed if parsed.is_finite() else None


def iso_date(value: str | None) -> date | None:
    """A UBL date (YYYY-MM-DD, a time or zone after it ignored)."""
    if not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def cii_date(element: Element | None) -> date | None:
    """udt:DateTimeString: format 102 is CCYYMMDD (the only one EN 16931 allows for dates)."""
    value = text(element)
    if not value:
        return None
    if (element.get("format") or "102") == "102" and re.fullmatch(r"\d{8}", value):
        try:
            return date(int(value[:4]), int(value[4:6]), int(value[6:]))
        except ValueError:
            return None
    return iso_date(value)
