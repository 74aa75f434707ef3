"""The e-invoice XML a PDF carries (Factur-X, ZUGFeRD, XRechnung in a PDF).

It is the PDF's embedded file, found with pdfium's attachment API (pypdfium2, already what renders
the pages): pdfium reads the PDF's EmbeddedFiles name tree and never parses the XML, so the only
parse is the safe one of vision.ocr.einvoice_xml. No Django.
"""

from __future__ import annotations

from vision.ocr.einvoice_xml import MAX_XML_BYTES, XML_TOO_LARGE, EInvoiceError

# Names the Factur-X, ZUGFeRD and XRechnung specifications give the embedded XML, in that order.
EMBEDDED_NAMES = ("factur-x.xml", "zugferd-invoice.xml", "xrechnung.xml")


def embedded_xml(pdf_bytes: bytes, *, max_bytes: int = MAX_XML_BYTES) -> bytes | None:
    """The e-invoice XML embedded in a PDF, or None.

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
