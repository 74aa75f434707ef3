"""invoice jobs on e-invoices (vision.ocr.einvoice): an XML document (XRechnung, Peppol, CII or
UBL) is read from its XML alone, with no page, OCR or model; a PDF that carries an embedded XML
(Factur-X, ZUGFeRD) is read from its pages as any PDF is, and then the XML's values become the
fields and every field the pages read differently is flagged `xml_disagrees`
(vision.runners.invoice calls both)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from vision.faults import is_transient
from vision.media import media_read
from vision.models import DocumentKind, JobStatus
from vision.runners.types import JobOutcome, JobRunContext
from vision.services.extractions import extraction_create_from_invoice

if TYPE_CHECKING:
    from vision.models import Job
    from vision.ocr.invoice_types import InvoiceExtraction

logger = logging.getLogger(__name__)

XML_UNREADABLE = "xml_unreadable"  # a PDF's embedded XML that could not be read: its pages stand


def _original(job: Job) -> bytes:
    return media_read(job.document.file)


def run_einvoice(context: JobRunContext) -> JobOutcome:
    """An XML document's invoice job: the fields from its XML, source xml, confidence 1.0."""
    from vision.ocr.einvoice import SOURCE, EInvoiceError, read_einvoice_xml
    from vision.ocr.lines import OcrResult
    from vision.ocr.pipeline import InvoiceReading

    job = context.job
    try:
        extraction = read_einvoice_xml(_original(job))
    except OSError as exc:
        if is_transient(exc):  # the media store is away for a moment: the job runs again
            raise
        logger.warning("job %s: the e-invoice's XML is unreadable: %s", job.pk, exc)
        return JobOutcome(
            status=JobStatus.FAILED, error="The uploaded XML is gone.", error_code="file_missing"
        )
    except EInvoiceError as exc:  # checked at upload; a changed limit can still refuse it here
        return JobOutcome(status=JobStatus.FAILED, error=str(exc), error_code=exc.code)
    # No page: the reading's one "page" is the XML, 0 x 0, its source "xml".
    reading = InvoiceReading(extraction, OcrResult(0, 0, source=SOURCE), used_vlm=False)
    stored = extraction_create_from_invoice(document=job.document, reading=reading, job=job, page=1)
    result = {"extraction_id": stored.pk, **reading.to_dict()}
    return JobOutcome(status=JobStatus.SUCCEEDED, result=result, finish_reason="stop", timings={"ocr_s": 0.0})


def with_embedded_xml(job: Job, visual: InvoiceExtraction) -> InvoiceExtraction:
    """A PDF's reading with its embedded e-invoice XML, when it has one: the XML's fields, items
    and tax breakdown, the page's box where the page agrees, a flag wherever it does not. A PDF
    without an XML keeps its visual reading; one whose XML cannot be read keeps it too, flagged
    `xml_unreadable` with the reason."""
    from vision.ocr.einvoice import EInvoiceError, combine, embedded_xml, read_einvoice_xml
    from vision.ocr.invoice_types import Flag
    from vision.validators import PDFIUM_LOCK

    if job.document.kind != DocumentKind.PDF:
        return visual
    try:
        data = _original(job)
        with PDFIUM_LOCK:
            xml = embedded_xml(data)
        if xml is None:
            return visual
        exact = read_einvoice_xml(xml)
    except OSError as exc:  # the pages were all the reading needed; there is no XML to look for
        logger.warning("job %s: original unreadable (%s); no embedded XML looked for", job.pk, exc)
        return visual
    except EInvoiceError as exc:
        logger.info("job %s: the PDF's embedded XML is not read: %s", job.pk, exc)
        visual.flags.append(
            Flag(
                "*",
                XML_UNREADABLE,
                f"the PDF carries an e-invoice XML that cannot be read ({exc.code}): {exc}",
            )
        )
        return visual
    logger.info("job %s: fields from the PDF's embedded %s XML (%s)", job.pk, exact.syntax, exact.profile)
    return combine(visual, exact)
